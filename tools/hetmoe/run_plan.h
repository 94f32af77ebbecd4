// What `hetmoe run --plan FILE` takes from a plan file (`hetmoe plan -o FILE`, schema
// hetmoe-plan/1, docs/PLANNER.md): the routed experts' format, the DRAM budget, and which
// experts stay resident. The per-expert tiers themselves are read by load_hot_experts
// (engine/runtime/streaming_experts.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace hetmoe::cli {

struct RunPlan {
  std::string expert_format;       // fp8 | int8 | int4 | bf16 (as `--format`)
  uint64_t dram_budget_bytes = 0;  // the plan's DRAM budget (0: none given)
  int64_t gpu_experts = 0;         // experts the plan puts on the GPU (DRAM-resident here: no GPU backend)
  int64_t dram_experts = 0;
  int64_t nvme_experts = 0;
  int64_t moe_layers = 0;
};

// Reads and checks a plan file; throws hetmoe::Error naming the file on anything that is not a
// hetmoe-plan/1 plan with a routed-expert format the CPU kernels have.
RunPlan load_run_plan(const std::filesystem::path& path);

}  // namespace hetmoe::cli
