#include "engine/runtime/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "cpu/ops.h"
#include "engine/core/error.h"

namespace hetmoe {
namespace {

// Indices of the `k` largest values, ties to the lower index.
std::vector<int32_t> top_k(std::span<const float> values, int64_t k) {
  std::vector<int32_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return values[size_t(a)] > values[size_t(b)] || (values[size_t(a)] == values[size_t(b)] && a < b);
  });
  order.resize(size_t(k));
  return order;
}

}  // namespace

void route_token(const ModelConfig& config, std::span<const float> router_logits, std::span<const float> score_bias,
                 std::span<RoutedExpert> out) {
  const int64_t experts = config.n_routed_experts;
  const int64_t k = config.num_experts_per_tok;
  check(int64_t(router_logits.size()) == experts && int64_t(out.size()) == k, "router input sizes do not match");

  std::vector<float> scores(router_logits.begin(), router_logits.end());
  if (config.scoring_func == ScoringFunc::kSigmoid) {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  } else {
    cpu::softmax(scores.data(), experts);
  }
  std::vector<float> selection = scores;
  if (!score_bias.empty())
    for (int64_t e = 0; e < experts; ++e) selection[size_t(e)] += score_bias[size_t(e)];

  const int64_t groups = config.n_group;
  if (groups > 1 && config.topk_method != TopkMethod::kGreedy) {
    const int64_t per_group = experts / groups;
    std::vector<float> group_scores(static_cast<size_t>(groups));
    for (int64_t g = 0; g < groups; ++g) {
      std::span<const float> members(selection.data() + g * per_group, size_t(per_group));
      if (config.topk_method == TopkMethod::kNoauxTc) {
        const auto best = top_k(members, std::min<int64_t>(2, per_group));
        float sum = 0.0f;
        for (int32_t i : best) sum += members[size_t(i)];
        group_scores[size_t(g)] = sum;
      } else {
        group_scores[size_t(g)] = *std::max_element(members.begin(), members.end());
      }
    }
    const auto kept = top_k(group_scores, config.topk_group);
    std::vector<bool> keep(size_t(groups), false);
    for (int32_t g : kept) keep[size_t(g)] = true;
    for (int64_t e = 0; e < experts; ++e)
      if (!keep[size_t(e / per_group)]) selection[size_t(e)] = -std::numeric_limits<float>::infinity();
  }

  auto chosen = top_k(selection, k);
  std::sort(chosen.begin(), chosen.end());
  float sum = 0.0f;
  for (int32_t e : chosen) sum += scores[size_t(e)];
  const float normaliser = config.norm_topk_prob ? 1.0f / (sum + 1e-20f) : 1.0f;
  for (int64_t r = 0; r < k; ++r) {
    const int32_t e = chosen[size_t(r)];
    out[size_t(r)] = {e, float(scores[size_t(e)] * normaliser * config.routed_scaling_factor)};
  }
}

}  // namespace hetmoe
