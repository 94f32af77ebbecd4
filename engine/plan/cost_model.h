// The cost model: from a model's shape, a machine, an engine's traits, a workload, expert
// activation probabilities and a placement, the memory each tier holds and the predicted
// prefill and decode speed, with the resource that bounds each. Per layer and phase the time of
// every resource comes from a roofline; the engine's pipeline combines them (max of the
// overlapped paths plus the serial parts). Equations: docs/PLANNER.md §3.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model/config.h"
#include "engine/plan/engine_traits.h"
#include "engine/plan/hardware_profile.h"

namespace hetmoe::plan {

// A weight group (one layer's attention, one expert, lm_head, ...) as the cost model sees it.
struct WeightGroup {
  double params = 0;  // parameters (scales excluded)
  double bytes = 0;   // stored bytes in `format`, scales included
  WeightFormat format = WeightFormat::kBF16;
  double outputs = 0;  // output features per token of its [out, in] projections run by cpu::linear
};

// What the cost model needs from a config; every MLA layer has the same attention, every MoE
// layer the same experts (true of DeepSeek-V2/V3).
struct ModelShape {
  ModelConfig config;
  int64_t layers = 0, moe_layers = 0, dense_layers = 0;
  WeightFormat shipped_linear = WeightFormat::kBF16;  // FP8 when the checkpoint has quantization_config
  WeightGroup attention;   // one layer's MLA projections, as shipped
  WeightGroup dense_ffn;   // one dense layer's FFN
  WeightGroup shared;      // one MoE layer's shared experts
  WeightGroup expert;      // one routed expert
  WeightGroup router;      // one MoE layer's gate (F32 in the checkpoint's bias; weight as shipped)
  WeightGroup embedding;   // embed_tokens (a lookup: memory, no compute)
  WeightGroup lm_head;
  double kv_b_params = 0;  // one layer's kv_b (the engine may keep an FP32 copy)
};
// Throws hetmoe::Error for a config without routed experts or with impossible sizes.
ModelShape model_shape(const ModelConfig& config);
// `group` re-stored in `format` (the shipped bytes when the format is the shipped one).
WeightGroup in_format(const WeightGroup& group, WeightFormat format);

struct Workload {
  int64_t batch = 1;             // sequences decoded together
  int64_t prompt_tokens = 512;   // per sequence
  int64_t gen_tokens = 128;      // per sequence
  int64_t experts_per_token = 0; // 0: the config's num_experts_per_tok
};

enum class Tier : uint8_t { kGpu, kDram, kNvme };
std::string_view tier_name(Tier tier);

struct Placement {
  WeightFormat expert_format = WeightFormat::kFP8;
  std::optional<WeightFormat> dense_format;  // attention, dense, shared, lm_head; none: as shipped
  bool attention_gpu = false;  // MLA weights and the KV cache
  bool shared_gpu = false;
  bool dense_gpu = false;
  bool lm_head_gpu = false;
  bool embedding_gpu = false;
  std::vector<std::vector<Tier>> experts;  // [MoE layer][expert]
  uint64_t expert_cache_bytes = 0;         // DRAM staging + cache for experts read from NVMe
};

enum class Resource : uint8_t { kGpuCompute, kGpuMemory, kPcie, kCpuCompute, kDram, kNvme, kOverhead };
inline constexpr int kResourceCount = 7;
std::string_view resource_name(Resource resource);  // "gpu_compute", "dram_bandwidth", ...

struct PhaseCost {
  double seconds = 0;            // one decode step / the whole prefill
  double tokens_per_second = 0;
  // Seconds each resource spends on the critical path (the serial parts and the slowest path
  // of every layer), so the largest is the bottleneck.
  std::array<double, kResourceCount> critical_seconds{};
  Resource bottleneck = Resource::kDram;
};

struct MemoryUse {
  uint64_t gpu_bytes = 0, dram_bytes = 0, nvme_bytes = 0;
  // "attention", "kv_cache", "experts", ... per tier, for the report.
  std::vector<std::pair<std::string, uint64_t>> gpu_parts, dram_parts, nvme_parts;
};

struct Prediction {
  PhaseCost decode, prefill;
  MemoryUse memory;
  double decode_distinct_experts_per_layer = 0;  // E[distinct experts one decode step touches], mean over layers
  double decode_expert_bytes_gpu = 0, decode_expert_bytes_cpu = 0, decode_expert_bytes_nvme = 0;  // per step
  double cache_hit_rate = 0;  // of experts touched on the NVMe tier, the share the DRAM cache serves
};

// Everything the cost model reads, in one place.
struct CostInputs {
  const ModelShape* shape = nullptr;
  const HardwareProfile* profile = nullptr;
  const EngineTraits* traits = nullptr;
  Workload workload;
  const std::vector<std::vector<double>>* probabilities = nullptr;  // [MoE layer][expert] per token
};

// Memory the placement needs on each tier (weights, KV cache, activations, staging, reserves).
MemoryUse memory_use(const CostInputs& in, const Placement& placement);
// Predicted speed. Throws hetmoe::Error when the profile lacks a CPU kernel rate the placement needs.
Prediction predict(const CostInputs& in, const Placement& placement);

// E[distinct experts] when `tokens` tokens route independently: Σ_e 1 − (1 − p_e)^tokens.
double expected_distinct_experts(const std::vector<double>& p, double tokens);
// Che's approximation of an LRU cache holding `capacity` items with per-step request
// probabilities `rates`: hit probability of each item. Returns the characteristic time too.
std::vector<double> lru_hit_probabilities(const std::vector<double>& rates, double capacity);

}  // namespace hetmoe::plan
