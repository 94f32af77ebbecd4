// How an inference engine uses the machine, as a small traits struct the generic cost model
// reads (the way DeepGEMM's SM90ArchSpec feeds its heuristics). "hetmoe" is this engine as
// planned; "hetmoe-cpu-0" is the CPU forward pass that exists today (what the local
// validation measures); "ktransformers-0.2" and "llama.cpp" describe those systems as they ran
// for KTransformers' published DeepSeek-R1 results, so the cost model can be checked against
// them ("hetmoe-cpu-0-ref": today's engine with `run --format ref`, experts on the plain linear).
// Every value is explained in docs/PLANNER.md §4.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hetmoe::plan {

struct EngineTraits {
  std::string name;
  // A layer's GPU, CPU and I/O work runs concurrently (layer time = serial part + max of the
  // paths); false: one after the other (sum).
  bool overlap_paths = true;
  bool use_gpu = true;                     // false: CPU only even when a GPU exists
  bool gpu_routed_experts = true;          // may hold hot routed experts on the GPU
  bool upload_experts_for_prefill = true;  // copy a busy expert to the GPU when cheaper than the CPU
  bool numa_aware = true;                  // each socket reads node-local weights
  // Without NUMA placement on a multi-socket machine, the share of one socket's byte rate the
  // CPU kernels reach with threads on every socket (docs/PLANNER.md §4).
  double numa_unaware_factor = 0.55;
  bool numa_duplicate_weights = false;     // every NUMA node holds its own copy of the CPU-side experts
  bool mla_kv_cache = true;                // latent cache (MLA) vs full per-head K and V
  // The absorbed CPU attention re-reads kv_b for every (token, head): in the checkpoint's format,
  // or from an FP32 copy it keeps besides (4 bytes per parameter, in DRAM).
  bool cpu_attention_rereads_kv_b = false;
  bool cpu_attention_kv_b_f32 = false;
  bool cpu_router_f32 = false;             // CPU router reads an FP32 copy of the gate
  // The CPU attention core (absorbed MLA) and router are loops of single-threaded FP32 vector
  // ops (cpu::dot / axpy per head, per pair, per expert): costed with cpu.vector_* when measured.
  bool cpu_vector_ops = false;
  bool experts_on_dense_kernels = false;   // routed experts run on the plain linear (cpu.dense_kernels)
  double kv_bytes_per_value_cpu = 2;       // KV cache element size in DRAM
  double kv_bytes_per_value_gpu = 2;       // ... in GPU memory
  int kernel_calls_per_expert = 1;         // CPU kernel launches per touched routed expert
  int kernel_calls_per_moe_layer = 0;      // ... per MoE layer with CPU experts (batched runners)
  int kernel_calls_per_ffn = 1;            // ... per shared / dense FFN on the CPU
  int kernel_calls_per_attention = 1;      // ... for one layer's attention on the CPU
  double per_layer_overhead_seconds = 0;   // fixed cost per layer per step (handoffs, dispatch)
  double per_token_layer_seconds = 0;      // serial host-side cost per token per layer (not on any path)
  double cpu_prefill_efficiency = 1.0;     // fraction of the profile's CPU GEMM rate reached
  // Fraction of the profile's (isolated) CPU kernel and vector-op rates reached inside the
  // engine, where kernels alternate and evict each other's cache and TLB state.
  double cpu_in_engine_efficiency = 1.0;
  // Prefill runs the decode (GEMV) kernel once per token instead of a tiled GEMM: its FLOP rate
  // is the GEMV rate, 2 FLOP per parameter at the kernel's byte rate.
  bool prefill_as_gemv = false;
  double prefetch_recall = 0.9;            // share of NVMe reads issued one layer early
  // Without overlapping paths: the CPU still computes a layer's DRAM experts (and the shared
  // one) while that layer's reads are in flight, and each streamed expert as it lands, so the
  // layer's CPU and I/O parts take max(cpu, io + one streamed expert) instead of their sum.
  bool cpu_pipelines_reads = false;
  // Slots kept for streamed experts, in layers' worth of one step's experts: 2 for a staging
  // ring that also holds the next layer's prefetch, 1 for an engine whose one expert cache
  // serves hits and misses alike (the rest of the cache holds the most used experts).
  int staging_layers = 2;
  // DRAM counted the way engine/runtime's MemoryBudget reserves it for a streamed run
  // (reserve_run_memory: its own activation bound, no separate allowance for the runtime).
  bool runtime_memory_budget = false;
};

// Known engines; throws hetmoe::Error listing them for an unknown name.
EngineTraits engine_traits(std::string_view name);
std::vector<std::string> engine_names();

}  // namespace hetmoe::plan
