// Measures this machine's CUDA devices for `hetmoe probe`: memory, achievable HBM bandwidth
// (device-to-device copies), dense BF16 and FP8 GEMM rates (cuBLASLt, 8192³, FP32 accumulate),
// pinned host-to-device copy bandwidth and the launch + sync overhead. Plain types only, so
// engine/plan can call it without CUDA headers. No device (or no driver): an empty list and the
// reason in `status`, never an exception.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hetmoe::gpu {

struct GpuMeasurement {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  uint64_t memory_bytes = 0;         // cudaDeviceProp::totalGlobalMem
  uint64_t reserved_bytes = 0;       // total − free right after context creation
  double hbm_bytes_per_second = 0;   // 2 × bytes / time of a device-to-device copy
  double bf16_flops_per_second = 0;  // 2·M·N·K / time, BF16 in, FP32 accumulate
  double fp8_flops_per_second = 0;   // E4M3 in (sm_89+), 0 when cuBLASLt offers no FP8 GEMM
  double pcie_h2d_bytes_per_second = 0;
  double launch_overhead_seconds = 0;  // one empty kernel launch + stream sync
  std::vector<std::string> notes;      // what could not be measured and why
};

struct GpuProbeResult {
  std::vector<GpuMeasurement> gpus;
  std::string status;  // "2 devices", or why there are none
};

// Each timed test runs at least `seconds_per_test` (best of its repetitions).
GpuProbeResult probe_gpus(double seconds_per_test);

}  // namespace hetmoe::gpu
