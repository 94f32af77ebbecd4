// Peak rates and read bandwidth, AVX-512 code compiled with its own flags (bench/CMakeLists.txt)
// and only run when cpu_features() has the instructions.
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

// 12 independent chains hide the instruction latency (4-5 cycles, 2 ports).

__attribute__((noinline)) float fma_chains(long repeats) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  return sum;
}

__attribute__((noinline)) float bf16_chains(long repeats) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a80);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  return sum;
}

__attribute__((noinline)) int vnni_chains(long repeats) {
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_si512();
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  int sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_epi32(acc[i]);
  return sum;
}

// Sums `bytes` as 4 interleaved sequential streams (like the decode kernels' 4 panels) with
// the same 2 KiB software prefetch, so the limit is what a streaming kernel could reach.
__attribute__((noinline)) uint64_t read_sum(const uint8_t* data, uint64_t bytes) {
  const uint64_t quarter = bytes / 4 / 64 * 64;
  const uint8_t* s0 = data;
  const uint8_t* s1 = data + quarter;
  const uint8_t* s2 = data + 2 * quarter;
  const uint8_t* s3 = data + 3 * quarter;
  __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (uint64_t i = 0; i < quarter; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(s0 + i + 2048), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s1 + i + 2048), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s2 + i + 2048), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s3 + i + 2048), _MM_HINT_T0);
    acc0 = _mm512_add_epi64(acc0, _mm512_load_si512(s0 + i));
    acc1 = _mm512_add_epi64(acc1, _mm512_load_si512(s1 + i));
    acc2 = _mm512_add_epi64(acc2, _mm512_load_si512(s2 + i));
    acc3 = _mm512_add_epi64(acc3, _mm512_load_si512(s3 + i));
  }
  return uint64_t(
      _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(acc0, acc1), _mm512_add_epi64(acc2, acc3))));
}

constexpr double kAmxOpsPerRepeat = 4.0 * 16 * 16 * 64 * 2;

// ops per second of `chain` over windows of about `window_seconds` on every slot.
template <class Chain>
Rate peak(cpu::CpuThreads& threads, double ops_per_repeat, Chain chain, double window_seconds, int windows) {
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
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) return {};
  const cpu::CpuFeatures& f = cpu::cpu_features();
  switch (kind) {
    case PeakKind::kFma:
      return peak(threads, 12.0 * 16 * 2, fma_chains, window_seconds, windows);
    case PeakKind::kBf16Dot:
      return f.avx512_bf16 ? peak(threads, 12.0 * 32 * 2, bf16_chains, window_seconds, windows) : Rate{};
    case PeakKind::kVnni:
      return f.avx512_vnni ? peak(threads, 12.0 * 64 * 2, vnni_chains, window_seconds, windows) : Rate{};
    case PeakKind::kAmxInt8:
      return cpu::isa_supported(cpu::Isa::kAmx) ? peak(threads, kAmxOpsPerRepeat, amx_int8_chains, window_seconds, windows)
                                                 : Rate{};
  }
  return {};
}

PeakKind int_prefill_peak(cpu::Isa isa) { return isa == cpu::Isa::kAmx ? PeakKind::kAmxInt8 : PeakKind::kVnni; }

Rate measure_read_bandwidth(cpu::CpuThreads& threads, std::span<const std::span<const uint8_t>> regions,
                            int64_t regions_per_window, int windows) {
  if (!cpu::isa_supported(cpu::Isa::kAvx512) || regions.empty()) return {};
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
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) return 0;
  const cpu::CpuFeatures& f = cpu::cpu_features();
  if ((kind == PeakKind::kBf16Dot && !f.avx512_bf16) || (kind == PeakKind::kVnni && !f.avx512_vnni) ||
      (kind == PeakKind::kAmxInt8 && !cpu::isa_supported(cpu::Isa::kAmx)))
    return 0;
  const double ops_per_repeat = kind == PeakKind::kFma       ? 12.0 * 16 * 2
                                : kind == PeakKind::kBf16Dot ? 12.0 * 32 * 2
                                : kind == PeakKind::kVnni    ? 12.0 * 64 * 2
                                                             : kAmxOpsPerRepeat;
  const long repeats = kind == PeakKind::kAmxInt8 ? 10000 : 100000;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int w = 0; w < windows; ++w) {
    const double start = thread_cpu_seconds();
    uint64_t r = 0;
    switch (kind) {
      case PeakKind::kFma:
        r = uint64_t(fma_chains(repeats) != 0);
        break;
      case PeakKind::kBf16Dot:
        r = uint64_t(bf16_chains(repeats) != 0);
        break;
      case PeakKind::kVnni:
        r = uint64_t(vnni_chains(repeats) != 0);
        break;
      case PeakKind::kAmxInt8:
        r = uint64_t(amx_int8_chains(repeats) != 0);
        break;
    }
    const double seconds = thread_cpu_seconds() - start;
    sink = sink + r;
    if (seconds > 0) best = std::max(best, ops_per_repeat * double(repeats) / seconds);
  }
  return best;
}

MachineLimits measure_limits(cpu::CpuThreads& threads, uint64_t read_buffer_bytes) {
  MachineLimits limits;
  const int n = threads.concurrency();
  limits.threads = n;
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) return limits;
  limits.fma_flops = measure_peak(threads, PeakKind::kFma, 0.05, 10).best;
  limits.bf16_dot_flops = measure_peak(threads, PeakKind::kBf16Dot, 0.05, 10).best;
  limits.vnni_ops = measure_peak(threads, PeakKind::kVnni, 0.05, 10).best;
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
