// The weights of a DeepSeek-V2/V3 model as the forward pass reads them: views into the
// memory-mapped checkpoint in the formats it ships (FP8 with block scales, BF16), plus FP32
// copies of the few small tensors the math wants in FP32 (norms, router, bias, kv_b for the
// absorbed attention).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "cpu/linear.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"

namespace hetmoe {

struct FfnWeights {
  cpu::WeightMatrix gate;  // [inter, hidden]
  cpu::WeightMatrix up;    // [inter, hidden]
  cpu::WeightMatrix down;  // [hidden, inter]
};

struct AttentionWeights {
  std::optional<cpu::WeightMatrix> q_a;  // [q_lora_rank, hidden] (q_lora models)
  std::vector<float> q_a_norm;           // f32 [q_lora_rank]
  cpu::WeightMatrix q_b;                 // [heads * qk_head_dim, q_lora_rank] or q_proj [.., hidden]
  cpu::WeightMatrix kv_a;                // [kv_lora_rank + rope, hidden]
  std::vector<float> kv_a_norm;          // f32 [kv_lora_rank]
  cpu::WeightMatrix kv_b;                // [heads * (nope + v), kv_lora_rank]
  cpu::WeightMatrix o;                   // [hidden, heads * v]
};

struct MoeWeights {
  std::vector<float> router;           // f32 [experts, hidden]
  std::vector<float> score_bias;       // f32 [experts] (noaux_tc) or empty
  std::optional<FfnWeights> shared;    // n_shared_experts * moe_intermediate wide
  std::vector<FfnWeights> experts;     // [n_routed_experts]
};

struct LayerWeights {
  std::vector<float> input_norm;  // f32 [hidden]
  std::vector<float> post_norm;   // f32 [hidden]
  AttentionWeights attention;
  bool is_moe = false;
  FfnWeights dense;  // when !is_moe
  MoeWeights moe;    // when is_moe
};

struct ModelWeights {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;  // owns the mappings the views point into
  cpu::WeightMatrix embed;                 // [vocab, hidden]
  std::vector<float> final_norm;           // f32 [hidden]
  cpu::WeightMatrix lm_head;               // [vocab, hidden]
  std::vector<LayerWeights> layers;
};

// Opens DIR (config.json + safetensors) and binds every tensor the forward pass needs,
// checking names, shapes and dtypes. Throws hetmoe::Error naming the tensor on mismatch.
ModelWeights load_model_weights(const std::filesystem::path& directory);

}  // namespace hetmoe
