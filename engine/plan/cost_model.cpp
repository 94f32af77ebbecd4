#include "engine/plan/cost_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/core/error.h"
#include "engine/model/deepseek_v3.h"
#include "engine/plan/cost_terms.h"

namespace hetmoe::plan {

std::string_view tier_name(Tier tier) {
  switch (tier) {
    case Tier::kGpu:
      return "gpu";
    case Tier::kDram:
      return "dram";
    case Tier::kNvme:
      return "nvme";
  }
  return "?";
}

std::string_view resource_name(Resource resource) {
  switch (resource) {
    case Resource::kGpuCompute:
      return "gpu_compute";
    case Resource::kGpuMemory:
      return "gpu_memory_bandwidth";
    case Resource::kPcie:
      return "pcie";
    case Resource::kCpuCompute:
      return "cpu_compute";
    case Resource::kDram:
      return "dram_bandwidth";
    case Resource::kNvme:
      return "nvme_bandwidth";
    case Resource::kOverhead:
      return "dispatch_overhead";
  }
  return "?";
}

ModelShape model_shape(const ModelConfig& config) {
  check(config.n_routed_experts > 0 && config.num_experts_per_tok > 0,
        "the planner needs a Mixture-of-Experts model: this config has no routed experts",
        {.hint = "check n_routed_experts and num_experts_per_tok in config.json"});
  ModelShape shape;
  shape.config = config;
  shape.layers = config.num_hidden_layers;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    (config.is_moe_layer(l) ? shape.moe_layers : shape.dense_layers) += 1;
  shape.shipped_linear = config.quantization.present ? WeightFormat::kFP8 : WeightFormat::kBF16;
  int64_t first_dense = -1, first_moe = -1;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    if (config.is_moe_layer(l) && first_moe < 0) first_moe = l;
    if (!config.is_moe_layer(l) && first_dense < 0) first_dense = l;
  }
  // Layer 0 and the first layer of each kind are all the shape reads; the call validates the config.
  const std::vector<TensorSpec> tensors = model_tensors(config, {.only_layers = {0, first_dense, first_moe}});
  auto add = [](WeightGroup& group, const TensorSpec& spec) {
    if (spec.is_parameter()) group.params += double(spec.numel());
    group.bytes += double(spec.nbytes());
    // kv_b is no projection of the CPU engine's absorbed attention (§3.4).
    if (spec.role == TensorRole::kLinear && !spec.name.ends_with("kv_b_proj.weight"))
      group.outputs += double(spec.shape[0]);
  };
  for (const TensorSpec& spec : tensors) {
    switch (spec.group) {
      case TensorGroup::kAttention:
        if (spec.layer == 0) add(shape.attention, spec);
        // The weight itself, not its FP8 `kv_b_proj.weight_scale_inv` (whose 1024 scales used to
        // win here for FP8 checkpoints and hid the per-token kv_b re-read of today's CPU attention).
        if (spec.layer == 0 && spec.name.ends_with("kv_b_proj.weight"))
          shape.kv_b_params = double(spec.numel());
        break;
      case TensorGroup::kDenseFfn:
        if (spec.layer == first_dense) add(shape.dense_ffn, spec);
        break;
      case TensorGroup::kSharedExperts:
        if (spec.layer == first_moe) add(shape.shared, spec);
        break;
      case TensorGroup::kRoutedExperts:
        if (spec.layer == first_moe && spec.expert == 0) add(shape.expert, spec);
        break;
      case TensorGroup::kRouter:
        if (spec.layer == first_moe) add(shape.router, spec);
        break;
      case TensorGroup::kEmbedding:
        add(shape.embedding, spec);
        break;
      case TensorGroup::kLmHead:
        add(shape.lm_head, spec);
        break;
      default:
        break;
    }
  }
  shape.attention.format = shape.dense_ffn.format = shape.shared.format = shape.expert.format =
      shape.shipped_linear;
  shape.router.format = WeightFormat::kBF16;
  shape.embedding.format = WeightFormat::kBF16;
  shape.lm_head.format = WeightFormat::kBF16;  // DeepSeek ships lm_head and embeddings in BF16
  return shape;
}

WeightGroup in_format(const WeightGroup& group, WeightFormat format) {
  if (format == group.format) return group;
  return {.params = group.params,
          .bytes = group.params * weight_format_bits(format) / 8.0,
          .format = format,
          .outputs = group.outputs};
}

double expected_distinct_experts(const std::vector<double>& p, double tokens) {
  double sum = 0;
  for (double pe : p) sum += touch_probability(pe, tokens);
  return sum;
}

std::vector<double> lru_hit_probabilities(const std::vector<double>& rates, double capacity) {
  std::vector<double> hits(rates.size(), 0.0);
  double positive = 0;
  for (double r : rates) positive += r > 0 ? 1 : 0;
  if (capacity <= 0 || positive == 0) return hits;
  if (capacity >= positive) {
    for (size_t i = 0; i < rates.size(); ++i) hits[i] = rates[i] > 0 ? 1.0 : 0.0;
    return hits;
  }
  // Che's approximation: the characteristic time t solves Σ (1 − e^{−λ t}) = C.
  auto occupancy = [&](double t) {
    double s = 0;
    for (double r : rates) s += 1.0 - std::exp(-r * t);
    return s;
  };
  double lo = 0, hi = 1;
  while (occupancy(hi) < capacity && hi < 1e18) hi *= 2;
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (occupancy(mid) < capacity ? lo : hi) = mid;
  }
  for (size_t i = 0; i < rates.size(); ++i) hits[i] = 1.0 - std::exp(-rates[i] * hi);
  return hits;
}

// --- memory ---------------------------------------------------------------------------------

MemoryUse memory_use(const CostInputs& in, const Placement& pl) {
  const CostTerms terms(in, pl);
  const ModelShape& s = *in.shape;
  const Workload& w = in.workload;
  MemoryUse m;
  auto put = [&](Tier tier, const std::string& what, double bytes) {
    if (bytes <= 0) return;
    const uint64_t b = uint64_t(std::ceil(bytes));
    auto& parts = tier == Tier::kGpu ? m.gpu_parts : tier == Tier::kDram ? m.dram_parts : m.nvme_parts;
    auto& total = tier == Tier::kGpu ? m.gpu_bytes : tier == Tier::kDram ? m.dram_bytes : m.nvme_bytes;
    parts.emplace_back(what, b);
    total += b;
  };
  const Tier attention_tier = pl.attention_gpu ? Tier::kGpu : Tier::kDram;
  const double context = double(w.batch) * double(w.prompt_tokens + w.gen_tokens);
  put(attention_tier, "attention", terms.attention().bytes * double(s.layers));
  put(attention_tier, "kv_cache",
      context * terms.kv_bytes_per_token_layer(pl.attention_gpu) * double(s.layers));
  put(attention_tier, "activations", terms.activation_bytes());
  if (!pl.attention_gpu && in.traits->cpu_attention_rereads_kv_b && in.traits->cpu_attention_kv_b_f32)
    put(Tier::kDram, "kv_b_f32", s.kv_b_params * 4.0 * double(s.layers));
  const WeightGroup router = terms.router();
  put(pl.attention_gpu ? Tier::kGpu : Tier::kDram, "router", router.bytes * double(s.moe_layers));
  put(pl.shared_gpu ? Tier::kGpu : Tier::kDram, "shared_experts",
      terms.shared().bytes * double(s.moe_layers));
  put(pl.dense_gpu ? Tier::kGpu : Tier::kDram, "dense_ffn", terms.dense_ffn().bytes * double(s.dense_layers));
  put(pl.lm_head_gpu ? Tier::kGpu : Tier::kDram, "lm_head", terms.lm_head().bytes);
  put(pl.embedding_gpu ? Tier::kGpu : Tier::kDram, "embedding", s.embedding.bytes);
  double count[3] = {0, 0, 0};
  for (const auto& layer : pl.experts)
    for (Tier t : layer) count[int(t)] += 1;
  const double expert_bytes = terms.expert().bytes;
  put(Tier::kGpu, "hot_experts", count[int(Tier::kGpu)] * expert_bytes);
  // Engines that give every NUMA node its own copy of the CPU-side experts pay for it here.
  put(Tier::kDram, "warm_experts", count[int(Tier::kDram)] * expert_bytes * terms.dram_copies());
  if (count[int(Tier::kNvme)] > 0) {
    put(Tier::kDram, "expert_cache", double(pl.expert_cache_bytes));
    // The packed store holds every routed expert (docs/ARCHITECTURE.md, Expert store).
    put(Tier::kNvme, "expert_store", double(s.moe_layers) * double(s.config.n_routed_experts) * expert_bytes);
  }
  if (m.gpu_bytes > 0 && !in.profile->gpus.empty()) {
    if (terms.uploads_possible()) put(Tier::kGpu, "upload_staging", 2 * expert_bytes);
    put(Tier::kGpu, "reserved", double(in.profile->gpus[0].reserved_bytes));
  }
  // The process beyond its buffers; hetmoe's MemoryBudget does not count it (engines that plan
  // with it get no allowance: their --dram-budget is the budget's limit).
  if (!in.traits->runtime_memory_budget) put(Tier::kDram, "runtime", 256.0 * 1024 * 1024);
  return m;
}

// --- speed ----------------------------------------------------------------------------------

namespace {

void finish(PhaseCost& phase, double tokens) {
  phase.tokens_per_second = phase.seconds > 0 ? tokens / phase.seconds : 0;
  int best = 0;
  for (int r = 1; r < kResourceCount; ++r)
    if (phase.critical_seconds[size_t(r)] > phase.critical_seconds[size_t(best)]) best = r;
  phase.bottleneck = Resource(best);
}

}  // namespace

Prediction predict(const CostInputs& in, const Placement& pl) {
  const CostTerms terms(in, pl);
  const ModelShape& s = *in.shape;
  const Workload& w = in.workload;
  Prediction out;
  out.memory = memory_use(in, pl);

  // Decode: one step advances every sequence of the batch by one token, at the mean context.
  {
    const double tokens = double(w.batch);
    const double context = double(w.prompt_tokens) + 0.5 * double(w.gen_tokens);
    const LayerCosts layer_costs = terms.layers(tokens, context, /*prefill=*/false);
    out.decode.seconds = layer_costs.total.seconds;
    out.decode.critical_seconds = layer_costs.total.by;
    finish(out.decode, tokens);
    out.decode_distinct_experts_per_layer =
        layer_costs.distinct_experts / std::max<double>(1, double(s.moe_layers));
    out.decode_expert_bytes_gpu = layer_costs.expert_bytes[int(Tier::kGpu)];
    out.decode_expert_bytes_cpu = layer_costs.expert_bytes[int(Tier::kDram)];
    out.decode_expert_bytes_nvme = layer_costs.expert_bytes[int(Tier::kNvme)];
    out.cache_hit_rate = layer_costs.cache_hit_rate;
  }
  // Prefill: the whole batch of prompts as one step.
  {
    const double tokens = double(w.batch) * double(w.prompt_tokens);
    const LayerCosts layer_costs = terms.layers(tokens, double(w.prompt_tokens), /*prefill=*/true);
    out.prefill.seconds = layer_costs.total.seconds;
    out.prefill.critical_seconds = layer_costs.total.by;
    finish(out.prefill, tokens);
  }
  return out;
}

}  // namespace hetmoe::plan
