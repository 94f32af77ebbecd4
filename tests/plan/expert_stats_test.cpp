// Expert statistics: synthetic ones have the right mass and skew, probabilities rescale to
// another top-k, files round-trip, and mismatches fail clearly.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/plan/expert_stats.h"
#include "tests/plan/plan_test_util.h"

namespace hetmoe::plan {
namespace {

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

TEST(ExpertStats, UniformAndZipfCarryKPerToken) {
  const ModelConfig c = load_model_config(testing::kV3Config);
  for (const ExpertStats& s : {uniform_expert_stats(c), zipf_expert_stats(c, 1.2)}) {
    ASSERT_EQ(s.layers.size(), 58u);  // layers 3..60 are MoE
    EXPECT_EQ(s.layers.front(), 3);
    const auto p = activation_probabilities(c, &s, 8);
    for (const auto& layer : p) {
      EXPECT_NEAR(sum(layer), 8.0, 1e-9);
      for (double pe : layer) EXPECT_LE(pe, 1.0 + 1e-12);
    }
  }
  const auto p = activation_probabilities(c, nullptr, 8);
  EXPECT_NEAR(p[0][0], 8.0 / 256.0, 1e-15);
}

TEST(ExpertStats, ZipfIsSkewedAndDiffersBetweenLayers) {
  const ModelConfig c = load_model_config(testing::kV3Config);
  const ExpertStats s = zipf_expert_stats(c, 1.0);
  const auto p = activation_probabilities(c, &s, 8);
  std::vector<double> sorted = p[0];
  std::sort(sorted.rbegin(), sorted.rend());
  EXPECT_GT(sorted.front(), 10 * sorted.back());
  EXPECT_NE(std::max_element(p[0].begin(), p[0].end()) - p[0].begin(), std::max_element(p[1].begin(), p[1].end()) - p[1].begin());
  // A very strong skew saturates: the top experts are chosen by every token, never more.
  const ExpertStats steep = zipf_expert_stats(c, 4.0);
  const auto r = activation_probabilities(c, &steep, 8);
  EXPECT_NEAR(*std::max_element(r[0].begin(), r[0].end()), 1.0, 1e-12);
  EXPECT_NEAR(sum(r[0]), 8.0, 1e-9);
}

TEST(ExpertStats, RescalesToAnotherTopK) {
  const ModelConfig c = load_model_config(testing::kV3Config);
  const ExpertStats s = zipf_expert_stats(c, 0.8);
  const auto p6 = activation_probabilities(c, &s, 6);
  EXPECT_NEAR(sum(p6[5]), 6.0, 1e-9);
}

TEST(ExpertStats, FileRoundTripAndErrors) {
  const ModelConfig c = load_model_config(testing::kV2LiteConfig);
  ExpertStats s = zipf_expert_stats(c, 1.1);
  s.model = "v2-lite";
  const auto path = std::filesystem::temp_directory_path() / ("hetmoe_stats_" + std::to_string(::getpid()) + ".json");
  save_expert_stats(s, path);
  const ExpertStats t = load_expert_stats(path);
  std::filesystem::remove(path);
  EXPECT_EQ(t.layers, s.layers);
  EXPECT_EQ(t.counts, s.counts);
  EXPECT_EQ(t.experts_per_token, 6);

  // Statistics of the 64-expert V2-Lite do not describe the 256-expert V3.
  const ModelConfig v3 = load_model_config(testing::kV3Config);
  try {
    activation_probabilities(v3, &t, 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("64 routed experts"), std::string::npos);
  }
  nlohmann::json j = expert_stats_to_json(s);
  j["layers"][0]["counts"].erase(0);
  EXPECT_THROW(parse_expert_stats(j), Error);
  j = expert_stats_to_json(s);
  j["schema"] = "nope";
  EXPECT_THROW(parse_expert_stats(j), Error);
  EXPECT_THROW(synthetic_expert_stats(c, "zipf:abc"), Error);
  EXPECT_THROW(synthetic_expert_stats(c, "pareto"), Error);
}

}  // namespace
}  // namespace hetmoe::plan
