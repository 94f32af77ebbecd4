#include "cpu/cpu_features.h"

#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/core/error.h"

namespace hetmoe::cpu {
namespace {

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

// Linux keeps the 8 KiB tile state off until a process asks for it (kernel 5.16+); without
// the grant the first tile instruction faults. Other systems: no AMX path.
bool request_tile_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureTileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureTileData) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures features;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx))
    features.amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // "Auth" "enti" "cAMD"
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return features;
  const bool osxsave = ecx & bit_OSXSAVE;
  if (!osxsave) return features;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;             // SSE + AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xE0) == 0xE0;  // opmask + ZMM state
  features.fma = ymm_state && (ecx & bit_FMA);
  features.f16c = ymm_state && (ecx & bit_F16C);
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  features.avx2 = ymm_state && (ebx & bit_AVX2);
  features.avx512f = zmm_state && (ebx & bit_AVX512F);
  features.avx512bw = zmm_state && (ebx & bit_AVX512BW);
  features.avx512vl = zmm_state && (ebx & bit_AVX512VL);
  features.avx512_vnni = zmm_state && (ecx & bit_AVX512VNNI);
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  features.avx_vnni = ymm_state && (eax & (1u << 4));
  features.avx512_bf16 = zmm_state && (eax & (1u << 5));
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool tile_cpu = edx & (1u << 24);
  const bool tile_state = (xcr0 & (3u << 17)) == (3u << 17);  // XTILECFG + XTILEDATA
  features.amx_tile = tile_cpu && tile_state && request_tile_permission();
  features.amx_int8 = features.amx_tile && (edx & (1u << 25));
  features.amx_bf16 = features.amx_tile && (edx & (1u << 22));
  return features;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_supported(Isa isa) {
  const auto& f = cpu_features();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return f.avx2 && f.fma && f.f16c;
    case Isa::kAvx512:
      return f.avx512f && f.avx512bw && f.avx512vl;
    case Isa::kAmx:
      return isa_supported(Isa::kAvx512) && f.avx512_vnni && f.amx_int8;
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx})
    if (isa_supported(isa)) isas.push_back(isa);
  return isas;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

Isa active_isa() {
  const char* requested = std::getenv("HETMOE_ISA");
  if (requested == nullptr || *requested == '\0') return supported_isas().back();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    if (isa_name(isa) != requested) continue;
    check(isa_supported(isa), "HETMOE_ISA=" + std::string(requested) + " but this CPU cannot run that path",
          {.hint = "unset HETMOE_ISA or pick one of the paths `hetmoe probe` lists"});
    return isa;
  }
  throw Error("HETMOE_ISA=" + std::string(requested) + " is not a known kernel path",
              {.hint = "use scalar, avx2, avx512 or amx"});
}

int64_t prefetch_bytes_from(const char* requested, bool amd) {
  if (requested == nullptr || *requested == '\0') return amd ? 512 : 2048;
  char* end = nullptr;
  const long long value = std::strtoll(requested, &end, 10);
  check(*end == '\0' && value >= 64 && value <= 16384 && value % 64 == 0,
        "HETMOE_PREFETCH_BYTES=" + std::string(requested) + " is not a prefetch distance",
        {.hint = "use a multiple of 64 from 64 to 16384, or unset it"});
  return int64_t(value);
}

bool float_prefill_bf16dot_from(const char* requested) {
  if (requested == nullptr || *requested == '\0' || std::string_view(requested) == "fma") return false;
  check(std::string_view(requested) == "bf16dot",
        "HETMOE_FLOAT_PREFILL=" + std::string(requested) + " is not a float prefill kernel",
        {.hint = "use fma (exact, the default) or bf16dot"});
  return true;
}

bool float_prefill_bf16dot() {
  static const bool dot = float_prefill_bf16dot_from(std::getenv("HETMOE_FLOAT_PREFILL"));
  return dot;
}

int64_t stream_prefetch_bytes() {
  static const int64_t bytes = prefetch_bytes_from(std::getenv("HETMOE_PREFETCH_BYTES"), cpu_features().amd);
  return bytes;
}

}  // namespace hetmoe::cpu
