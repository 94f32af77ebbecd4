// What `hetmoe run --plan FILE` takes from a plan file (`hetmoe plan -o FILE`, schema
// hetmoe-plan/1, docs/PLANNER.md): the routed experts' format, the DRAM budget, and which
// experts stay resident (its "gpu" and "dram" tiers: without a GPU backend both stay in DRAM).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/runtime/expert_cache.h"

namespace hetmoe::cli {

struct RunPlan {
  std::string expert_format;       // fp8 | int8 | int4 | bf16 (as `--format`)
  uint64_t dram_budget_bytes = 0;  // the plan's DRAM budget (0: none given)
  int64_t gpu_experts = 0;         // experts the plan puts on the GPU
  int64_t dram_experts = 0;
  int64_t nvme_experts = 0;
  std::vector<ExpertKey> resident;  // the GPU and DRAM experts, as (layer, expert) of `config`
};

// Reads the plan file once and checks it: a hetmoe-plan/1 plan for a model with `config`'s MoE
// layers and experts, with a routed-expert format the CPU kernels have. Throws hetmoe::Error
// naming the file otherwise.
RunPlan load_run_plan(const std::filesystem::path& path, const ModelConfig& config);

}  // namespace hetmoe::cli
