// The placement planner: given a model config, a machine, an engine, statistics and a
// workload, decide what lives on the GPU, in DRAM and on NVMe (and in which format) to maximise
// predicted decode tokens/s within the memory budgets; say whether it fits, what bounds it and
// which single upgrade would help most. docs/PLANNER.md describes the algorithm.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/plan/cost_model.h"
#include "engine/plan/expert_stats.h"

namespace hetmoe::plan {

struct PlanRequest {
  ModelConfig config;
  std::string model_name;  // for reports
  HardwareProfile profile;
  EngineTraits traits;
  Workload workload;
  std::optional<ExpertStats> stats;           // none: uniform routing
  std::optional<uint64_t> gpu_budget_bytes;   // none: the GPU's memory
  std::optional<uint64_t> dram_budget_bytes;  // none: DRAM less an OS reserve
  std::optional<WeightFormat> expert_format;  // none: as shipped
  bool expert_format_auto = false;            // try shipped, int8, int4; keep the fastest that fits
  std::optional<WeightFormat> dense_format;   // none: as shipped
};

struct Upgrade {
  std::string name;         // "dram_bandwidth_x2"
  std::string description;  // "DRAM bandwidth x2 (twice the memory channels)"
  bool fits = false;
  double decode_tokens_per_second = 0;
  double prefill_tokens_per_second = 0;
};

struct Plan {
  std::string model_name, profile_name, engine_name;
  Workload workload;  // experts_per_token resolved
  bool fits = false;
  std::vector<std::string> problems;  // why it does not fit
  std::string what_would_fit;         // when it does not
  uint64_t gpu_budget_bytes = 0, dram_budget_bytes = 0, nvme_capacity_bytes = 0;
  Placement placement;
  Prediction prediction;
  std::vector<Upgrade> upgrades;  // best first; empty when not computed
  int64_t hot_experts = 0, warm_experts = 0, cold_experts = 0;
};

// Throws hetmoe::Error for an invalid request (bad workload, budget above the hardware, stats
// of another model, a format the profile cannot run).
Plan make_plan(const PlanRequest& request, bool with_upgrades = true);

// The DRAM a machine keeps for the OS when no budget is given: 5% of DRAM, 1..16 GiB.
uint64_t default_dram_budget(const HardwareProfile& profile);

// --- reports ----------------------------------------------------------------------------------
std::string plan_report(const Plan& plan);            // human-readable
nlohmann::json plan_summary_json(const Plan& plan);   // `--json`: fits, speeds, bottleneck, bytes per tier
nlohmann::json plan_file_json(const Plan& plan);      // summary + every expert's tier (what `run --plan` reads)

// --- what-if sweeps -----------------------------------------------------------------------------
struct SweepPoint {
  double gpu_gib = 0, dram_gib = 0;
  Plan plan;
};
// Every (GPU memory, DRAM size) pair, budgets at their defaults. A GPU size of 0 removes the
// GPU; a GPU size on a profile without one throws (there is no GPU to resize).
std::vector<SweepPoint> sweep_plans(const PlanRequest& request, const std::vector<double>& gpu_gib,
                                    const std::vector<double>& dram_gib);
// "gpu_mem=24,48,80 dram=128,256,512" -> the two lists (either may be absent: empty list).
void parse_sweep_spec(const std::string& spec, std::vector<double>* gpu_gib, std::vector<double>* dram_gib);
std::string sweep_table(const std::vector<SweepPoint>& points);
std::string sweep_svg(const std::vector<SweepPoint>& points, const std::string& title);

}  // namespace hetmoe::plan
