#include "engine/plan/cost_terms.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/core/error.h"
#include "engine/model/footprint.h"

namespace hetmoe::plan {

Time LayerState::gpu_path() const {
  Time t;
  if (gpu_memory_s >= gpu_compute_s) {
    t.add(Resource::kGpuMemory, gpu_memory_s);
  } else {
    t.add(Resource::kGpuCompute, gpu_compute_s);
  }
  t.add(Resource::kOverhead, gpu_launch_s);
  return t;
}

CostTerms::CostTerms(const CostInputs& in, const Placement& placement) : in_(in), pl_(placement) {
  check(in.shape && in.profile && in.traits, "cost model inputs are incomplete");
  // Cache hit probabilities of cold experts: Che's approximation over every cold expert of every
  // layer, each requested once per decode step with its touch probability.
  std::vector<double> rates;
  std::vector<std::pair<size_t, size_t>> where;
  const double tokens = double(in.workload.batch);
  for (size_t l = 0; l < pl_.experts.size(); ++l)
    for (size_t e = 0; e < pl_.experts[l].size(); ++e)
      if (pl_.experts[l][e] == Tier::kNvme) {
        rates.push_back(touch_probability((*in.probabilities)[l][e], tokens));
        where.emplace_back(l, e);
      }
  if (!rates.empty()) {
    const double capacity = double(pl_.expert_cache_bytes) / std::max(1.0, expert().bytes);
    const std::vector<double> hits = lru_hit_probabilities(rates, std::floor(capacity));
    hit_.assign(pl_.experts.size(), {});
    for (size_t l = 0; l < pl_.experts.size(); ++l) hit_[l].assign(pl_.experts[l].size(), 0.0);
    double requests = 0, hit_requests = 0;
    for (size_t i = 0; i < rates.size(); ++i) {
      hit_[where[i].first][where[i].second] = hits[i];
      requests += rates[i];
      hit_requests += rates[i] * hits[i];
    }
    cache_hit_rate_ = requests > 0 ? hit_requests / requests : 0;
  }
}

WeightGroup CostTerms::attention() const {
  return pl_.dense_format ? in_format(in_.shape->attention, *pl_.dense_format) : in_.shape->attention;
}
WeightGroup CostTerms::shared() const {
  return pl_.dense_format ? in_format(in_.shape->shared, *pl_.dense_format) : in_.shape->shared;
}
WeightGroup CostTerms::dense_ffn() const {
  return pl_.dense_format ? in_format(in_.shape->dense_ffn, *pl_.dense_format) : in_.shape->dense_ffn;
}
WeightGroup CostTerms::lm_head() const {
  return pl_.dense_format ? in_format(in_.shape->lm_head, *pl_.dense_format) : in_.shape->lm_head;
}
WeightGroup CostTerms::router() const {
  const WeightGroup& r = in_.shape->router;
  if (in_.traits->cpu_router_f32 && !pl_.attention_gpu) return in_format(r, WeightFormat::kF32);
  return r;
}
WeightGroup CostTerms::expert() const {
  return in_format(in_.shape->expert, pl_.expert_format);
}

double CostTerms::kv_bytes_per_token_layer(bool gpu) const {
  const ModelConfig& c = in_.shape->config;
  const double per_value = gpu ? in_.traits->kv_bytes_per_value_gpu : in_.traits->kv_bytes_per_value_cpu;
  if (in_.traits->mla_kv_cache) return double(c.kv_lora_rank + c.qk_rope_head_dim) * per_value;
  return double(c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim) * per_value;
}

double CostTerms::activation_bytes() const {
  // f32 working buffers of one prefill step (hidden, normed, delta, q, context, gathered expert
  // inputs/outputs and intermediates) plus the last tokens' logits.
  const ModelConfig& c = in_.shape->config;
  const Workload& w = in_.workload;
  const double k = double(w.experts_per_token > 0 ? w.experts_per_token : c.num_experts_per_tok);
  const double tokens = double(w.batch) * double(w.prompt_tokens);
  if (in_.traits->runtime_memory_budget) {
    // What engine/runtime reserves for one forward pass of the prompt (memory_budget.h).
    return double(forward_activation_bytes(c, std::max<int64_t>(1, int64_t(tokens)),
                                           w.prompt_tokens + w.gen_tokens, w.batch,
                                           in_.profile->cpu.physical_cores));
  }
  const double per_token = 3.0 * double(c.hidden_size) +
                           double(c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim) +
                           2.0 * k * double(c.hidden_size) + 2.0 * k * double(c.moe_intermediate_size);
  return 4.0 * (tokens * per_token + double(w.batch) * double(c.vocab_size));
}

double CostTerms::dram_copies() const {
  return in_.traits->numa_duplicate_weights ? double(std::max(1, in_.profile->cpu.numa_nodes)) : 1.0;
}

bool CostTerms::gpu_usable() const {
  return in_.traits->use_gpu && in_.profile->has_gpu();
}

bool CostTerms::uploads_possible() const {
  return gpu_usable() && in_.traits->upload_experts_for_prefill && pl_.attention_gpu;
}

double CostTerms::gpu_flops_rate(WeightFormat format) const {
  const GpuProfile& g = in_.profile->gpus[0];
  if (format == WeightFormat::kFP8 && g.fp8_flops_per_second > 0) return g.fp8_flops_per_second;
  return g.bf16_flops_per_second;
}

const CpuKernelRate& CostTerms::cpu_kernel(WeightFormat format, bool expert) const {
  const CpuProfile& cpu = in_.profile->cpu;
  if (in_.traits->experts_on_dense_kernels) expert = false;
  const CpuKernelRate& k = expert ? cpu.kernel(format) : cpu.dense_kernel(format);
  if (k.present()) return k;  // the planner's inner loop: no message built on the way
  const std::string name(weight_format_name(format));
  throw Error("hardware profile '" + in_.profile->name + "' has no CPU kernel rate for " + name +
                  (expert ? " routed experts" : " weights"),
              {.hint = "add cpu.kernels." + name + (expert ? "" : " (or cpu.dense_kernels." + name + ")") +
                       " to the profile, or plan another format (--expert-format / --dense-format)"});
}

double CostTerms::cpu_byte_rate(WeightFormat format, Resource* limiter, bool expert) const {
  const CpuProfile& cpu = in_.profile->cpu;
  const CpuKernelRate& k = cpu_kernel(format, expert);
  const double dram = in_.profile->dram.read_bytes_per_second;
  // A probed kernel rate is already a DRAM rate (the probe cycles the kernel through a working set
  // of 2x the LLC), and the packed kernels stream better than the probe's plain integer-sum loop
  // (14.4 vs 10.4 GB/s on one thread here), so only a hand-written rate is capped by `dram`.
  double rate = in_.profile->measured ? k.decode_weight_bytes_per_second
                                      : std::min(k.decode_weight_bytes_per_second, dram);
  if (limiter) *limiter = dram <= k.decode_weight_bytes_per_second ? Resource::kDram : Resource::kCpuCompute;
  if (!in_.traits->numa_aware && cpu.sockets > 1)
    rate = rate / double(cpu.sockets) * in_.traits->numa_unaware_factor;
  return rate * in_.traits->cpu_in_engine_efficiency;
}

double CostTerms::cpu_flops_rate(const WeightGroup& group, bool expert, bool small_batch) const {
  const CpuKernelRate& k = cpu_kernel(group.format, expert);
  const double efficiency = in_.traits->cpu_in_engine_efficiency;
  if (in_.traits->prefill_as_gemv && group.bytes > 0)
    return k.decode_weight_bytes_per_second * 2.0 * group.params / group.bytes * efficiency;
  const double rate = small_batch ? k.small_batch_rate() : k.prefill_flops_per_second;
  return rate * in_.traits->cpu_prefill_efficiency * efficiency;
}

double CostTerms::cpu_attention_flops_rate() const {
  // Attention scores and the weighted sum run in f32 (cpu::dot / axpy).
  const CpuProfile& cpu = in_.profile->cpu;
  if (cpu.kernel(WeightFormat::kF32).present())
    return cpu.kernel(WeightFormat::kF32).prefill_flops_per_second;
  double best = 0;
  for (const CpuKernelRate& k : cpu.kernels) best = std::max(best, k.prefill_flops_per_second);
  return best;
}

Time CostTerms::gpu_group(const WeightGroup& group, double tokens) const {
  const GpuProfile& g = in_.profile->gpus[0];
  Time t;
  const double memory = group.bytes / g.hbm_bytes_per_second;
  const double compute = 2.0 * tokens * group.params / gpu_flops_rate(group.format);
  memory >= compute ? t.add(Resource::kGpuMemory, memory) : t.add(Resource::kGpuCompute, compute);
  t.add(Resource::kOverhead, g.launch_overhead_seconds);
  return t;
}

Time CostTerms::cpu_group(const WeightGroup& group, double tokens, int calls, double thread_share) const {
  Resource limiter = Resource::kDram;
  const double byte_rate = cpu_byte_rate(group.format, &limiter) * std::clamp(thread_share, 1e-3, 1.0);
  Time t;
  t.add(limiter, group.bytes / byte_rate);
  // Tokens 2..kSmallBatchTokens at the small-batch rate, the rest at the GEMM rate (§3.2).
  const double small = std::clamp(tokens, 1.0, double(kSmallBatchTokens)) - 1.0;
  const double large = std::max(0.0, tokens - double(kSmallBatchTokens));
  if (small > 0)
    t.add(Resource::kCpuCompute, 2.0 * small * group.params / cpu_flops_rate(group, false, true));
  if (large > 0)
    t.add(Resource::kCpuCompute, 2.0 * large * group.params / cpu_flops_rate(group, false, false));
  if (large > 0 && !in_.traits->prefill_as_gemv)
    t.add(Resource::kCpuCompute, large * group.outputs * in_.profile->cpu.linear_output_seconds /
                                     in_.traits->cpu_in_engine_efficiency);
  t.add(Resource::kOverhead, double(calls) * in_.profile->cpu.kernel_call_overhead_seconds);
  return t;
}

double CostTerms::kv_b_reread_bytes() const {
  if (in_.traits->cpu_attention_kv_b_f32) return in_.shape->kv_b_params * 4.0;
  const WeightGroup a = attention();
  return a.params > 0 ? in_.shape->kv_b_params * a.bytes / a.params : 0.0;
}

Time CostTerms::attention_time(double tokens, double context, bool prefill) const {
  const ModelConfig& c = in_.shape->config;
  const EngineTraits& tr = *in_.traits;
  const bool gpu = pl_.attention_gpu;
  const WeightGroup weights = attention();
  // (query, key) pairs: a decode step attends `context` positions per token; a prefill of
  // prompts of length P attends (P + 1) / 2 on average.
  const double pairs = prefill ? tokens * (context + 1.0) / 2.0 : tokens * context;
  const double heads = double(c.num_attention_heads);
  const bool absorbed = tr.mla_kv_cache && (!prefill || !gpu);
  const double flops_per_pair = absorbed ? 2.0 * heads * double(2 * c.kv_lora_rank + c.qk_rope_head_dim)
                                         : 2.0 * heads * double(c.qk_head_dim() + c.v_head_dim);
  const double kv_read = prefill ? 0.0 : pairs * kv_bytes_per_token_layer(gpu);
  Time t;
  if (gpu) {
    const GpuProfile& g = in_.profile->gpus[0];
    const double memory = (weights.bytes + kv_read + router().bytes) / g.hbm_bytes_per_second;
    const double compute = (2.0 * tokens * (weights.params + router().params) + pairs * flops_per_pair) /
                           gpu_flops_rate(weights.format);
    memory >= compute ? t.add(Resource::kGpuMemory, memory) : t.add(Resource::kGpuCompute, compute);
    t.add(Resource::kOverhead, 8 * g.launch_overhead_seconds);
    return t;
  }
  t.add(cpu_group(weights, tokens, tr.kernel_calls_per_attention));
  t.add(Resource::kDram, kv_read / in_.profile->dram.read_bytes_per_second);
  const CpuProfile& cpu = in_.profile->cpu;
  const double latent = double(c.kv_lora_rank);
  const double nope_v = double(c.qk_nope_head_dim + c.v_head_dim);
  if (prefill && absorbed && tr.cpu_vector_ops && cpu.has_attention()) {
    // Measured as the engine runs it (CpuProfile::attention_*): per (row, head) W_UK / W_UV on the
    // block's dequantised rows, per (pair, head) the scores, softmax and weighted sum; tasks are
    // (block of 64 rows of one prompt, head), each reading its head's kv_b rows once.
    const double prompts = std::max(1.0, double(in_.workload.batch));
    const double blocks = prompts * std::ceil(tokens / prompts / double(kAbsorbedAttentionRows));
    const double parallel = std::max(1.0, std::min(blocks * heads, double(cpu.physical_cores)));
    auto per = [](double fixed, double flops, double rate) {
      return fixed + (rate > 0 ? flops / rate : 0.0);
    };
    const double row =
        per(cpu.attention_row_seconds, 2.0 * nope_v * latent, cpu.attention_row_flops_per_second);
    const double pair =
        per(cpu.attention_pair_seconds, flops_per_pair / heads, cpu.attention_pair_flops_per_second);
    const double compute = heads * (tokens * row + pairs * pair) / parallel / tr.cpu_in_engine_efficiency;
    const double memory = blocks * kv_b_reread_bytes() / in_.profile->dram.read_bytes_per_second;
    compute >= memory ? t.add(Resource::kCpuCompute, compute) : t.add(Resource::kDram, memory);
    return t;
  }
  if (tr.cpu_vector_ops && cpu.vector_flops_per_second > 0 && absorbed) {
    // Per (token, head): q̃ = W_UKᵀ q_nope (nope axpys of `latent`) and W_UV · context (v dots),
    // over kv_b; per (pair, head): a latent dot, a rope dot and a latent axpy.
    // Rows run in parallel over (token, head); kv_b is re-read for every token.
    const double parallel = std::max(1.0, std::min(tokens * heads, double(cpu.physical_cores)));
    const double eff = tr.cpu_in_engine_efficiency;
    const double head_calls = tokens * heads * nope_v, head_flops = tokens * heads * 2.0 * nope_v * latent;
    const double pair_calls = pairs * heads * 3.0, pair_flops = pairs * flops_per_pair;
    auto vector_seconds = [&](double calls, double flops) {
      return (calls * cpu.vector_call_seconds + flops / cpu.vector_flops_per_second) / parallel / eff;
    };
    // kv_b is re-read for every token: from DRAM once it is larger than one core's L2
    // (DeepSeek-V3: 16 MiB per layer in FP8, 64 MiB as an FP32 copy), from cache otherwise.
    const double kv_b_bytes = kv_b_reread_bytes();
    const bool kv_b_from_dram = tr.cpu_attention_rereads_kv_b && kv_b_bytes > double(cpu.l2_bytes);
    const double dram = in_.profile->dram.read_bytes_per_second;
    if (kv_b_from_dram && cpu.vector_stream_bytes_per_second > 0) {
      // Measured as such (cpu.vector_stream: the engine's axpy/dot pattern over FP8 kv_b rows
      // streaming from DRAM, one thread, decode included), then the pair loop in cache.
      const double rate = std::min(parallel * cpu.vector_stream_bytes_per_second, dram);
      t.add(Resource::kDram, tokens * kv_b_bytes / rate / eff);
      t.add(Resource::kCpuCompute, vector_seconds(pair_calls, pair_flops));
      return t;
    }
    const double compute = vector_seconds(head_calls + pair_calls, head_flops + pair_flops);
    const double memory = kv_b_from_dram ? tokens * kv_b_bytes / dram / eff : 0;
    compute >= memory ? t.add(Resource::kCpuCompute, compute) : t.add(Resource::kDram, memory);
    return t;
  }
  if (tr.cpu_attention_rereads_kv_b) {
    // The absorbed form reads kv_b for every token (W_UK then W_UV per head).
    const WeightFormat format = tr.cpu_attention_kv_b_f32 ? WeightFormat::kF32 : weights.format;
    const WeightGroup kv_b{.params = in_.shape->kv_b_params, .bytes = kv_b_reread_bytes(), .format = format};
    if (cpu.dense_kernel(format).present()) t.add(cpu_group(kv_b, tokens, 0));
  }
  t.add(Resource::kCpuCompute, pairs * flops_per_pair / cpu_attention_flops_rate());
  return t;
}

Time CostTerms::router_time(double tokens) const {
  const EngineTraits& tr = *in_.traits;
  const CpuProfile& cpu = in_.profile->cpu;
  const WeightGroup r = router();
  if (tr.cpu_vector_ops && cpu.vector_flops_per_second > 0) {
    // One token per task: experts dots of `hidden` each, on min(tokens, cores) threads.
    const ModelConfig& c = in_.shape->config;
    const double parallel = std::max(1.0, std::min(tokens, double(cpu.physical_cores)));
    const double calls = tokens * double(c.n_routed_experts);
    const double flops = 2.0 * calls * double(c.hidden_size);
    Time t;
    const double compute = (calls * cpu.vector_call_seconds + flops / cpu.vector_flops_per_second) /
                           parallel / tr.cpu_in_engine_efficiency;
    const double memory = r.bytes / in_.profile->dram.read_bytes_per_second / tr.cpu_in_engine_efficiency;
    compute >= memory ? t.add(Resource::kCpuCompute, compute) : t.add(Resource::kDram, memory);
    return t;
  }
  // hetmoe's FP32 router runs one token per thread: a decode step of few tokens uses few cores.
  const double share = tr.cpu_router_f32 ? std::min(1.0, tokens / double(cpu.physical_cores)) : 1.0;
  return cpu_group(r, tokens, 1, share);
}

ExpertCost CostTerms::expert_cost(double p, double tokens) const {
  ExpertCost cost;
  const WeightGroup e = expert();
  cost.touch = touch_probability(p, tokens);
  if (cost.touch <= 0) return cost;
  // Expected CPU time: the weights are read when the expert is touched; every token beyond the
  // first adds its FLOPs (E[(n − 1)·1{n > 0}] = tokens·p − touch), tokens 2..kSmallBatchTokens
  // at the small-batch rate (E[min(n, S)] − touch of them), the rest at the GEMM rate.
  Resource limiter = Resource::kDram;
  const bool supported = in_.traits->experts_on_dense_kernels
                             ? in_.profile->cpu.dense_kernel(e.format).present()
                             : in_.profile->cpu.kernel(e.format).present();
  if (supported) {
    const double byte_rate = cpu_byte_rate(e.format, &limiter, true);
    cost.cpu.add(limiter, cost.touch * e.bytes / byte_rate);
    const double capped = expected_min_tokens(p, tokens, kSmallBatchTokens);
    const double small = std::max(0.0, capped - cost.touch), large = std::max(0.0, tokens * p - capped);
    if (small > 0)
      cost.cpu.add(Resource::kCpuCompute, 2.0 * small * e.params / cpu_flops_rate(e, true, true));
    if (large > 0)
      cost.cpu.add(Resource::kCpuCompute, 2.0 * large * e.params / cpu_flops_rate(e, true, false));
    cost.cpu.add(Resource::kOverhead, cost.touch * double(in_.traits->kernel_calls_per_expert) *
                                          in_.profile->cpu.kernel_call_overhead_seconds);
    cost.cpu_supported = true;
  }
  if (gpu_usable()) {
    const GpuProfile& g = in_.profile->gpus[0];
    cost.gpu_memory_s = cost.touch * e.bytes / g.hbm_bytes_per_second;
    cost.gpu_compute_s = 2.0 * tokens * p * e.params / gpu_flops_rate(e.format);
  }
  if (in_.profile->nvme.present())
    cost.nvme_s = cost.touch * e.bytes / in_.profile->nvme.read_bytes_per_second;
  return cost;
}

LayerState CostTerms::moe_layer_state(const std::vector<double>& p, const std::vector<Tier>& tiers,
                                      double tokens, double context, bool prefill,
                                      const std::vector<double>* hit) const {
  const EngineTraits& tr = *in_.traits;
  const ModelConfig& c = in_.shape->config;
  LayerState s;
  s.serial.add(attention_time(tokens, context, prefill));
  s.serial.add(Resource::kOverhead, tokens * tr.per_token_layer_seconds);
  if (!pl_.attention_gpu) s.serial.add(router_time(tokens));
  if (pl_.shared_gpu) {
    const Time t = gpu_group(shared(), tokens);
    s.gpu_memory_s += t.by[size_t(Resource::kGpuMemory)];
    s.gpu_compute_s += t.by[size_t(Resource::kGpuCompute)];
    s.gpu_launch_s += t.by[size_t(Resource::kOverhead)];
  } else {
    s.cpu.add(cpu_group(shared(), tokens, tr.kernel_calls_per_ffn));
  }
  bool any_cpu = !pl_.shared_gpu;
  std::vector<std::pair<double, size_t>> upload_candidates;
  std::vector<ExpertCost> costs(p.size());
  for (size_t e = 0; e < p.size(); ++e) {
    if (p[e] <= 0) continue;
    costs[e] = expert_cost(p[e], tokens);
    const ExpertCost& cost = costs[e];
    switch (tiers[e]) {
      case Tier::kGpu:
        s.gpu_memory_s += cost.gpu_memory_s;
        s.gpu_compute_s += cost.gpu_compute_s;
        break;
      case Tier::kNvme:
        s.io.add(Resource::kNvme, cost.nvme_s * (1.0 - (hit ? (*hit)[e] : 0.0)));
        if (cost.touch > 0 && cost.cpu.seconds / cost.touch > s.cpu_tail.seconds)
          s.cpu_tail = cost.cpu.scaled(1.0 / cost.touch);
        [[fallthrough]];
      case Tier::kDram:
        if (!cost.cpu_supported) cpu_kernel(expert().format, true);  // throws, naming the format
        s.cpu.add(cost.cpu);
        any_cpu = true;
        if (prefill && uploads_possible()) upload_candidates.emplace_back(cost.cpu.seconds, e);
        break;
    }
  }
  s.cpu_involved = any_cpu || !pl_.attention_gpu;
  if (any_cpu)
    s.cpu.add(Resource::kOverhead,
              double(tr.kernel_calls_per_moe_layer) * in_.profile->cpu.kernel_call_overhead_seconds);
  if (gpu_usable() && pl_.attention_gpu && any_cpu) {
    // The hidden state goes to the CPU and the expert outputs come back, every MoE layer.
    const double bytes = 2.0 * tokens * double(c.hidden_size) * 2.0;
    s.serial.add(Resource::kPcie, bytes / in_.profile->gpus[0].pcie_h2d_bytes_per_second);
  }
  if (!upload_candidates.empty()) {
    // Prefill: copy the busiest CPU-side experts to the GPU while that shortens the layer
    // (the copy and the GPU GEMM overlap the CPU's share).
    std::sort(upload_candidates.rbegin(), upload_candidates.rend());
    const GpuProfile& g = in_.profile->gpus[0];
    const double bytes = expert().bytes;
    for (const auto& [cpu_seconds, e] : upload_candidates) {
      const double before = combine(s).seconds;
      LayerState trial = s;
      trial.cpu = s.cpu;
      trial.cpu.add(costs[e].cpu.scaled(-1.0));
      trial.pcie.add(Resource::kPcie, bytes / g.pcie_h2d_bytes_per_second);
      trial.gpu_memory_s += bytes / g.hbm_bytes_per_second;
      trial.gpu_compute_s += costs[e].gpu_compute_s;
      if (combine(trial).seconds >= before) break;
      s = trial;
    }
  }
  return s;
}

Time CostTerms::combine(const LayerState& layer) const {
  const EngineTraits& tr = *in_.traits;
  Time t = layer.serial;
  const Time gpu = layer.gpu_path();
  if (tr.overlap_paths) {
    const Time io = layer.io.scaled(1.0 - tr.prefetch_recall);
    const Time* slowest = &gpu;
    for (const Time* path : {&layer.cpu, &io, &layer.pcie})
      if (path->seconds > slowest->seconds) slowest = path;
    t.add(*slowest);
  } else {
    t.add(gpu);
    t.add(layer.pcie);
    if (tr.cpu_pipelines_reads && layer.io.seconds + layer.cpu_tail.seconds > layer.cpu.seconds) {
      t.add(layer.io);  // the drive is the longer stage: then the last streamed expert
      t.add(layer.cpu_tail);
    } else if (tr.cpu_pipelines_reads) {
      t.add(layer.cpu);  // every read lands while the CPU is busy
    } else {
      t.add(layer.cpu);
      t.add(layer.io);
    }
  }
  // The fixed per-layer cost is the CPU's: a GPU->CPU->GPU handoff, or the CPU engine's dispatch.
  if (layer.cpu_involved) t.add(Resource::kOverhead, tr.per_layer_overhead_seconds);
  return t;
}

LayerCosts CostTerms::layers(double tokens, double context, bool prefill) const {
  const ModelShape& shape = *in_.shape;
  const ModelConfig& c = shape.config;
  const EngineTraits& tr = *in_.traits;
  LayerCosts out;
  out.cache_hit_rate = cache_hit_rate_;
  double io_total = 0;
  size_t m = 0;
  for (int64_t l = 0; l < shape.layers; ++l) {
    if (!c.is_moe_layer(l)) {
      LayerState s;
      s.serial.add(attention_time(tokens, context, prefill));
      s.serial.add(Resource::kOverhead, tokens * tr.per_token_layer_seconds);
      s.cpu_involved = !pl_.attention_gpu || !pl_.dense_gpu;
      if (pl_.dense_gpu) {
        s.serial.add(gpu_group(dense_ffn(), tokens));
      } else {
        s.serial.add(cpu_group(dense_ffn(), tokens, tr.kernel_calls_per_ffn));
        if (gpu_usable() && pl_.attention_gpu)
          s.serial.add(Resource::kPcie,
                       4.0 * tokens * double(c.hidden_size) / in_.profile->gpus[0].pcie_h2d_bytes_per_second);
      }
      out.total.add(combine(s));
      continue;
    }
    const std::vector<double>& p = (*in_.probabilities)[m];
    const std::vector<Tier>& tiers = pl_.experts[m];
    const LayerState s =
        moe_layer_state(p, tiers, tokens, context, prefill, hit_.empty() ? nullptr : &hit_[m]);
    out.total.add(combine(s));
    io_total += s.io.seconds;
    if (!prefill) {
      const double bytes = expert().bytes;
      for (size_t e = 0; e < p.size(); ++e) {
        const double q = touch_probability(p[e], tokens);
        out.distinct_experts += q;
        out.expert_bytes[int(tiers[e])] += q * bytes;
      }
    }
    ++m;
  }
  // Final norm and lm_head for the last token of every sequence.
  const double heads_tokens = prefill ? double(in_.workload.batch) : tokens;
  if (pl_.lm_head_gpu) {
    out.total.add(gpu_group(lm_head(), heads_tokens));
  } else {
    out.total.add(cpu_group(lm_head(), heads_tokens, 1));
  }
  // Reads issued a layer early overlap compute, but the drive cannot deliver faster than its rate.
  if (tr.overlap_paths && io_total > out.total.seconds)
    out.total.add(Resource::kNvme, io_total - out.total.seconds);
  return out;
}

}  // namespace hetmoe::plan
