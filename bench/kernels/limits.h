// This machine's limits, measured in the benchmark run itself: what the kernel benchmarks'
// frac_of_limit counters divide by.
#pragma once

#include <cstdint>
#include <span>

#include "cpu/cpu_features.h"
#include "cpu/packed_matrix.h"
#include "cpu/threads.h"

namespace hetmoe::bench {

struct MachineLimits {
  int threads = 1;
  double read_bytes_per_second = 0;  // STREAM-like sum over a buffer >= 4x LLC, all threads
  double fma_flops = 0;              // fp32 vfmadd231ps at the kernels' width: zmm (2 x 16) on
                                     // AVX-512, ymm (2 x 8) on AVX2
  double bf16_dot_flops = 0;         // vdpbf16ps zmm: 2 flops x 32 pairs (0: CPU lacks AVX512_BF16)
  double vnni_ops = 0;               // vpdpbusd zmm: 2 ops x 64 byte products (0: no AVX512_VNNI)
  double maddubs_ops = 0;            // vpmaddubsw ymm: 2 ops x 32 byte products, the AVX2 INT8/INT4
                                     // kernels' multiply (0: no AVX2)
  double amx_int8_ops = 0;           // tdpbssd: 2 ops x 16 x 16 x 64 (0: no usable AMX-INT8)
};

enum class PeakKind { kFma, kBf16Dot, kVnni, kMaddubs, kAmxInt8 };
// The limit of `kind` in `limits`.
double peak_of(const MachineLimits& limits, PeakKind kind);

// Runs every measurement on `threads` (all of its slots busy); read_buffer_bytes sizes the
// bandwidth buffer. Each limit is measured with the instructions the CPU has (AVX-512, else
// AVX2); zero where it lacks them (and everything zero on a CPU without AVX2).
MachineLimits measure_limits(cpu::CpuThreads& threads, uint64_t read_buffer_bytes);

// A rate measured over many short windows: the fastest window (the least disturbed on a shared
// machine) and the mean over all windows.
struct Rate {
  double best = 0;
  double mean = 0;
};

// The single measurements, for re-measuring a limit right next to the benchmark that divides
// by it, with windows as long as the benchmark's own iterations (this machine is shared, so its
// limits drift). Regions: 64-byte aligned; a window reads `regions_per_window` consecutive
// regions (cycling), split across the slots; the first window is a warm-up.
Rate measure_read_bandwidth(cpu::CpuThreads& threads, std::span<const std::span<const uint8_t>> regions,
                            int64_t regions_per_window, int windows);
// 0 when the CPU lacks the instruction (AVX512_BF16 / AVX512_VNNI / AVX2 / AMX-INT8).
Rate measure_peak(cpu::CpuThreads& threads, PeakKind kind, double window_seconds, int windows);
// The calling thread alone, timed by its own CPU time (CLOCK_THREAD_CPUTIME_ID): the best of
// `windows` windows of ~1 ms, which a busy shared machine disturbs least.
double measure_peak_thread_cpu(PeakKind kind, int windows);
double thread_cpu_seconds();
// The peak the INT8/INT4 prefill kernel of `isa` is held to: AMX-INT8 under Isa::kAmx, vpmaddubsw
// under Isa::kAvx2, else VNNI.
PeakKind int_prefill_peak(cpu::Isa isa);
// Whether the FP8/BF16 prefill under `isa` runs on vdpbf16ps (HETMOE_FLOAT_PREFILL=bf16dot on an
// AVX-512 CPU with AVX512_BF16; cpu/packed_gemm.h).
bool float_prefill_dot(cpu::Isa isa);
// The peak the prefill kernel of `format` under `isa` is held to: int_prefill_peak for INT8/INT4;
// for FP8/BF16 the fp32 FMA, or the BF16 dot where float_prefill_dot.
PeakKind prefill_peak(cpu::PackedFormat format, cpu::Isa isa);

// The instruction loops, each in a file compiled with its ISA's flags (call only when the CPU has
// it). *_chains: `repeats` × 12 independent instructions (4 tdpbssd for AMX); read_sum_*: sums
// `bytes` as 4 interleaved streams with a 2 KiB software prefetch, like the decode kernels.
float fma_chains_avx512(long repeats);
float bf16_chains_avx512(long repeats);
int vnni_chains_avx512(long repeats);
uint64_t read_sum_avx512(const uint8_t* data, uint64_t bytes);
float fma_chains_avx2(long repeats);
int maddubs_chains_avx2(long repeats);
uint64_t read_sum_avx2(const uint8_t* data, uint64_t bytes);
int amx_int8_chains(long repeats);

}  // namespace hetmoe::bench
