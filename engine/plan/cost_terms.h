// The cost model's terms, shared by the prediction (cost_model.cpp) and the planner's greedy
// placement (planner.cpp) so both use one set of equations (docs/PLANNER.md §3).
#pragma once

#include <array>
#include <cmath>
#include <vector>

#include "engine/plan/cost_model.h"

namespace hetmoe::plan {

// Probability that an expert chosen with per-token probability p is used by a step of
// `tokens` tokens: 1 − (1 − p)^tokens.
inline double touch_probability(double p, double tokens) {
  if (p >= 1.0) return 1.0;
  if (p <= 0.0) return 0.0;
  return -std::expm1(tokens * std::log1p(-p));
}

// E[min(n, cap)] for the tokens n ~ Binomial(tokens, p) of a step that an expert chosen with
// per-token probability p receives: Σ_{j<cap} P(n > j). With E[n·1{n>0}] = tokens·p and
// P(n > 0) = touch_probability, it splits a step's extra tokens into those on the kernels'
// small-batch paths (2..cap) and the rest (docs/PLANNER.md §3.3). `tokens` may be fractional
// (the generalised binomial pmf is used).
inline double expected_min_tokens(double p, double tokens, int cap) {
  if (p >= 1.0) return std::min(tokens, double(cap));
  if (p <= 0.0 || tokens <= 0.0) return 0.0;
  double pmf = std::exp(tokens * std::log1p(-p));  // P(n = 0)
  double at_most = 0, sum = 0;
  for (int j = 0; j < cap; ++j) {
    at_most += pmf;  // P(n <= j)
    sum += std::max(0.0, 1.0 - at_most);
    pmf = tokens - j > 0 ? pmf * (tokens - j) / (j + 1) * p / (1.0 - p) : 0.0;
  }
  return sum;
}

// Seconds with the resource each was spent on.
struct Time {
  double seconds = 0;
  std::array<double, kResourceCount> by{};
  void add(Resource r, double s) {
    seconds += s;
    by[size_t(r)] += s;
  }
  void add(const Time& t) {
    seconds += t.seconds;
    for (int r = 0; r < kResourceCount; ++r) by[size_t(r)] += t.by[size_t(r)];
  }
  Time scaled(double f) const {
    Time t;
    t.seconds = seconds * f;
    for (int r = 0; r < kResourceCount; ++r) t.by[size_t(r)] = by[size_t(r)] * f;
    return t;
  }
};

// One layer's work by path, before the pipeline combines it.
struct LayerState {
  Time serial;               // attention, router, hidden-state copies, dense FFN
  double gpu_memory_s = 0;   // GPU path (shared + hot experts + uploaded experts), grouped:
  double gpu_compute_s = 0;  //   time = max(memory, compute)
  double gpu_launch_s = 0;
  Time cpu;                  // CPU path: warm and cold experts (and the shared expert on the CPU)
  Time io;                   // NVMe reads of missed cold experts
  Time cpu_tail;             // CPU time of one streamed expert (computed after its read lands)
  Time pcie;                 // prefill: experts copied to the GPU
  bool cpu_involved = true;  // the CPU does part of this layer (a handoff or a CPU dispatch)
  Time gpu_path() const;
};

struct LayerCosts {
  Time total;
  double distinct_experts = 0;       // summed over MoE layers
  double expert_bytes[3] = {0, 0, 0};  // bytes of touched experts per tier (expected, per step)
  double cache_hit_rate = 0;
};

struct ExpertCost {
  double touch = 0;  // probability the step uses the expert
  Time cpu;          // expected CPU time if the expert is computed on the CPU
  bool cpu_supported = false;  // the profile has a CPU kernel for the expert format
  double gpu_memory_s = 0, gpu_compute_s = 0;  // expected GPU times if it is on the GPU
  double nvme_s = 0;                           // expected read time if it is cold and missed
};

class CostTerms {
 public:
  CostTerms(const CostInputs& in, const Placement& placement);

  // Weight groups in the formats the placement stores them in.
  WeightGroup attention() const;
  WeightGroup shared() const;
  WeightGroup dense_ffn() const;
  WeightGroup lm_head() const;
  WeightGroup router() const;
  WeightGroup expert() const;
  double kv_bytes_per_token_layer(bool gpu) const;
  // Bytes of one layer's kv_b the absorbed CPU attention reads per token (its format, or FP32).
  double kv_b_reread_bytes() const;
  double activation_bytes() const;
  bool gpu_usable() const;
  // Copies of each CPU-side expert in DRAM (one per NUMA node for engines that duplicate).
  double dram_copies() const;
  bool uploads_possible() const;

  Time gpu_group(const WeightGroup& group, double tokens) const;
  Time cpu_group(const WeightGroup& group, double tokens, int calls, double thread_share = 1.0) const;
  Time attention_time(double tokens, double context, bool prefill) const;
  // The CPU router of the MoE layer (and, for engines that write it with vector ops, its loop).
  Time router_time(double tokens) const;
  // Expected cost of one expert (per-token probability p) in a step of `tokens` tokens.
  ExpertCost expert_cost(double p, double tokens) const;

  // The layer's work with the experts placed as `tiers` (per-expert probabilities `p`).
  LayerState moe_layer_state(const std::vector<double>& p, const std::vector<Tier>& tiers, double tokens,
                             double context, bool prefill, const std::vector<double>* hit) const;
  Time combine(const LayerState& layer) const;
  LayerCosts layers(double tokens, double context, bool prefill) const;

  const CostInputs& inputs() const { return in_; }

 private:
  // `expert`: the routed-expert kernels (cpu.kernels), else the dense ones (cpu.dense_kernels).
  const CpuKernelRate& cpu_kernel(WeightFormat format, bool expert) const;
  double cpu_byte_rate(WeightFormat format, Resource* limiter, bool expert = false) const;
  // The marginal FLOP rate of a token beyond the first: on the small-batch paths (the first
  // kSmallBatchTokens tokens) or the GEMM (the rest).
  double cpu_flops_rate(const WeightGroup& group, bool expert, bool small_batch) const;
  double cpu_attention_flops_rate() const;
  double gpu_flops_rate(WeightFormat format) const;

  const CostInputs& in_;
  const Placement& pl_;
  std::vector<std::vector<double>> hit_;  // [MoE layer][expert] cache hit probability of cold experts
  double cache_hit_rate_ = 0;
};

}  // namespace hetmoe::plan
