// The limits' measurement machinery (limits.h), built for the baseline ISA: it picks the
// instruction loops of limits_avx512.cpp / limits_avx2.cpp / limits_amx.cpp by cpu_features()
// and times them on every thread of an arena.
#include <immintrin.h>
#include <tbb/parallel_for.h>

#include <time.h>
#include <algorithm>
#include <atomic>

#include <chrono>
#include <cstring>
#include <span>
#include <vector>

#include "bench/kernels/limits.h"
#include "cpu/cpu_features.h"
#include "cpu/packed_matrix.h"

namespace hetmoe::bench {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs body(slot) once on each of the arena's `n` slots at the same time; returns seconds of
// the slowest.
template <class Body>
double on_every_slot(cpu::CpuThreads& threads, int n, Body&& body) {
  double seconds = 0;
  threads.execute([&] {
    std::atomic<int> arrived{0};
    const double start = now();
    tbb::parallel_for(
        0, n, 1,
        [&](int slot) {
          arrived.fetch_add(1);
          // Start together; give up waiting after 0.2 s in case a slot never gets a thread.
          const double wait_start = now();
          while (arrived.load() < n && now() - wait_start < 0.2) _mm_pause();
          body(slot);
        },
        tbb::static_partitioner());
    seconds = now() - start;
  });
  return seconds;
}

constexpr double kAmxOpsPerRepeat = 4.0 * 16 * 16 * 64 * 2;

// One peak's instruction loop on this CPU: ops per repeat and the loop (nullptr: the CPU lacks
// the instruction). The loops return a sum of their results, so their work cannot be dropped.
struct PeakLoop {
  double ops_per_repeat = 0;
  uint64_t (*run)(long repeats) = nullptr;
};

PeakLoop peak_loop(PeakKind kind) {
  const cpu::CpuFeatures& f = cpu::cpu_features();
  const bool avx512 = cpu::isa_supported(cpu::Isa::kAvx512), avx2 = cpu::isa_supported(cpu::Isa::kAvx2);
  switch (kind) {
    case PeakKind::kFma:
      if (avx512) return {12.0 * 16 * 2, [](long r) { return uint64_t(fma_chains_avx512(r) != 0); }};
      if (avx2) return {12.0 * 8 * 2, [](long r) { return uint64_t(fma_chains_avx2(r) != 0); }};
      return {};
    case PeakKind::kBf16Dot:
      if (avx512 && f.avx512_bf16) return {12.0 * 32 * 2, [](long r) { return uint64_t(bf16_chains_avx512(r) != 0); }};
      return {};
    case PeakKind::kVnni:
      if (avx512 && f.avx512_vnni) return {12.0 * 64 * 2, [](long r) { return uint64_t(vnni_chains_avx512(r) != 0); }};
      return {};
    case PeakKind::kMaddubs:
      if (avx2) return {12.0 * 32 * 2, [](long r) { return uint64_t(maddubs_chains_avx2(r) != 0); }};
      return {};
    case PeakKind::kAmxInt8:
      if (cpu::isa_supported(cpu::Isa::kAmx))
        return {kAmxOpsPerRepeat, [](long r) { return uint64_t(amx_int8_chains(r) != 0); }};
      return {};
  }
  return {};
}

// The widest read loop this CPU has (nullptr: none).
uint64_t (*read_loop())(const uint8_t*, uint64_t) {
  if (cpu::isa_supported(cpu::Isa::kAvx512)) return read_sum_avx512;
  if (cpu::isa_supported(cpu::Isa::kAvx2)) return read_sum_avx2;
  return nullptr;
}

// ops per second of `chain` over windows of about `window_seconds` on every slot.
Rate peak(cpu::CpuThreads& threads, PeakLoop loop, double window_seconds, int windows) {
  const double ops_per_repeat = loop.ops_per_repeat;
  const auto chain = loop.run;
  const int n = threads.concurrency();
  std::atomic<uint64_t> sink{0};
  // Size the window from a short calibration run.
  const long calibrate = 20000;
  const double t = on_every_slot(threads, n, [&](int) { sink += uint64_t(chain(calibrate) != 0); });
  const long repeats = std::max(1000L, long(double(calibrate) * window_seconds / std::max(t, 1e-6)));
  Rate rate;
  double total_seconds = 0;
  for (int w = 0; w < windows; ++w) {
    const double seconds = on_every_slot(threads, n, [&](int) { sink += uint64_t(chain(repeats) != 0); });
    rate.best = std::max(rate.best, ops_per_repeat * double(repeats) * n / seconds);
    total_seconds += seconds;
  }
  rate.mean = ops_per_repeat * double(repeats) * n * windows / total_seconds;
  return rate;
}

}  // namespace

Rate measure_peak(cpu::CpuThreads& threads, PeakKind kind, double window_seconds, int windows) {
  const PeakLoop loop = peak_loop(kind);
  return loop.run ? peak(threads, loop, window_seconds, windows) : Rate{};
}

double peak_of(const MachineLimits& limits, PeakKind kind) {
  switch (kind) {
    case PeakKind::kFma:
      return limits.fma_flops;
    case PeakKind::kBf16Dot:
      return limits.bf16_dot_flops;
    case PeakKind::kVnni:
      return limits.vnni_ops;
    case PeakKind::kMaddubs:
      return limits.maddubs_ops;
    case PeakKind::kAmxInt8:
      return limits.amx_int8_ops;
  }
  return 0;
}

PeakKind int_prefill_peak(cpu::Isa isa) {
  return isa == cpu::Isa::kAmx ? PeakKind::kAmxInt8 : isa == cpu::Isa::kAvx2 ? PeakKind::kMaddubs : PeakKind::kVnni;
}

bool float_prefill_dot(cpu::Isa isa) {
  return (isa == cpu::Isa::kAvx512 || isa == cpu::Isa::kAmx) && cpu::cpu_features().avx512_bf16 &&
         cpu::float_prefill_bf16dot();
}

PeakKind prefill_peak(cpu::PackedFormat format, cpu::Isa isa) {
  if (format == cpu::PackedFormat::kINT8 || format == cpu::PackedFormat::kINT4) return int_prefill_peak(isa);
  return float_prefill_dot(isa) ? PeakKind::kBf16Dot : PeakKind::kFma;
}

Rate measure_read_bandwidth(cpu::CpuThreads& threads, std::span<const std::span<const uint8_t>> regions,
                            int64_t regions_per_window, int windows) {
  const auto read_sum = read_loop();
  if (read_sum == nullptr || regions.empty()) return {};
  const int n = threads.concurrency();
  std::atomic<uint64_t> sink{0};
  Rate rate;
  double total_seconds = 0, total_bytes = 0;
  size_t next = 0;
  for (int w = 0; w <= windows; ++w) {
    std::vector<std::span<const uint8_t>> window;
    uint64_t bytes = 0;
    for (int64_t i = 0; i < regions_per_window; ++i, next = (next + 1) % regions.size()) {
      window.push_back(regions[next]);
      bytes += regions[next].size();
    }
    // Each slot reads an equal, contiguous share of every region in the window.
    const double seconds = on_every_slot(threads, n, [&](int s) {
      uint64_t sum = 0;
      for (const auto& region : window) {
        const uint64_t share = region.size() / uint64_t(n) / 256 * 256;
        sum += read_sum(region.data() + uint64_t(s) * share, share);
      }
      sink += sum;
    });
    if (w == 0) continue;  // warm-up: threads, TLB
    rate.best = std::max(rate.best, double(bytes) / seconds);
    total_seconds += seconds;
    total_bytes += double(bytes);
  }
  rate.mean = total_bytes / total_seconds;
  return rate;
}

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

double measure_peak_thread_cpu(PeakKind kind, int windows) {
  const PeakLoop loop = peak_loop(kind);
  if (loop.run == nullptr) return 0;
  const long repeats = kind == PeakKind::kAmxInt8 ? 10000 : 100000;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int w = 0; w < windows; ++w) {
    const double start = thread_cpu_seconds();
    const uint64_t r = loop.run(repeats);
    const double seconds = thread_cpu_seconds() - start;
    sink = sink + r;
    if (seconds > 0) best = std::max(best, loop.ops_per_repeat * double(repeats) / seconds);
  }
  return best;
}

MachineLimits measure_limits(cpu::CpuThreads& threads, uint64_t read_buffer_bytes) {
  MachineLimits limits;
  const int n = threads.concurrency();
  limits.threads = n;
  if (read_loop() == nullptr) return limits;
  limits.fma_flops = measure_peak(threads, PeakKind::kFma, 0.05, 10).best;
  limits.bf16_dot_flops = measure_peak(threads, PeakKind::kBf16Dot, 0.05, 10).best;
  limits.vnni_ops = measure_peak(threads, PeakKind::kVnni, 0.05, 10).best;
  limits.maddubs_ops = measure_peak(threads, PeakKind::kMaddubs, 0.05, 10).best;
  limits.amx_int8_ops = measure_peak(threads, PeakKind::kAmxInt8, 0.05, 10).best;

  // Slices of 64 MiB, first touched by the thread that will read them.
  const uint64_t slice = uint64_t(64) << 20;
  const uint64_t count = std::max<uint64_t>(uint64_t(n), read_buffer_bytes / slice);
  std::vector<cpu::AlignedBytes> buffers(count);
  threads.execute([&] {
    tbb::parallel_for(
        0, n, 1,
        [&](int s) {
          for (uint64_t i = uint64_t(s); i < count; i += uint64_t(n)) {
            buffers[i] = cpu::AlignedBytes(slice);
            std::memset(buffers[i].data(), s + 1, slice);
          }
        },
        tbb::static_partitioner());
  });
  std::vector<std::span<const uint8_t>> regions;
  for (const auto& b : buffers) regions.emplace_back(b.data(), slice);
  limits.read_bytes_per_second =
      measure_read_bandwidth(threads, regions, 4, int(2 * regions.size() / 4)).best;
  return limits;
}

}  // namespace hetmoe::bench
