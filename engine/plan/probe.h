// `hetmoe probe`: measures this machine into a HardwareProfile.
//
//   topology     hwloc: sockets, NUMA nodes, physical cores, hardware threads, cache sizes
//   DRAM         size (hwloc) and read bandwidth: every thread sums its slice of a buffer much
//                larger than the last-level cache (STREAM-like "read" kernel, best of N)
//   CPU kernels  cpu::linear — the kernel the forward pass runs today — per weight format it
//                supports (FP8 blocks, BF16, F32) on expert-shaped matrices cycled through a
//                working set larger than the LLC: 1 token gives the decode byte rate, n tokens
//                the GEMM slope (hardware_profile.h). INT8/INT4 kernels do not exist yet; the
//                kernels issue will refine these numbers.
//   disk         O_DIRECT pread of a temporary file in a directory, 4 MiB blocks from several
//                threads (plain pread, not yet hetmoe's io_uring reader)
//   GPU          none: this build has no GPU probe (the profile keeps an empty list)
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "engine/plan/hardware_profile.h"

namespace hetmoe::plan {

struct ProbeOptions {
  std::filesystem::path disk_directory = ".";  // where the disk test file goes
  uint64_t disk_test_bytes = uint64_t(1) << 30;
  bool skip_disk = false;
  bool skip_gpu = false;  // builds without CUDA never probe GPUs
  double seconds_per_test = 1.0;  // lower bound on each measurement's duration
  // Time CPU measurements in process CPU seconds / threads instead of wall-clock seconds: on a
  // machine shared with other jobs this is the contention-free equivalent (exact at 1 thread).
  bool cpu_time = false;
  std::function<void(const std::string&)> progress;  // one line per step (stderr in the CLI)
};

// Throws hetmoe::Error when a measurement cannot run (unwritable directory, allocation failure).
HardwareProfile probe_machine(const ProbeOptions& options);

// The pieces, for tests and for reuse.
struct DiskReadResult {
  double bytes_per_second = 0;
  uint64_t available_bytes = 0;
  std::string method;
};
DiskReadResult measure_disk_read(const std::filesystem::path& directory, uint64_t file_bytes, double seconds);
double measure_dram_read_bandwidth(uint64_t buffer_bytes, double seconds);
// A prompt's MLA attention per head on one thread (CpuProfile::attention_*, wall clock).
struct AttentionCost {
  double row_seconds = 0, row_flops_per_second = 0, pair_seconds = 0, pair_flops_per_second = 0;
};
AttentionCost measure_attention_cost();

}  // namespace hetmoe::plan
