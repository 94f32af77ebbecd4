#include "engine/plan/engine_traits.h"

#include "engine/core/error.h"

namespace hetmoe::plan {
namespace {

EngineTraits hetmoe_planned() {
  // The pipeline of ARCHITECTURE.md: attention, KV cache and the always-used weights on the GPU,
  // hot experts on the GPU, warm ones on the CPU, cold ones streamed with next-layer prefetch.
  return {.name = "hetmoe",
          .overlap_paths = true,
          .kernel_calls_per_expert = 0,
          .kernel_calls_per_moe_layer = 4,
          .kernel_calls_per_ffn = 1,
          .kernel_calls_per_attention = 1,
          .per_layer_overhead_seconds = 30e-6,  // one GPU->CPU->GPU handoff of the hidden state
          .prefetch_recall = 0.9};              // next-gate prediction, LANDSCAPE.md: 90-97%
}

EngineTraits hetmoe_cpu_0() {
  // The CPU forward pass in engine/runtime today: routed experts on the packed expert kernels
  // (cpu/expert_ffn.h: all of a layer's experts in 4 parallel phases), everything else on the
  // plain cpu::linear; absorbed MLA re-reading kv_b in the checkpoint's format per (token, head)
  // (an FP32 copy until stop 12), FP32 router (one token per thread) and KV cache. What
  // `hetmoe run` measures in the local validation.
  return {.name = "hetmoe-cpu-0",
          .overlap_paths = false,
          .use_gpu = false,
          .gpu_routed_experts = false,
          .upload_experts_for_prefill = false,
          .cpu_attention_rereads_kv_b = true,
          .cpu_router_f32 = true,
          .cpu_vector_ops = true,
          .kv_bytes_per_value_cpu = 4,
          .kv_bytes_per_value_gpu = 4,
          .kernel_calls_per_expert = 0,
          .kernel_calls_per_moe_layer = 5,  // 4 expert-runner phases + router
          .kernel_calls_per_ffn = 3,        // gate, up, down
          .kernel_calls_per_attention = 5,  // q_a, q_b, kv_a, attention, o
          .per_layer_overhead_seconds = 0,
          // No in-engine penalty (docs/PLANNER.md section 6). The former 0.6 was fitted on the old
          // cpu::linear against `probe -t 1 --cpu-time` profiles that reported twice the one-thread
          // rates (fixed in probe.cpp); with the rates measured right, the isolated kernels add up to
          // the measured step: ds3-layers 1L/32e FP8 decode at -t 1, 65.6 ms predicted vs 63.9 ms
          // of CPU per token measured.
          .cpu_in_engine_efficiency = 1.0,
          // Its next-layer prefetch is not counted: measured on ds3-layers it gains nothing over
          // no prefetch (bench/RESULTS.md ## Streaming), and a one-MoE-layer model has none.
          .prefetch_recall = 0,
          .cpu_pipelines_reads = true,  // StreamingExperts::run
          .staging_layers = 1,          // one ExpertCache, next-use eviction
          .runtime_memory_budget = true};
}

EngineTraits ktransformers_0_2() {
  // KTransformers V0.2 as in its DeepSeek-R1 tutorial: MLA, KV cache, shared experts and dense
  // layers on the GPU, every routed expert on the CPU (CPUInfer, one fused call per layer), the
  // two run one after the other in each layer; weights duplicated per NUMA node.
  return {.name = "ktransformers-0.2",
          .overlap_paths = false,
          .gpu_routed_experts = false,
          .upload_experts_for_prefill = false,
          .numa_duplicate_weights = true,
          .kernel_calls_per_expert = 0,
          .kernel_calls_per_ffn = 0,
          .kernel_calls_per_attention = 0,
          .per_layer_overhead_seconds = 0.51e-3,  // docs/PLANNER.md §5: per-layer GPU<->CPU handoff
          .per_token_layer_seconds = 37e-6,       // ... and per-token host work, from single-socket results
          .prefetch_recall = 0};
}

EngineTraits llama_cpp_2025() {
  // llama.cpp as KTransformers ran it for comparison (early 2025): CPU only on 2x32 cores, no
  // NUMA placement, no MLA (full per-head K/V cache in F16), MoE GEMMs through mul_mat_id's
  // row-by-row vec_dot path rather than the tiled llamafile sgemm.
  return {.name = "llama.cpp",
          .overlap_paths = false,
          .use_gpu = false,
          .gpu_routed_experts = false,
          .upload_experts_for_prefill = false,
          .numa_aware = false,
          .mla_kv_cache = false,
          .kernel_calls_per_expert = 0,
          .kernel_calls_per_ffn = 0,
          .kernel_calls_per_attention = 0,
          .per_layer_overhead_seconds = 0.1e-3,  // ~20 graph nodes per layer, a thread barrier each
          .prefill_as_gemv = true,
          .prefetch_recall = 0};
}

}  // namespace

std::vector<std::string> engine_names() { return {"hetmoe", "hetmoe-cpu-0", "hetmoe-cpu-0-ref", "ktransformers-0.2", "llama.cpp"}; }

EngineTraits engine_traits(std::string_view name) {
  if (name == "hetmoe") return hetmoe_planned();
  if (name == "hetmoe-cpu-0") return hetmoe_cpu_0();
  if (name == "hetmoe-cpu-0-ref") {
    EngineTraits t = hetmoe_cpu_0();
    t.name = "hetmoe-cpu-0-ref";
    t.experts_on_dense_kernels = true;  // CheckpointExperts: gate, up, down through cpu::linear
    t.kernel_calls_per_expert = 3;
    t.kernel_calls_per_moe_layer = 1;   // the router
    return t;
  }
  if (name == "ktransformers-0.2") return ktransformers_0_2();
  if (name == "llama.cpp") return llama_cpp_2025();
  throw Error("unknown engine '" + std::string(name) + "'",
              {.hint = "use hetmoe, hetmoe-cpu-0, hetmoe-cpu-0-ref, ktransformers-0.2 or llama.cpp"});
}

}  // namespace hetmoe::plan
