// MoE expert selection for DeepSeek-V2/V3 (MODEL_SPEC §2.7).
//
// V3: sigmoid affinities; the correction bias only for choosing; group score = sum of the
// two best biased scores; non-kept groups masked with −∞; weights from the unbiased
// affinities, renormalised when norm_topk_prob, times routed_scaling_factor.
// V2: softmax; `greedy` top-k, or `group_limited_greedy` with group score = max.
#pragma once

#include <cstdint>
#include <span>

#include "engine/model/config.h"

namespace hetmoe {

struct RoutedExpert {
  int32_t expert = 0;
  float weight = 0.0f;
};

// router_logits: f32 [n_routed_experts] (W_g x in FP32); score_bias: empty or [n_routed_experts].
// Writes num_experts_per_tok selections to `out`, sorted by expert index (the fixed combine
// order). Ties choose the lower expert index.
void route_token(const ModelConfig& config, std::span<const float> router_logits, std::span<const float> score_bias,
                 std::span<RoutedExpert> out);

}  // namespace hetmoe
