// The cost model's pieces against independent references: expected distinct experts against a
// simulation of real top-k routing, Che's LRU approximation against a simulated LRU cache, and
// a CPU-only decode step against the roofline written out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <numeric>
#include <random>
#include <unordered_map>

#include "engine/plan/cost_model.h"
#include "engine/plan/cost_terms.h"
#include "engine/plan/expert_stats.h"
#include "engine/plan/planner.h"
#include "tests/plan/plan_test_util.h"

namespace hetmoe::plan {
namespace {

TEST(CostModel, ExpectedDistinctExpertsMatchesTopKSimulation) {
  // Each token picks k distinct experts uniformly: P(expert unused by a token) = 1 - k/E exactly.
  std::mt19937_64 random(7);
  const int experts = 64, k = 6;
  std::vector<int> ids(experts);
  std::iota(ids.begin(), ids.end(), 0);
  for (int tokens : {1, 3, 16, 100}) {
    double total = 0;
    const int trials = 3000;
    for (int trial = 0; trial < trials; ++trial) {
      std::vector<bool> used(experts, false);
      for (int t = 0; t < tokens; ++t) {
        std::vector<int> chosen;
        std::sample(ids.begin(), ids.end(), std::back_inserter(chosen), k, random);
        for (int e : chosen) used[size_t(e)] = true;
      }
      total += double(std::count(used.begin(), used.end(), true));
    }
    const double predicted = expected_distinct_experts(std::vector<double>(experts, double(k) / experts), tokens);
    EXPECT_NEAR(predicted, total / trials, 0.02 * predicted) << tokens << " tokens";
  }
}

// E[min(n, cap)] for n ~ Binomial(T, p), summed over the pmf written out with lgamma.
TEST(CostModel, ExpectedMinTokensIsTheBinomialExpectation) {
  for (int tokens : {1, 2, 3, 7, 102, 512}) {
    for (double p : {0.001, 0.03, 0.3, 0.9}) {
      for (int cap : {1, 2, 4, 16}) {
        double expected = 0;
        for (int n = 0; n <= tokens; ++n) {
          const double log_pmf = std::lgamma(tokens + 1.0) - std::lgamma(n + 1.0) - std::lgamma(tokens - n + 1.0) +
                                 n * std::log(p) + (tokens - n) * std::log1p(-p);
          expected += std::min(n, cap) * std::exp(log_pmf);
        }
        SCOPED_TRACE(::testing::Message() << "T=" << tokens << " p=" << p << " cap=" << cap);
        EXPECT_NEAR(expected_min_tokens(p, tokens, cap), expected, 1e-9 * std::max(1.0, expected));
      }
    }
  }
  EXPECT_DOUBLE_EQ(expected_min_tokens(0.2, 40, 1), touch_probability(0.2, 40));  // min(n, 1) = 1{n > 0}
  EXPECT_EQ(expected_min_tokens(1.0, 9, 4), 4.0);
  EXPECT_EQ(expected_min_tokens(1.0, 2, 4), 2.0);
  EXPECT_EQ(expected_min_tokens(0.0, 9, 4), 0.0);
}

// A kernel that is slower per token at 2–4 tokens than in its GEMM makes steps where experts see
// few tokens slower, leaves a one-token decode step alone, and changes nothing when the two
// rates are equal (§3.2).
TEST(CostModel, SmallBatchRateCostsOnlyTheFewTokenSteps) {
  const ModelConfig config = load_model_config(testing::kV3Config);
  auto predict = [&](double small_rate_factor) {
    HardwareProfile hw = testing::simple_cpu_profile();
    for (CpuKernelRate& k : hw.cpu.kernels) k.small_batch_flops_per_second = k.prefill_flops_per_second * small_rate_factor;
    PlanRequest request{.config = config, .model_name = "v3", .profile = hw, .traits = engine_traits("hetmoe-cpu-0"),
                        .workload = {.batch = 1, .prompt_tokens = 100, .gen_tokens = 16}};
    request.expert_format = WeightFormat::kINT4;
    const Plan plan = make_plan(request, false);
    EXPECT_TRUE(plan.fits);
    return plan.prediction;
  };
  const Prediction absent = predict(0), equal = predict(1), slow = predict(0.25);
  EXPECT_DOUBLE_EQ(equal.prefill.seconds, absent.prefill.seconds);
  EXPECT_DOUBLE_EQ(equal.decode.seconds, absent.decode.seconds);
  EXPECT_DOUBLE_EQ(slow.decode.seconds, absent.decode.seconds);
  // 100 tokens over 256 experts (8 per token): ~3 tokens per touched expert, most of them on the
  // small-batch path, so the prompt's expert FLOPs cost up to 4x more.
  EXPECT_GT(slow.prefill.seconds, 1.2 * absent.prefill.seconds);
}

TEST(CostModel, CheApproximationMatchesSimulatedLru) {
  // Items requested independently each step with Zipf-shaped probabilities; an LRU of C items.
  std::mt19937_64 random(11);
  const int items = 300, capacity = 60;
  std::vector<double> rates(items);
  for (int i = 0; i < items; ++i) rates[size_t(i)] = std::min(1.0, 0.6 / std::pow(double(i + 1), 0.9));
  const std::vector<double> hit = lru_hit_probabilities(rates, capacity);
  double predicted_hits = 0, requests = 0;
  for (int i = 0; i < items; ++i) {
    predicted_hits += rates[size_t(i)] * hit[size_t(i)];
    requests += rates[size_t(i)];
  }
  std::list<int> lru;
  std::unordered_map<int, std::list<int>::iterator> where;
  std::uniform_real_distribution<double> u(0, 1);
  double hits = 0, total = 0;
  std::vector<int> order(items);
  std::iota(order.begin(), order.end(), 0);
  for (int step = 0; step < 20000; ++step) {
    std::shuffle(order.begin(), order.end(), random);
    for (int i : order) {
      if (u(random) >= rates[size_t(i)]) continue;
      const bool warm = step > 1000;
      auto it = where.find(i);
      if (it != where.end()) {
        if (warm) hits += 1;
        lru.erase(it->second);
      } else if (int(lru.size()) == capacity) {
        where.erase(lru.back());
        lru.pop_back();
      }
      lru.push_front(i);
      where[i] = lru.begin();
      if (warm) total += 1;
    }
  }
  EXPECT_NEAR(predicted_hits / requests, hits / total, 0.03);
  EXPECT_EQ(lru_hit_probabilities(rates, items)[5], 1.0);
  EXPECT_EQ(lru_hit_probabilities(rates, 0)[5], 0.0);
}

TEST(CostModel, CpuDecodeStepIsTheRooflineByHand) {
  const ModelConfig config = load_model_config(testing::kV2LiteConfig);
  const ModelShape shape = model_shape(config);
  const HardwareProfile hw = testing::simple_cpu_profile();  // 50 GB/s kernels, 100 GB/s DRAM, 1 TFLOP/s
  EngineTraits traits = engine_traits("hetmoe");
  PlanRequest request{.config = config, .model_name = "v2-lite", .profile = hw, .traits = traits,
                      .workload = {.batch = 1, .prompt_tokens = 100, .gen_tokens = 0}};
  const Plan plan = make_plan(request, false);
  ASSERT_TRUE(plan.fits);
  ASSERT_EQ(plan.cold_experts, 0);
  // Every weight a token reads, once, at the kernel's 50 GB/s; the KV cache at DRAM speed;
  // attention scores at 1 TFLOP/s; a fixed overhead per layer.
  const double k = double(config.num_experts_per_tok);
  const double weights = double(shape.layers) * shape.attention.bytes + double(shape.dense_layers) * shape.dense_ffn.bytes +
                         double(shape.moe_layers) * (shape.router.bytes + shape.shared.bytes + k * shape.expert.bytes) +
                         shape.lm_head.bytes;
  const double context = 100;  // prompt + gen / 2
  const double kv = double(shape.layers) * context * double(config.kv_lora_rank + config.qk_rope_head_dim) * 2.0;
  const double scores = double(shape.layers) * context * 2.0 * double(config.num_attention_heads) *
                        double(2 * config.kv_lora_rank + config.qk_rope_head_dim);
  const double expected = weights / 50e9 + kv / 100e9 + scores / 1e12 + double(shape.layers) * traits.per_layer_overhead_seconds;
  EXPECT_NEAR(plan.prediction.decode.seconds, expected, 1e-6 * expected);
  EXPECT_EQ(plan.prediction.decode.bottleneck, Resource::kCpuCompute);  // kernel slower than DRAM
}

TEST(CostModel, StreamingIsBoundByTheDrive) {
  const ModelConfig config = load_model_config(testing::kV2LiteConfig);
  HardwareProfile hw = testing::simple_cpu_profile();
  hw.nvme.bytes = 1ull << 40;
  hw.nvme.read_bytes_per_second = 1e9;
  PlanRequest request{.config = config, .model_name = "v2-lite", .profile = hw, .traits = engine_traits("hetmoe"),
                      .workload = {.batch = 1, .prompt_tokens = 64, .gen_tokens = 64}};
  request.dram_budget_bytes = 8ull << 30;  // BF16 V2-Lite is ~30 GiB: most experts stream
  const Plan plan = make_plan(request, false);
  ASSERT_TRUE(plan.fits) << plan.problems.front();
  EXPECT_GT(plan.cold_experts, 0);
  EXPECT_LE(plan.prediction.memory.dram_bytes, 8ull << 30);
  EXPECT_EQ(plan.prediction.decode.bottleneck, Resource::kNvme);
  const double miss_bytes = plan.prediction.decode_expert_bytes_nvme * (1 - plan.prediction.cache_hit_rate);
  EXPECT_GE(plan.prediction.decode.seconds, 0.99 * miss_bytes / 1e9);
}

TEST(CostModel, PromptAttentionIsTheMeasuredBlockCost) {
  // With cpu.attention_* in the profile a prompt's attention costs, per layer and head,
  // tokens·row + pairs·pair over min(blocks·heads, cores) threads; decode does not use them.
  const ModelConfig config = load_model_config(testing::kV2LiteConfig);
  HardwareProfile hw = testing::simple_cpu_profile();
  hw.cpu.vector_flops_per_second = 50e9;
  hw.cpu.vector_call_seconds = 1e-9;
  const EngineTraits traits = engine_traits("hetmoe-cpu-0");  // the engine whose attention runs as probed
  auto predict = [&](const HardwareProfile& profile) {
    PlanRequest request{.config = config, .model_name = "v2-lite", .profile = profile, .traits = traits,
                        .workload = {.batch = 1, .prompt_tokens = 100, .gen_tokens = 16}};
    return make_plan(request, false).prediction;
  };
  const Prediction vector_model = predict(hw);
  hw.cpu.attention_row_seconds = 1e-7;
  hw.cpu.attention_pair_seconds = 1e-8;  // rates 0: all fixed
  const Prediction once = predict(hw);
  hw.cpu.attention_row_seconds *= 2;
  hw.cpu.attention_pair_seconds *= 2;
  const Prediction twice = predict(hw);
  const double heads = double(config.num_attention_heads), tokens = 100, pairs = 100 * 101 / 2.0;
  const double parallel = std::min(2 * heads, double(hw.cpu.physical_cores));  // 2 blocks of <= 64 rows
  const double per_layer = heads * (tokens * 1e-7 + pairs * 1e-8) / parallel / traits.cpu_in_engine_efficiency;
  const double expected = double(config.num_hidden_layers) * per_layer;
  EXPECT_NEAR(twice.prefill.seconds - once.prefill.seconds, expected, 1e-6 * expected);
  EXPECT_NE(once.prefill.seconds, vector_model.prefill.seconds);
  EXPECT_EQ(once.decode.seconds, vector_model.decode.seconds);
  EXPECT_EQ(twice.decode.seconds, vector_model.decode.seconds);
}

TEST(CostModel, ShortRowsCostPerOutputRow) {
  // cpu.linear_output_seconds charges every prompt token beyond the small batch, per output row of
  // the projections cpu::linear runs (attention without kv_b, shared experts, dense FFN).
  const ModelConfig config = load_model_config(testing::kV3Config);
  const ModelShape shape = model_shape(config);
  EXPECT_EQ(shape.attention.outputs, double(config.q_lora_rank + config.num_attention_heads * config.qk_head_dim() +
                                            config.kv_lora_rank + config.qk_rope_head_dim + config.hidden_size));
  EXPECT_EQ(shape.shared.outputs, double(2 * config.n_shared_experts * config.moe_intermediate_size + config.hidden_size));
  HardwareProfile hw = testing::simple_cpu_profile();
  const EngineTraits traits = engine_traits("hetmoe-cpu-0");
  auto predict = [&](double output_seconds) {
    hw.cpu.linear_output_seconds = output_seconds;
    PlanRequest request{.config = config, .model_name = "v3", .profile = hw, .traits = traits,
                        .workload = {.batch = 1, .prompt_tokens = 100, .gen_tokens = 16}};
    return make_plan(request, false).prediction;
  };
  const Prediction none = predict(0), once = predict(1e-9), twice = predict(2e-9);
  // (+ the router's: this profile has no vector ops, so the router is costed as a linear too)
  const double rows = double(shape.layers) * shape.attention.outputs +
                      double(shape.moe_layers) * (shape.shared.outputs + shape.router.outputs) +
                      double(shape.dense_layers) * shape.dense_ffn.outputs;
  const double expected = (100 - kSmallBatchTokens) * rows * 1e-9;
  EXPECT_NEAR(once.prefill.seconds - none.prefill.seconds, expected, 1e-6 * expected);
  EXPECT_NEAR(twice.prefill.seconds - once.prefill.seconds, expected, 1e-6 * expected);
  EXPECT_EQ(once.decode.seconds, none.decode.seconds);
}

TEST(CostModel, KvBIsTheWeightNotItsFp8Scales) {
  // FP8 checkpoints also hold kv_b_proj.weight_scale_inv; what the CPU attention re-reads is the weight.
  for (const std::string& path : {testing::kV3Config, testing::kV2LiteConfig}) {
    const ModelConfig c = load_model_config(path);
    const ModelShape shape = model_shape(c);
    EXPECT_EQ(shape.kv_b_params, double(c.kv_lora_rank) * double(c.num_attention_heads) * double(c.qk_nope_head_dim + c.v_head_dim))
        << path;
  }
}

}  // namespace
}  // namespace hetmoe::plan
