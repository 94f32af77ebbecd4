// gpu::probe_gpus: on a machine without a CUDA device (this CI) an empty list and the reason; on
// one with devices, plausible numbers for each (checked on the device machine when one is lent).
#include "gpu/probe.h"

#include <gtest/gtest.h>

#include <cuda_runtime.h>

namespace hetmoe::gpu {
namespace {

TEST(GpuProbe, ReportsEveryDeviceOrWhyNone) {
  int count = 0;
  const bool have_devices = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  const GpuProbeResult result = probe_gpus(0.05);
  EXPECT_FALSE(result.status.empty());
  if (!have_devices) {
    EXPECT_TRUE(result.gpus.empty());
    EXPECT_NE(result.status.find("no CUDA device"), std::string::npos) << result.status;
    return;
  }
  ASSERT_EQ(int(result.gpus.size()), count);
  for (const GpuMeasurement& g : result.gpus) {
    SCOPED_TRACE(g.name);
    EXPECT_GT(g.memory_bytes, 1ull << 30);
    EXPECT_LT(g.reserved_bytes, g.memory_bytes);
    EXPECT_GT(g.hbm_bytes_per_second, 1e10);       // > 10 GB/s
    EXPECT_LT(g.hbm_bytes_per_second, 1e14);
    EXPECT_GT(g.pcie_h2d_bytes_per_second, 1e9);   // > 1 GB/s
    EXPECT_LT(g.pcie_h2d_bytes_per_second, 1e12);
    EXPECT_GT(g.bf16_flops_per_second, 1e12);      // > 1 TFLOP/s
    EXPECT_GT(g.launch_overhead_seconds, 0.0);
    EXPECT_LT(g.launch_overhead_seconds, 1e-3);
    if (g.sm_major * 10 + g.sm_minor >= 89) {
      EXPECT_GT(g.fp8_flops_per_second, g.bf16_flops_per_second);
    }
  }
}

}  // namespace
}  // namespace hetmoe::gpu
