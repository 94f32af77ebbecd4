// Which x86 instruction sets this CPU has, and which kernel path hetmoe uses.
//
// Kernels come in per-ISA translation units compiled with their own flags; the path is
// chosen once at run time from CPUID, so the binary never executes an instruction the CPU
// lacks. HETMOE_ISA=scalar|avx2|avx512|amx overrides the choice for tests and benchmarks.
//
// kAmx is kAvx512 plus Intel AMX tiles (AMX-TILE + AMX-INT8, and the Linux permission to use
// them): every kernel runs its AVX-512 path except the INT8/INT4 prefill GEMM, which runs on
// tiles (cpu/packed_gemm_amx.cpp), with the same bits.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace hetmoe::cpu {

enum class Isa { kScalar, kAvx2, kAvx512, kAmx };

// kAvx512 and kAmx: the AVX-512 kernels apply.
inline bool has_avx512(Isa isa) { return isa == Isa::kAvx512 || isa == Isa::kAmx; }

struct CpuFeatures {
  bool amd = false;  // CPUID vendor "AuthenticAMD"
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;
  bool amx_tile = false;  // CPUID + XCR0 tile state + arch_prctl(ARCH_REQ_XCOMP_PERM) granted
  bool amx_int8 = false;
  bool amx_bf16 = false;
};

// Read once from CPUID and XGETBV (the OS must have enabled the register state); on Linux the
// first call also asks the kernel for the AMX tile state (process-wide, once).
const CpuFeatures& cpu_features();
bool isa_supported(Isa isa);
// Every path this machine can run, scalar first: what per-ISA tests iterate over.
std::vector<Isa> supported_isas();
// The best supported path, or HETMOE_ISA's choice. Throws hetmoe::Error when HETMOE_ISA
// names a path this CPU cannot run or is not a known name.
Isa active_isa();
std::string_view isa_name(Isa isa);

// How far ahead, in bytes, a weight-streaming decode kernel prefetches within each of its
// streams (and the bench's read-bandwidth loop with it): 512 on AMD, 2048 elsewhere. Measured
// on Zen 4 (AVX-512 decode, docs/KERNELS.md): 512 B streamed BF16 at 1.00-1.04 of the read
// bandwidth where 2 KiB gave 0.87-0.88 (1 thread: +15%); 2 KiB was the Xeon's best (≥ 4 KiB >
// none). HETMOE_PREFETCH_BYTES (a multiple of 64 in [64, 16384]) overrides it for benchmarks;
// anything else there throws hetmoe::Error. Read once per process.
int64_t stream_prefetch_bytes();
// The same choice from a HETMOE_PREFETCH_BYTES value (null or empty: unset), uncached.
int64_t prefetch_bytes_from(const char* requested, bool amd);

// Whether the FP8/BF16 prefill GEMM runs on vdpbf16ps with bf16-rounded activations
// (HETMOE_FLOAT_PREFILL=bf16dot) instead of fp32 FMA (fma, the default: exact and batch-
// invariant; cpu/packed_gemm.h). Anything else there throws hetmoe::Error. Read once per process;
// only AVX-512 CPUs with AVX512_BF16 act on it.
bool float_prefill_bf16dot();
bool float_prefill_bf16dot_from(const char* requested);

}  // namespace hetmoe::cpu
