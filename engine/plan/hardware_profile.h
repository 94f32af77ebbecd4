// A machine as the planner sees it: CPU (topology and the measured rates of hetmoe's CPU
// kernels per weight format), DRAM, an NVMe drive and GPUs — each as achievable rates, not
// datasheet peaks. `hetmoe probe` measures one; tools/profiles/ holds hand-written ones for
// machines we do not have, each with its sources. The JSON schema is in docs/PLANNER.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace hetmoe::plan {

// Formats a weight can be held in. kAsShipped is resolved against the checkpoint before use.
enum class WeightFormat { kF32, kBF16, kFP8, kINT8, kINT4 };
inline constexpr int kWeightFormatCount = 5;
std::string_view weight_format_name(WeightFormat format);  // "fp8", "int4", ...
// Parses "f32|bf16|fp8|int8|int4"; throws hetmoe::Error naming the accepted spellings.
WeightFormat parse_weight_format(std::string_view name);
// Storage per weight including its scales, as hetmoe's packed expert layouts hold them
// (cpu/packed_matrix.h): FP8 with an f32 scale per 16 rows x 128 columns, INT8 / INT4 with an
// f32 scale per row and group of 128 (8.25 / 4.25 bits), BF16, F32.
double weight_format_bits(WeightFormat format);

// A CPU kernel's speed for one weight format, as a piecewise-linear cost model of one weight
// matrix with P parameters taking B bytes, run over n tokens (S = kSmallBatchTokens):
//   t(n) = B / decode_weight_bytes_per_second
//        + 2·(min(n, S)−1)·P / small_batch_flops_per_second + 2·max(n−S, 0)·P / prefill_flops_per_second
// so t(1) is the decode (GEMV) time, the first tokens after it cost what the kernels' small-batch
// paths take, and the rest the GEMM rate (docs/PLANNER.md §3.2). Without a small-batch rate
// (hand-written profiles, older probes) the GEMM rate applies from the second token.
inline constexpr int kSmallBatchTokens = 4;
struct CpuKernelRate {
  double decode_weight_bytes_per_second = 0;  // weight bytes consumed per second at 1 token
  double prefill_flops_per_second = 0;        // marginal FLOP/s per extra token beyond kSmallBatchTokens
  double small_batch_flops_per_second = 0;    // marginal FLOP/s per extra token up to kSmallBatchTokens; 0: absent
  bool present() const { return decode_weight_bytes_per_second > 0 && prefill_flops_per_second > 0; }
  // The marginal rate of tokens 2..kSmallBatchTokens.
  double small_batch_rate() const { return small_batch_flops_per_second > 0 ? small_batch_flops_per_second : prefill_flops_per_second; }
};

struct CpuProfile {
  std::string model;
  int sockets = 1;
  int numa_nodes = 1;
  int physical_cores = 1;
  int threads = 1;  // hardware threads
  uint64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;  // per core (L1/L2) and per socket (L3)
  std::vector<std::string> isa;                        // "avx2", "avx512f", "avx512_bf16", "amx", ...
  CpuKernelRate kernels[kWeightFormatCount];        // routed-expert kernels, indexed by WeightFormat
  CpuKernelRate dense_kernels[kWeightFormatCount];  // attention, dense, shared, lm_head (absent: kernels)
  // Fixed cost of one parallel kernel call (thread-pool fork/join), seconds.
  double kernel_call_overhead_seconds = 0;
  // The FP32 vector ops (cpu::dot / cpu::axpy on one thread) the CPU attention and router are
  // written with: t(n) = vector_call_seconds + 2n / vector_flops_per_second. 0: not measured.
  double vector_flops_per_second = 0;
  double vector_call_seconds = 0;
  // One thread streaming an MLA head's f32 kv_b (128 axpy + 128 dot over 512-float rows) from
  // DRAM, compute included: bytes per second. 0: not measured (the DRAM rate is used instead).
  double vector_stream_bytes_per_second = 0;
  // A prompt's MLA attention as the engine runs it (cpu/absorbed_attention.h, blocks of 64 rows,
  // kv_b in cache), one thread, per head, with nope/v/latent/rope of the model:
  //   t = rows · (attention_row_seconds + 2·(nope + v)·latent / attention_row_flops_per_second)
  //     + pairs · (attention_pair_seconds + 2·(2·latent + rope) / attention_pair_flops_per_second)
  // (a rate of 0: that part is all fixed). All 0: not measured (the vector_* model applies).
  // Decode steps do not use these: a single row's pair loop measured 37.5 ns per (pair, head) on
  // the bundled model against 28 ns from this fit (64 rows share each latent block in L1), while
  // the vector model gives 38 ns (docs/PLANNER.md, stop 21).
  double attention_row_seconds = 0, attention_row_flops_per_second = 0;
  double attention_pair_seconds = 0, attention_pair_flops_per_second = 0;
  bool has_attention() const { return attention_row_seconds + attention_pair_seconds > 0; }
  // cpu::linear's prefill GEMM per token and output row beyond its FLOPs (the horizontal sum and
  // the store of each output), seconds over all threads: what makes short rows (a small model's
  // hidden size of 256) slower per FLOP than DeepSeek's. 0: not measured.
  double linear_output_seconds = 0;

  const CpuKernelRate& kernel(WeightFormat f) const { return kernels[int(f)]; }
  const CpuKernelRate& dense_kernel(WeightFormat f) const {
    return dense_kernels[int(f)].present() ? dense_kernels[int(f)] : kernels[int(f)];
  }
};

struct DramProfile {
  uint64_t bytes = 0;
  double read_bytes_per_second = 0;  // achievable (STREAM-like), all sockets together
};

struct NvmeProfile {
  uint64_t bytes = 0;                // capacity available for the expert store (0: none)
  double read_bytes_per_second = 0;  // O_DIRECT large-block reads at depth
  std::string path;                  // what was measured (probe) or the drive (hand-written)
  std::string method;                // "pread O_DIRECT 4 MiB", ...
  bool present() const { return bytes > 0 && read_bytes_per_second > 0; }
};

struct GpuProfile {
  std::string name;
  uint64_t memory_bytes = 0;
  double hbm_bytes_per_second = 0;        // achievable
  double fp8_flops_per_second = 0;        // dense tensor-core FP8 (0: none, FP8 runs as BF16)
  double bf16_flops_per_second = 0;       // dense tensor-core BF16
  double pcie_h2d_bytes_per_second = 0;   // pinned host-to-device copies
  uint64_t reserved_bytes = 0;            // CUDA context, workspace: not for weights
  double launch_overhead_seconds = 0;     // per kernel launch / sync within a layer
};

struct HardwareProfile {
  std::string name;
  std::vector<std::string> source;  // where every number comes from
  bool measured = false;            // true: written by `hetmoe probe`
  CpuProfile cpu;
  DramProfile dram;
  NvmeProfile nvme;
  std::vector<GpuProfile> gpus;
  bool has_gpu() const { return !gpus.empty(); }
};

// Parses and validates a profile; `origin` names the file in errors. Throws hetmoe::Error
// naming the field for a missing or out-of-range value.
HardwareProfile parse_hardware_profile(const nlohmann::json& json, const std::string& origin = "profile");
HardwareProfile load_hardware_profile(const std::filesystem::path& path);
nlohmann::json hardware_profile_to_json(const HardwareProfile& profile);

}  // namespace hetmoe::plan
