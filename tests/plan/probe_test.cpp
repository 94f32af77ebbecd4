// The probe's measurements that are cheap enough for a unit test: DRAM read bandwidth on a small
// buffer and O_DIRECT reads of a small file (with the directory checks). The full probe is
// exercised by tools/profiles/validate_local.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/core/error.h"
#include "engine/plan/probe.h"

namespace hetmoe::plan {
namespace {

TEST(Probe, DramReadBandwidthIsPlausible) {
  const double bytes_per_second = measure_dram_read_bandwidth(64ull << 20, 0.05);
  EXPECT_GT(bytes_per_second, 1e8);   // any machine reads more than 100 MB/s
  EXPECT_LT(bytes_per_second, 1e13);  // and less than 10 TB/s
}

TEST(Probe, AttentionCostIsPlausible) {
  // Per (pair, head) at DeepSeek-V3's shape (2·(2·512 + 64) FLOPs) and per (row, head) (2·256·512):
  // more than a nanosecond, less than 1 ms, on any machine that runs the tests — a unit error
  // (seconds for microseconds) misses by 10^3 or more. (A row took 0.5–0.75 ms under ASan on an
  // AVX2-only host, whose row path is the scalar-order axpy/dot; ~20 µs in Release.)
  const AttentionCost c = measure_attention_cost();
  auto at = [](double fixed, double flops, double rate) { return fixed + (rate > 0 ? flops / rate : 0.0); };
  const double pair = at(c.pair_seconds, 2.0 * 1088, c.pair_flops_per_second);
  const double row = at(c.row_seconds, 2.0 * 256 * 512, c.row_flops_per_second);
  EXPECT_GT(pair, 1e-9);
  EXPECT_LT(pair, 1e-3);
  EXPECT_GT(row, 1e-9);
  EXPECT_LT(row, 1e-3);
  for (double v : {c.row_seconds, c.row_flops_per_second, c.pair_seconds, c.pair_flops_per_second}) EXPECT_GE(v, 0.0);
}

TEST(Probe, DiskReadMeasuresAndCleansUp) {
  const auto dir = std::filesystem::temp_directory_path() / ("hetmoe_probe_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const DiskReadResult r = measure_disk_read(dir, 16ull << 20, 0.05);
  EXPECT_GT(r.bytes_per_second, 1e6);
  EXPECT_GT(r.available_bytes, 16ull << 20);
  EXPECT_FALSE(r.method.empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "the test file must be removed";
  std::filesystem::remove_all(dir);
  EXPECT_THROW(measure_disk_read("/nonexistent/dir", 16ull << 20, 0.01), Error);
}

}  // namespace
}  // namespace hetmoe::plan
