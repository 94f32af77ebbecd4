// The planner: budgets hold for random models and machines, more memory never predicts a slower
// plan, a model that fits the GPU goes there whole, bad input fails clearly, DeepSeek-V3 gets a
// plan (or a clear "does not fit") on every shipped profile, and the published KTransformers /
// llama.cpp results are reproduced within the tolerance docs/PLANNER.md states.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/plan/planner.h"
#include "tests/plan/plan_test_util.h"

namespace hetmoe::plan {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

PlanRequest random_request(std::mt19937_64& random) {
  PlanRequest r;
  r.config = testing::random_config(random);
  r.model_name = "random";
  r.profile = testing::random_profile(random);
  r.traits = engine_traits(testing::pick<std::string>(random, {"hetmoe", "hetmoe", "ktransformers-0.2", "llama.cpp", "hetmoe-cpu-0"}));
  r.workload.batch = testing::pick<int64_t>(random, {1, 1, 4, 32});
  r.workload.prompt_tokens = testing::pick<int64_t>(random, {16, 512, 4096});
  r.workload.gen_tokens = testing::pick<int64_t>(random, {0, 128, 1024});
  r.expert_format = testing::pick<WeightFormat>(random, {WeightFormat::kFP8, WeightFormat::kINT8, WeightFormat::kINT4, WeightFormat::kBF16});
  std::uniform_real_distribution<double> fraction(0.05, 1.0);
  if (r.profile.has_gpu() && testing::pick<int>(random, {0, 1}))
    r.gpu_budget_bytes = uint64_t(fraction(random) * double(r.profile.gpus[0].memory_bytes));
  if (testing::pick<int>(random, {0, 1})) r.dram_budget_bytes = uint64_t(fraction(random) * double(r.profile.dram.bytes));
  if (testing::pick<int>(random, {0, 1}))
    r.stats = zipf_expert_stats(r.config, testing::pick<double>(random, {0.5, 1.0, 1.5}), random());
  return r;
}

TEST(Planner, BudgetsAreRespectedForRandomModelsAndMachines) {
  std::mt19937_64 random(2024);
  int fitted = 0, refused = 0;
  for (int draw = 0; draw < 300; ++draw) {
    const PlanRequest r = random_request(random);
    SCOPED_TRACE("draw " + std::to_string(draw) + ": " + std::to_string(r.config.num_hidden_layers) + " layers, " +
                 std::to_string(r.config.n_routed_experts) + " experts, engine " + r.traits.name);
    const Plan plan = make_plan(r, false);
    const MemoryUse& m = plan.prediction.memory;
    if (plan.fits) {
      ++fitted;
      EXPECT_LE(m.gpu_bytes, plan.gpu_budget_bytes);
      EXPECT_LE(m.dram_bytes, plan.dram_budget_bytes);
      EXPECT_LE(m.nvme_bytes, r.profile.nvme.present() ? r.profile.nvme.bytes : 0);
      if (!r.profile.has_gpu() || !r.traits.use_gpu) {
        EXPECT_EQ(m.gpu_bytes, 0u);
      }
      EXPECT_TRUE(std::isfinite(plan.prediction.decode.tokens_per_second));
      EXPECT_GT(plan.prediction.decode.tokens_per_second, 0);
      EXPECT_GT(plan.prediction.prefill.tokens_per_second, 0);
      EXPECT_EQ(plan.hot_experts + plan.warm_experts + plan.cold_experts,
                int64_t(plan.placement.experts.size()) * r.config.n_routed_experts);
    } else {
      ++refused;
      EXPECT_FALSE(plan.problems.empty());
      EXPECT_FALSE(plan.what_would_fit.empty());
    }
  }
  // The draws must exercise both outcomes.
  EXPECT_GT(fitted, 50);
  EXPECT_GT(refused, 10);
}

TEST(Planner, MoreMemoryNeverPredictsSlower) {
  std::mt19937_64 random(99);
  for (int draw = 0; draw < 120; ++draw) {
    PlanRequest r = random_request(random);
    r.gpu_budget_bytes.reset();
    r.dram_budget_bytes.reset();
    SCOPED_TRACE("draw " + std::to_string(draw));
    const auto speed_and_fit = [&](std::optional<uint64_t> gpu, std::optional<uint64_t> dram) {
      PlanRequest q = r;
      q.gpu_budget_bytes = gpu;
      q.dram_budget_bytes = dram;
      const Plan p = make_plan(q, false);
      return std::pair(p.fits, p.prediction.decode.tokens_per_second);
    };
    const uint64_t dram = r.profile.dram.bytes;
    std::pair<bool, double> last{false, 0};
    for (double f : {0.1, 0.25, 0.5, 0.75, 0.95}) {
      const auto now = speed_and_fit(std::nullopt, uint64_t(f * double(dram)));
      if (last.first) {
        EXPECT_TRUE(now.first) << "DRAM " << f;
        EXPECT_GE(now.second, last.second * (1 - 1e-9)) << "DRAM " << f;
      }
      last = now;
    }
    if (!r.profile.has_gpu()) continue;
    last = {false, 0};
    for (double f : {0.05, 0.2, 0.4, 0.7, 1.0}) {
      const auto now = speed_and_fit(uint64_t(f * double(r.profile.gpus[0].memory_bytes)), std::nullopt);
      if (last.first) {
        EXPECT_TRUE(now.first) << "GPU " << f;
        EXPECT_GE(now.second, last.second * (1 - 1e-9)) << "GPU " << f;
      }
      last = now;
    }
  }
}

TEST(Planner, ReadsPipelinedWithTheCpuCostBetweenTheMaxAndTheSum) {
  // hetmoe-cpu-0 computes a layer's DRAM experts while its reads are in flight: with the same
  // placement, a streamed decode step is never slower than CPU work and reads in series, and
  // hides at most the reads.
  std::mt19937_64 random(11);
  int streamed = 0, hidden = 0;
  for (int draw = 0; draw < 500; ++draw) {
    PlanRequest r = random_request(random);
    r.traits = engine_traits("hetmoe-cpu-0");
    r.workload.batch = 1;
    r.dram_budget_bytes = uint64_t(std::uniform_real_distribution<double>(0.02, 0.5)(random) * double(r.profile.dram.bytes));
    const Plan pipelined = make_plan(r, false);
    if (!pipelined.fits || pipelined.cold_experts == 0) continue;
    ++streamed;
    r.traits.cpu_pipelines_reads = false;
    const Plan serial = make_plan(r, false);
    ASSERT_EQ(serial.warm_experts, pipelined.warm_experts) << draw;  // same placement
    const double step = pipelined.prediction.decode.seconds, sum = serial.prediction.decode.seconds;
    const double reads = serial.prediction.decode.critical_seconds[size_t(Resource::kNvme)];
    EXPECT_GT(reads, 0.0) << draw;
    EXPECT_LE(step, sum * (1 + 1e-9)) << draw;
    EXPECT_GE(step, (sum - reads) * (1 - 1e-9)) << draw;
    hidden += step < sum * (1 - 1e-6);
  }
  EXPECT_GT(streamed, 20);
  EXPECT_GT(hidden, 0);  // the overlap is not a no-op
}

TEST(Planner, ModelThatFitsTheGpuIsPlannedEntirelyThere) {
  const HardwareProfile h200 = load_hardware_profile(testing::kProfiles + "/h200-128g.json");
  // V2-Lite in BF16 is ~30 GiB; the H200 holds 139 GiB.
  PlanRequest r{.config = load_model_config(testing::kV2LiteConfig), .model_name = "v2-lite", .profile = h200,
                .traits = engine_traits("hetmoe")};
  const Plan plan = make_plan(r, false);
  ASSERT_TRUE(plan.fits);
  EXPECT_EQ(plan.warm_experts, 0);
  EXPECT_EQ(plan.cold_experts, 0);
  const Placement& p = plan.placement;
  EXPECT_TRUE(p.attention_gpu && p.shared_gpu && p.dense_gpu && p.lm_head_gpu && p.embedding_gpu);
  for (const auto& [name, bytes] : plan.prediction.memory.dram_parts) EXPECT_EQ(name, "runtime");
  EXPECT_EQ(plan.prediction.decode.critical_seconds[size_t(Resource::kCpuCompute)], 0.0);

  // The same for random small models on a large GPU.
  std::mt19937_64 random(5);
  for (int draw = 0; draw < 40; ++draw) {
    ModelConfig c = testing::random_config(random);
    c.num_hidden_layers = std::min<int64_t>(c.num_hidden_layers, 4);
    c.first_k_dense_replace = std::min<int64_t>(c.first_k_dense_replace, 1);
    c.hidden_size = std::min<int64_t>(c.hidden_size, 1024);
    c.intermediate_size = c.hidden_size * 2;
    PlanRequest q{.config = c, .model_name = "small", .profile = h200, .traits = engine_traits("hetmoe")};
    const Plan small = make_plan(q, false);
    ASSERT_TRUE(small.fits);
    EXPECT_EQ(small.warm_experts + small.cold_experts, 0) << "draw " << draw;
    EXPECT_TRUE(small.placement.embedding_gpu) << "draw " << draw;
  }
}

TEST(Planner, BadInputGivesClearErrors) {
  const HardwareProfile kt = load_hardware_profile(testing::kProfiles + "/ktransformers-2x6454s-4090.json");
  const ModelConfig v3 = load_model_config(testing::kV3Config);
  auto message = [](const PlanRequest& r) -> std::string {
    try {
      make_plan(r, false);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  PlanRequest r{.config = v3, .model_name = "v3", .profile = kt, .traits = engine_traits("hetmoe")};

  PlanRequest dense = r;
  dense.config.n_routed_experts = 0;
  EXPECT_NE(message(dense).find("Mixture-of-Experts"), std::string::npos);

  PlanRequest big_gpu = r;
  big_gpu.gpu_budget_bytes = 48 * kGiB;
  EXPECT_NE(message(big_gpu).find("exceeds the GPU"), std::string::npos);

  PlanRequest no_gpu = r;
  no_gpu.profile.gpus.clear();
  no_gpu.gpu_budget_bytes = 8 * kGiB;
  EXPECT_NE(message(no_gpu).find("no GPU"), std::string::npos);

  PlanRequest big_dram = r;
  big_dram.dram_budget_bytes = 4096 * kGiB;
  EXPECT_NE(message(big_dram).find("exceeds the machine"), std::string::npos);

  PlanRequest k = r;
  k.workload.experts_per_token = 300;
  EXPECT_NE(message(k).find("experts-per-token"), std::string::npos);

  PlanRequest batch = r;
  batch.workload.batch = 0;
  EXPECT_NE(message(batch).find("--batch"), std::string::npos);

  PlanRequest no_kernel = r;
  no_kernel.profile.cpu.kernels[int(WeightFormat::kINT4)] = {};
  no_kernel.expert_format = WeightFormat::kINT4;
  EXPECT_NE(message(no_kernel).find("cpu.kernels.int4"), std::string::npos);

  PlanRequest other_stats = r;
  other_stats.stats = uniform_expert_stats(load_model_config(testing::kV2LiteConfig));
  EXPECT_NE(message(other_stats).find("routed experts"), std::string::npos);

  EXPECT_THROW(engine_traits("vllm"), Error);
}

TEST(Planner, DeepSeekV3OnEveryShippedProfile) {
  const ModelConfig v3 = load_model_config(testing::kV3Config);
  int profiles = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::kProfiles)) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().filename().string());
    PlanRequest r{.config = v3, .model_name = "deepseek-v3", .profile = load_hardware_profile(entry.path()),
                  .traits = engine_traits("hetmoe")};
    const Plan plan = make_plan(r, true);
    if (plan.fits) {
      EXPECT_GT(plan.prediction.decode.tokens_per_second, 0);
      EXPECT_FALSE(plan.upgrades.empty());
    } else {
      EXPECT_FALSE(plan.what_would_fit.empty());
    }
    const nlohmann::json summary = plan_summary_json(plan);
    for (const char* key : {"fits", "decode_tokens_per_second", "prefill_tokens_per_second", "bottleneck", "gpu_bytes", "dram_bytes", "nvme_bytes"})
      EXPECT_TRUE(summary.contains(key)) << key;
    const nlohmann::json file = plan_file_json(plan);
    EXPECT_EQ(file["layers"].size(), 58u);
    EXPECT_FALSE(plan_report(plan).empty());
    ++profiles;
  }
  EXPECT_GE(profiles, 4);
}

// docs/PLANNER.md §5: DeepSeek-R1 Q4_K_M (INT4, 4.5 bits, as the stand-in) on KTransformers'
// machine. These pin the validation table so a cost-model change that breaks it is noticed.
TEST(Planner, ReproducesPublishedKTransformersAndLlamaCppResults) {
  const HardwareProfile kt = load_hardware_profile(testing::kProfiles + "/ktransformers-2x6454s-4090.json");
  auto run = [&](const char* engine, int64_t experts) {
    PlanRequest r{.config = load_model_config(testing::kV3Config), .model_name = "r1", .profile = kt,
                  .traits = engine_traits(engine),
                  .workload = {.batch = 1, .prompt_tokens = 500, .gen_tokens = 128, .experts_per_token = experts},
                  .expert_format = WeightFormat::kINT4, .dense_format = WeightFormat::kINT4};
    const Plan plan = make_plan(r, false);
    EXPECT_TRUE(plan.fits);
    return plan.prediction;
  };
  const auto within = [](double predicted, double published, double tolerance) {
    return std::abs(predicted / published - 1) <= tolerance;
  };
  const Prediction kt8 = run("ktransformers-0.2", 8), kt6 = run("ktransformers-0.2", 6), llama = run("llama.cpp", 8);
  EXPECT_TRUE(within(kt8.decode.tokens_per_second, 12.208, 0.30)) << kt8.decode.tokens_per_second;
  EXPECT_TRUE(within(kt6.decode.tokens_per_second, 13.69, 0.30)) << kt6.decode.tokens_per_second;
  EXPECT_TRUE(within(kt8.prefill.tokens_per_second, 82.94, 0.30)) << kt8.prefill.tokens_per_second;
  EXPECT_TRUE(within(llama.decode.tokens_per_second, 4.51, 0.30)) << llama.decode.tokens_per_second;
  // The two the model misses by more (see docs/PLANNER.md §5 for why): pinned loosely.
  EXPECT_TRUE(within(kt6.prefill.tokens_per_second, 97.32, 0.40)) << kt6.prefill.tokens_per_second;
  EXPECT_TRUE(within(llama.prefill.tokens_per_second, 10.31, 0.60)) << llama.prefill.tokens_per_second;
}

TEST(Planner, SweepTableAndChart) {
  std::vector<double> gpu, dram;
  parse_sweep_spec("gpu_mem=24,48,80 dram=128,256,512", &gpu, &dram);
  EXPECT_EQ(gpu, (std::vector<double>{24, 48, 80}));
  EXPECT_EQ(dram, (std::vector<double>{128, 256, 512}));
  EXPECT_THROW(parse_sweep_spec("gpu=24", &gpu, &dram), Error);
  EXPECT_THROW(parse_sweep_spec("dram=12x", &gpu, &dram), Error);
  PlanRequest r{.config = load_model_config(testing::kV3Config), .model_name = "v3",
                .profile = load_hardware_profile(testing::kProfiles + "/desktop-24g-nvme.json"),
                .traits = engine_traits("hetmoe"), .expert_format = WeightFormat::kINT4};
  const auto points = sweep_plans(r, {24, 48}, {128, 512});
  ASSERT_EQ(points.size(), 4u);
  // More DRAM at the same GPU: never slower.
  EXPECT_GE(points[1].plan.prediction.decode.tokens_per_second, points[0].plan.prediction.decode.tokens_per_second);
  const std::string table = sweep_table(points);
  EXPECT_NE(table.find("| 48 | 512 |"), std::string::npos);
  const std::string svg = sweep_svg(points, "a <title> & more");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("&lt;title&gt; &amp;"), std::string::npos);
  PlanRequest cpu_only = r;
  cpu_only.profile.gpus.clear();
  EXPECT_THROW(sweep_plans(cpu_only, {24}, {128}), Error);
}

}  // namespace
}  // namespace hetmoe::plan
