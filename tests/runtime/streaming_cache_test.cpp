// Expert cache policies: replayed on synthetic decode traces (a cycle through the MoE layers,
// top-k per layer from a skewed distribution), the policy that knows layer distance and
// frequency beats LRU, which cycles evict worst; and the slot cache never evicts what the running
// layer uses or what is pinned.
#include "engine/runtime/expert_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

// `tokens` decode steps over `layers` MoE layers; per layer k distinct experts drawn from a
// Zipf(alpha) law over a per-layer random permutation.
RoutingTrace zipf_trace(int64_t layers, int64_t experts, int64_t k, double alpha, int64_t tokens,
                        uint64_t seed) {
  RoutingTrace trace{.num_layers = layers, .experts = experts};
  for (int64_t l = 0; l < layers; ++l) trace.moe_layers.push_back(l);
  std::mt19937_64 random(seed);
  std::vector<std::vector<int32_t>> permutation{size_t(layers)};
  for (auto& p : permutation) {
    p.resize(size_t(experts));
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), random);
  }
  std::vector<double> weights(static_cast<size_t>(experts));
  for (int64_t r = 0; r < experts; ++r) weights[size_t(r)] = std::pow(double(r + 1), -alpha);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t l = 0; l < layers; ++l) {
      std::discrete_distribution<int> draw(weights.begin(), weights.end());
      std::vector<int32_t> chosen;
      while (int64_t(chosen.size()) < k) {
        const int32_t e = permutation[size_t(l)][size_t(draw(random))];
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      std::sort(chosen.begin(), chosen.end());
      trace.steps.push_back({int32_t(l), chosen});
    }
  return trace;
}

TEST(CachePolicy, NamesRoundTrip) {
  for (auto kind : {CachePolicyKind::kLru, CachePolicyKind::kLfu, CachePolicyKind::kNextUse})
    EXPECT_EQ(parse_cache_policy(cache_policy_name(kind)), kind);
  EXPECT_EQ(parse_cache_policy("fifo"), std::nullopt);
}

TEST(CachePolicy, FixedExpertsPerLayerThrashLruButNotNextUse) {
  // Every layer always uses the same 8 experts; the cache holds half of that working set. LRU
  // evicts exactly the next layer's experts every time (no hits after warm-up); next-use keeps
  // a stable half.
  RoutingTrace trace{.num_layers = 8, .experts = 64, .moe_layers = {0, 1, 2, 3, 4, 5, 6, 7}};
  for (int t = 0; t < 200; ++t)
    for (int32_t l = 0; l < 8; ++l) trace.steps.push_back({l, {0, 9, 18, 27, 36, 45, 54, 63}});
  const int64_t capacity = 8 * 8 / 2;
  const double lru = simulate_hit_rate(trace, capacity, CachePolicyKind::kLru);
  const double next_use = simulate_hit_rate(trace, capacity, CachePolicyKind::kNextUse);
  EXPECT_LT(lru, 0.05);
  EXPECT_GT(next_use, 0.35) << "lru " << lru << " next-use " << next_use;
}

TEST(CachePolicy, SkewedRoutingFavoursFrequencyAwarePolicies) {
  const RoutingTrace trace = zipf_trace(8, 64, 8, 1.0, 300, 2);
  for (double share : {0.1, 0.25, 0.5}) {
    const int64_t capacity = int64_t(share * 8 * 64);
    const double lru = simulate_hit_rate(trace, capacity, CachePolicyKind::kLru);
    const double lfu = simulate_hit_rate(trace, capacity, CachePolicyKind::kLfu);
    const double next_use = simulate_hit_rate(trace, capacity, CachePolicyKind::kNextUse);
    EXPECT_GT(lfu, lru) << share;
    EXPECT_GE(next_use, lfu - 0.01) << share;
  }
}

TEST(CachePolicy, EverythingFitsOnlyCompulsoryMisses) {
  const RoutingTrace trace = zipf_trace(4, 16, 4, 0.5, 100, 3);
  for (auto kind : {CachePolicyKind::kLru, CachePolicyKind::kLfu, CachePolicyKind::kNextUse}) {
    const double rate = simulate_hit_rate(trace, 4 * 16, kind);
    EXPECT_GE(rate, 1.0 - 64.0 / (100.0 * 16) - 1e-12) << cache_policy_name(kind);
  }
}

TEST(ExpertCache, NeverEvictsPinnedOrInUseSlots) {
  MemoryBudget budget(0);
  const std::vector<int64_t> moe = {1, 2};
  ExpertCache cache(3, 4, moe, 3, 4096, CachePolicyKind::kLru, budget);
  EXPECT_EQ(budget.used_bytes(), 3u * 4096);
  auto* pinned = cache.acquire({1, 0});
  pinned->pinned = true;
  pinned->state = ExpertCache::State::kReady;
  auto* busy = cache.acquire({1, 1});
  busy->state = ExpertCache::State::kReady;
  busy->users = 1;
  auto* loading = cache.acquire({1, 2});      // still kLoading
  EXPECT_EQ(cache.acquire({2, 0}), nullptr);  // nothing evictable
  loading->state = ExpertCache::State::kReady;
  auto* replaced = cache.acquire({2, 0});
  EXPECT_EQ(replaced, loading);
  EXPECT_EQ(cache.find({1, 2}), nullptr);
  EXPECT_EQ(cache.find({2, 0}), replaced);
  EXPECT_EQ(cache.evictions(), 1u);
}

TEST(MemoryBudget, RefusesWithTheNumbers) {
  MemoryBudget budget(1000);
  budget.reserve(600, "weights");
  try {
    budget.reserve(500, "cache");
    FAIL();
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("1100 bytes are needed"), std::string::npos) << text;
    EXPECT_NE(text.find("weights"), std::string::npos) << text;
  }
  {
    BudgetReservation r(budget, 400, "cache");
    EXPECT_EQ(budget.used_bytes(), 1000u);
  }
  EXPECT_EQ(budget.used_bytes(), 600u);
  EXPECT_EQ(budget.peak_bytes(), 1000u);
}

}  // namespace
}  // namespace hetmoe
