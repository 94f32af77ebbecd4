#include "engine/runtime/sampler.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

TEST(Sampler, GreedyTakesTheArgmaxWithinTheVocabLimit) {
  Sampler sampler({}, 4);
  std::vector<float> logits = {0.1f, 2.0f, 0.3f, 1.0f, 9.0f};  // id 4 is padding beyond the limit
  EXPECT_EQ(sampler.sample(logits, {}), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  std::vector<int32_t> a, b;
  for (auto* out : {&a, &b}) {
    Sampler sampler({.temperature = 1.0f, .seed = 42}, 6);
    for (int i = 0; i < 50; ++i) {
      std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
      out->push_back(sampler.sample(logits, {}));
    }
  }
  EXPECT_EQ(a, b);
  const std::set<int32_t> distinct(a.begin(), a.end());
  EXPECT_GT(distinct.size(), 2u) << "temperature 1 over near-equal logits should draw several ids";
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  for (SamplingParams params : {SamplingParams{.temperature = 1.5f, .top_k = 1, .seed = 3},
                                SamplingParams{.temperature = 1.5f, .top_p = 0.01f, .seed = 3}}) {
    Sampler sampler(params, 5);
    for (int i = 0; i < 20; ++i) {
      std::vector<float> logits = {0.0f, 1.0f, 3.0f, 2.9f, 0.5f};
      EXPECT_EQ(sampler.sample(logits, {}), 2);
    }
  }
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  Sampler sampler({.temperature = 1.0f, .min_p = 0.5f, .seed = 9}, 4);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> logits = {5.0f, 4.9f, 0.0f, -1.0f};  // p(2)/p(0) ~ e^-5 < 0.5
    const int32_t token = sampler.sample(logits, {});
    EXPECT_TRUE(token == 0 || token == 1);
  }
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  Sampler sampler({.repetition_penalty = 2.0f}, 3);
  std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  const std::vector<int32_t> history = {0};
  EXPECT_EQ(sampler.sample(logits, history), 1);  // 3.0 / 2 = 1.5 < 2.0
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler({.top_p = 0.0f}, 4), Error);
  EXPECT_THROW(Sampler({.min_p = 1.0f}, 4), Error);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0f}, 4), Error);
}

}  // namespace
}  // namespace hetmoe
