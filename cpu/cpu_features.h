// Which x86 instruction sets this CPU has, and which kernel path hetmoe uses.
//
// Kernels come in per-ISA translation units compiled with their own flags; the path is
// chosen once at run time from CPUID, so the binary never executes an instruction the CPU
// lacks. HETMOE_ISA=scalar|avx2|avx512 overrides the choice for tests and benchmarks.
#pragma once

#include <string_view>
#include <vector>

namespace hetmoe::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;
};

// Read once from CPUID and XGETBV (the OS must have enabled the register state).
const CpuFeatures& cpu_features();
bool isa_supported(Isa isa);
// Every path this machine can run, scalar first: what per-ISA tests iterate over.
std::vector<Isa> supported_isas();
// The best supported path, or HETMOE_ISA's choice. Throws hetmoe::Error when HETMOE_ISA
// names a path this CPU cannot run or is not a known name.
Isa active_isa();
std::string_view isa_name(Isa isa);

}  // namespace hetmoe::cpu
