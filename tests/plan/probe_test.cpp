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
