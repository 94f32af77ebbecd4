#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/runtime/rope.h"
#include "engine/runtime/router.h"

namespace hetmoe {
namespace {

ModelConfig v3_rope_config() {
  ModelConfig c;
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000;
  c.rope_scaling = {.type = "yarn", .factor = 40, .original_max_position_embeddings = 4096, .beta_fast = 32,
                    .beta_slow = 1, .mscale = 1, .mscale_all_dim = 1};
  return c;
}

TEST(Rope, YarnFrequenciesMatchModelSpecAppendixB) {
  const Rope rope(v3_rope_config());
  const auto& f = rope.inverse_frequencies();
  ASSERT_EQ(f.size(), 32u);
  EXPECT_NEAR(f[0], 1.0, 1e-7);
  EXPECT_NEAR(f[1], 0.7498942093, 1e-7);
  EXPECT_NEAR(f[10], 0.0562341325, 1e-8);
  EXPECT_NEAR(f[11], 0.0390069266, 1e-8);
  EXPECT_NEAR(f[16], 0.0055, 1e-8);
  EXPECT_NEAR(f[22], 1.778279e-4, 1e-9);
  EXPECT_NEAR(f[23], 3.333804e-5, 1e-10);
  EXPECT_NEAR(f[31], 3.333804e-6, 1e-11);
}

TEST(Rope, RotatesInterleavedPairs) {
  const Rope rope(v3_rope_config());
  std::vector<float> x(64, 0.0f);
  x[0] = 1.0f;  // pair (0, 1) rotates by position * f'_0 = position
  x[2] = 1.0f;  // pair (2, 3) by position * f'_1
  rope.apply(x.data(), 3);
  EXPECT_NEAR(x[0], std::cos(3.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(3.0f), 1e-6);
  EXPECT_NEAR(x[2], std::cos(3.0f * 0.7498942093f), 1e-6);
  EXPECT_NEAR(x[3], std::sin(3.0f * 0.7498942093f), 1e-6);
}

TEST(SoftmaxScale, MatchesModelSpec) {
  ModelConfig c = v3_rope_config();
  c.qk_nope_head_dim = 128;
  EXPECT_NEAR(c.softmax_scale(), 0.1352338, 1e-6);
  c.rope_scaling.mscale_all_dim = 0.707;
  EXPECT_NEAR(c.softmax_scale(), 0.1147214, 1e-6);
}

ModelConfig router_config(TopkMethod method, ScoringFunc scoring) {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.topk_method = method;
  c.scoring_func = scoring;
  c.norm_topk_prob = method == TopkMethod::kNoauxTc;
  c.routed_scaling_factor = 2.5;
  return c;
}

float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

TEST(Router, NoauxTcMasksDroppedGroupsWithMinusInfinityAndWeightsFromUnbiasedScores) {
  const ModelConfig c = router_config(TopkMethod::kNoauxTc, ScoringFunc::kSigmoid);
  // Groups of 2: {0,1} {2,3} {4,5} {6,7}. A bias of -1 makes every biased score negative, so
  // the kept groups {0,1} and {2,3} hold scores below 0: with HF's 0.0 fill the dropped experts
  // 4 and 5 would win; with the reference's −∞ mask experts 0 and 1 do.
  std::vector<float> logits = {4, 4, 3, 3, -6, -6, -6, -6};
  std::vector<float> bias(8, -1.0f);
  std::vector<RoutedExpert> out(2);
  route_token(c, logits, bias, out);
  EXPECT_EQ(out[0].expert, 0);
  EXPECT_EQ(out[1].expert, 1);
  // Weights: unbiased sigmoid, renormalised, times 2.5 -> 1.25 each.
  EXPECT_NEAR(out[0].weight, 1.25f, 1e-6);
  EXPECT_NEAR(out[1].weight, 1.25f, 1e-6);
}

TEST(Router, NoauxTcBiasChangesSelectionButNotWeights) {
  const ModelConfig c = router_config(TopkMethod::kNoauxTc, ScoringFunc::kSigmoid);
  std::vector<float> logits = {1.0f, 0.5f, 0.9f, 0.2f, 0.1f, 0.0f, -0.1f, -0.2f};
  std::vector<float> bias = {0, 0, 0, 0, 0, 0, 0, 0.9f};
  std::vector<RoutedExpert> out(2);
  route_token(c, logits, bias, out);
  // Group sums (biased): g0 1.35, g1 1.26, g2 1.02, g3 ~1.78 -> keep g3 and g0; top-2 of {0,1,6,7}: 7 and 0.
  EXPECT_EQ(out[0].expert, 0);
  EXPECT_EQ(out[1].expert, 7);
  const float s0 = sigmoid(1.0f), s7 = sigmoid(-0.2f);
  EXPECT_NEAR(out[0].weight, s0 / (s0 + s7) * 2.5f, 1e-6);
  EXPECT_NEAR(out[1].weight, s7 / (s0 + s7) * 2.5f, 1e-6);
}

TEST(Router, SoftmaxGreedyAndGroupLimitedGreedy) {
  std::vector<float> logits = {0.0f, 3.0f, 2.9f, 0.0f, 0.0f, 0.0f, 2.8f, 0.0f};
  std::vector<RoutedExpert> out(2);
  ModelConfig greedy = router_config(TopkMethod::kGreedy, ScoringFunc::kSoftmax);
  greedy.routed_scaling_factor = 1.0;
  route_token(greedy, logits, {}, out);
  EXPECT_EQ(out[0].expert, 1);
  EXPECT_EQ(out[1].expert, 2);
  double sum = 0;
  for (float z : logits) sum += std::exp(z);
  EXPECT_NEAR(out[0].weight, std::exp(3.0) / sum, 1e-6);  // no renormalisation
  // Group-limited greedy: group score = max (g0 3.0, g1 2.9, g3 2.8); keeping one group leaves
  // experts 0 and 1 although expert 2 scores higher than expert 0.
  ModelConfig limited = router_config(TopkMethod::kGroupLimitedGreedy, ScoringFunc::kSoftmax);
  limited.topk_group = 1;
  route_token(limited, logits, {}, out);
  EXPECT_EQ(out[0].expert, 0);
  EXPECT_EQ(out[1].expert, 1);
  EXPECT_NEAR(out[1].weight, std::exp(3.0) / sum * 2.5, 1e-6);
}

}  // namespace
}  // namespace hetmoe
