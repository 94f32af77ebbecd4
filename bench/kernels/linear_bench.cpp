// The plain linear (cpu/linear.h: attention projections, dense FFN, shared experts, lm_head) at
// decode, one token through DeepSeek-V3-shaped [4096 × 7168] matrices in the checkpoint's format.
//
//   linear/decode/<fp8|bf16>/threads:N   each iteration one matrix (FP8 29 MB + scales, BF16
//       59 MB), cycling through a pool of >= 4× LLC so the weights stream from DRAM.
//       bytes_per_second = weight bytes read; frac_of_limit = that / the read bandwidth of the
//       same pool on the same threads, measured right before in windows of one matrix.
#include "bench/kernels/linear_bench.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bench/kernels/limits.h"
#include "cpu/linear.h"
#include "engine/core/dtype.h"

namespace hetmoe::bench {
namespace {

constexpr int64_t kRows = 4096, kCols = 7168, kBlock = 128;

struct Pool {
  std::vector<std::vector<uint8_t>> data;  // one matrix each, row-major
  std::vector<float> scales;               // FP8: shared by every matrix (values do not matter)
};

Pool make_pool(cpu::WeightFormat format, uint64_t pool_bytes) {
  const uint64_t element = format == cpu::WeightFormat::kFP8Block ? 1 : 2;
  const uint64_t matrix_bytes = uint64_t(kRows * kCols) * element;
  const size_t count = size_t(std::max<uint64_t>(2, (pool_bytes + matrix_bytes - 1) / matrix_bytes));
  Pool pool;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  // One random matrix, copied: the values do not change the work, the copies defeat the caches.
  std::vector<uint8_t> first(matrix_bytes);
  if (element == 1) {
    for (auto& c : first) c = fp8_e4m3_from_float(112.0f * normal(rng));
  } else {
    for (size_t i = 0; i < first.size(); i += 2) {
      const uint16_t v = bf16_from_float(0.02f * normal(rng));
      first[i] = uint8_t(v);
      first[i + 1] = uint8_t(v >> 8);
    }
  }
  pool.data.assign(count, first);
  pool.scales.assign(size_t((kRows / kBlock) * (kCols / kBlock)), 1e-4f);
  return pool;
}

void run_decode(benchmark::State& state, cpu::WeightFormat format, int threads, uint64_t pool_bytes) {
  static std::map<int, std::unique_ptr<Pool>> pools;  // by format: built once, shared by thread counts
  auto& pool = pools[int(format)];
  if (!pool) pool = std::make_unique<Pool>(make_pool(format, pool_bytes));
  cpu::CpuThreads arena({.threads = threads});
  std::vector<std::span<const uint8_t>> regions;
  for (const auto& m : pool->data) regions.emplace_back(m.data(), m.size());
  const Rate limit = measure_read_bandwidth(arena, regions, 1, int(2 * regions.size()) + 1);

  std::vector<float> x(static_cast<size_t>(kCols)), y(static_cast<size_t>(kRows));
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  const cpu::Isa isa = cpu::active_isa();
  size_t next = 0;
  double fastest = 1e30, total = 0;
  for (auto _ : state) {
    const cpu::WeightMatrix w{.format = format,
                              .data = pool->data[next].data(),
                              .scale_inv = pool->scales.data(),
                              .rows = kRows,
                              .cols = kCols,
                              .block = kBlock};
    next = (next + 1) % pool->data.size();
    const auto start = std::chrono::steady_clock::now();
    arena.execute([&] { cpu::linear(w, x.data(), 1, y.data(), isa); });
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(y.data());
    state.SetIterationTime(elapsed);
    fastest = std::min(fastest, elapsed);
    total += elapsed;
  }
  const double bytes = double(pool->data[0].size());
  state.SetBytesProcessed(int64_t(double(state.iterations()) * bytes));
  state.counters["frac_of_limit"] = bytes * double(state.iterations()) / total / limit.mean;
  state.counters["frac_of_limit_best"] = bytes / fastest / limit.best;
  state.counters["limit_GBps"] = limit.mean / 1e9;
  state.counters["pool_matrices"] = double(pool->data.size());
}

}  // namespace

void register_linear_benchmarks(int max_threads, uint64_t pool_bytes) {
  std::vector<int> thread_counts = {1};
  if (max_threads > 1) thread_counts.push_back(max_threads);
  for (auto [format, name] : {std::pair{cpu::WeightFormat::kFP8Block, "fp8"}, {cpu::WeightFormat::kBF16, "bf16"}})
    for (int n : thread_counts)
      benchmark::RegisterBenchmark(("linear/decode/" + std::string(name) + "/threads:" + std::to_string(n)).c_str(),
                                   [=](benchmark::State& s) { run_decode(s, format, n, pool_bytes); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(2.0);
}

}  // namespace hetmoe::bench
