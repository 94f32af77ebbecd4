#include "engine/plan/probe.h"

#include <fcntl.h>
#include <hwloc.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cpu/absorbed_attention.h"
#include "cpu/cpu_features.h"
#include "cpu/expert_ffn.h"
#include "cpu/linear.h"
#include "cpu/packed_matrix.h"
#include "cpu/threads.h"
#include "cpu/ops.h"
#include "engine/core/error.h"
#include "io/storage.h"
#if HETMOE_HAVE_GPU
#include "gpu/probe.h"
#endif

namespace hetmoe::plan {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kMiB = uint64_t(1) << 20;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The clock CPU measurements are timed with: wall, or process CPU seconds / threads (ProbeOptions).
// Set once by probe_machine before any measurement; read-only afterwards.
struct PassClock {
  bool cpu_time = false;
  double threads = 1;
  // Wall clock keeps the fastest pass (the least disturbed); CPU time keeps the median pass, the
  // typical memory-bandwidth interference a long run on a shared machine also sees.
  double pick(std::vector<double> passes) const {
    std::sort(passes.begin(), passes.end());
    return cpu_time ? passes[passes.size() / 2] : passes.front();
  }
  int min_passes() const { return cpu_time ? 5 : 2; }
  double now() const {
    if (!cpu_time) return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec)) / threads;
  }
};

// Worker threads the measurements run on: the arena's concurrency capped by a global
// max_allowed_parallelism limit (`hetmoe probe -t T` sets one). The arena alone still reports every
// core under such a limit, which made `-t 1 --cpu-time` divide one thread's CPU seconds by the core
// count and report twice the real single-thread rates on a 2-core machine.
int worker_threads() {
  const size_t limit = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return int(std::max<size_t>(1, std::min<size_t>(size_t(tbb::this_task_arena::max_concurrency()), limit)));
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBuffer aligned_alloc_bytes(uint64_t bytes, const char* what) {
  void* p = nullptr;
  const size_t rounded = size_t((bytes + 4095) / 4096 * 4096);
  check(posix_memalign(&p, 4096, rounded) == 0 && p != nullptr,
        fmt::format("cannot allocate {} MiB for the {} test", bytes / kMiB, what), {.hint = "free some memory"});
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

struct Topology {
  int sockets = 1, numa_nodes = 1, cores = 1, threads = 1;
  uint64_t l1d = 0, l2 = 0, l3 = 0, memory = 0;
  std::string model;
};

Topology read_topology() {
  Topology t;
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
    if (topo) hwloc_topology_destroy(topo);
    t.threads = t.cores = int(std::max(1u, std::thread::hardware_concurrency()));
    t.memory = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGE_SIZE));
    return t;
  }
  auto count = [&](hwloc_obj_type_t type) { return std::max(1, hwloc_get_nbobjs_by_type(topo, type)); };
  t.sockets = count(HWLOC_OBJ_PACKAGE);
  t.numa_nodes = count(HWLOC_OBJ_NUMANODE);
  t.cores = count(HWLOC_OBJ_CORE);
  t.threads = count(HWLOC_OBJ_PU);
  auto cache = [&](hwloc_obj_type_t type) -> uint64_t {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, type, 0);
    return obj && obj->attr ? uint64_t(obj->attr->cache.size) : 0;
  };
  t.l1d = cache(HWLOC_OBJ_L1CACHE);
  t.l2 = cache(HWLOC_OBJ_L2CACHE);
  t.l3 = cache(HWLOC_OBJ_L3CACHE);
  t.memory = uint64_t(hwloc_get_root_obj(topo)->total_memory);
  if (t.memory == 0) t.memory = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGE_SIZE));
  if (hwloc_obj_t package = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0)) {
    if (const char* model = hwloc_obj_get_info_by_name(package, "CPUModel")) t.model = model;
  }
  hwloc_topology_destroy(topo);
  return t;
}

std::vector<std::string> isa_list() {
  const cpu::CpuFeatures& f = cpu::cpu_features();
  std::vector<std::string> isa;
  auto add = [&](bool present, const char* name) {
    if (present) isa.push_back(name);
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.avx_vnni, "avx_vnni");
  return isa;
}

// Expert-shaped matrices ([inter, hidden] and [hidden, inter] of DeepSeek-V3) in one format,
// enough of them to exceed the last-level cache so each pass streams from DRAM.
struct MatrixSet {
  std::vector<AlignedBuffer> data, scales;
  std::vector<cpu::WeightMatrix> matrices;
  double bytes = 0, params = 0;
};

MatrixSet make_matrices(cpu::WeightFormat format, uint64_t target_bytes, uint64_t seed_base = 0) {
  constexpr int64_t kHidden = 7168, kInter = 2048, kBlock = 128;
  MatrixSet set;
  while (set.bytes < double(target_bytes) || set.matrices.size() < 2) {
    const bool down = set.matrices.size() % 2 == 1;
    cpu::WeightMatrix w{.format = format, .rows = down ? kHidden : kInter, .cols = down ? kInter : kHidden, .block = kBlock};
    const uint64_t count = uint64_t(w.rows) * uint64_t(w.cols);
    const uint64_t element = format == cpu::WeightFormat::kF32 ? 4 : format == cpu::WeightFormat::kBF16 ? 2 : 1;
    AlignedBuffer data = aligned_alloc_bytes(count * element, "CPU kernel");
    uint8_t* bytes = data.get();
    // Distinct pseudo-random bytes in every matrix: identical copies could be merged or cached by
    // the host (page deduplication) and measure the cache, not DRAM. Every byte is a finite
    // value in each format: FP8 codes 0x30..0x3F / 0xB0..0xBF, BF16 / F32 bytes of the same range.
    const uint64_t seed = 0x9E3779B97F4A7C15ull * (set.matrices.size() + 1 + 64 * seed_base);
    tbb::parallel_for(tbb::blocked_range<uint64_t>(0, count * element, 1 << 20), [&](const tbb::blocked_range<uint64_t>& r) {
      uint64_t x = seed ^ (r.begin() * 0xD1B54A32D192ED03ull);
      for (uint64_t i = r.begin(); i < r.end(); ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes[i] = uint8_t(0x30 | (x & 0x0F) | ((x >> 8) & 0x80));
      }
    });
    w.data = bytes;
    if (format == cpu::WeightFormat::kFP8Block) {
      const uint64_t blocks = uint64_t((w.rows + kBlock - 1) / kBlock) * uint64_t((w.cols + kBlock - 1) / kBlock);
      AlignedBuffer scales = aligned_alloc_bytes(blocks * 4, "CPU kernel");
      float* s = reinterpret_cast<float*>(scales.get());
      std::fill(s, s + blocks, 1.0f / 256.0f);
      w.scale_inv = s;
      set.scales.push_back(std::move(scales));
    }
    set.bytes += double(w.bytes());
    set.params += double(count);
    set.matrices.push_back(w);
    set.data.push_back(std::move(data));
  }
  return set;
}

// Seconds of the fastest pass of cpu::linear over every matrix with `tokens` tokens.
double pass_seconds(const MatrixSet& set, int64_t tokens, double min_seconds, const PassClock& clock) {
  std::vector<float> x(size_t(tokens) * 7168), y(size_t(tokens) * 7168);  // the widest cols / rows of the set
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.01f;
  std::vector<double> passes;
  const auto start = Clock::now();
  while (int(passes.size()) < clock.min_passes() || (seconds_since(start) < min_seconds && passes.size() < 50)) {
    const double pass = clock.now();
    for (const cpu::WeightMatrix& w : set.matrices) cpu::linear(w, x.data(), tokens, y.data());
    passes.push_back(clock.now() - pass);
  }
  return clock.pick(passes);
}

// What tokens 2..kSmallBatchTokens add to a one-token pass. A weight-streaming kernel hides
// them almost entirely, so timing noise can make t(4) <= t(1): they are counted as at least 1%
// of the one-token pass, never as free.
double small_batch_seconds(double t1, double ts) { return std::max(ts - t1, 0.01 * t1); }

CpuKernelRate measure_kernel(cpu::WeightFormat format, uint64_t working_set_bytes, double seconds, const PassClock& clock) {
  // Decode: 1 token over a working set past the LLC. GEMM slope: 1 and 128 tokens over two
  // matrices — attention and dense layers see the whole prompt at once, and 128 tokens of
  // activations (3.5 MiB) no longer sit in L2, as a real prompt's do not.
  constexpr int64_t kTokens = 128;
  CpuKernelRate rate;
  {
    const MatrixSet set = make_matrices(format, working_set_bytes);
    rate.decode_weight_bytes_per_second = set.bytes / pass_seconds(set, 1, seconds, clock);
  }
  const MatrixSet small = make_matrices(format, 1);
  const double t1 = pass_seconds(small, 1, seconds / 4, clock);
  const double ts = pass_seconds(small, kSmallBatchTokens, seconds / 4, clock);
  const double tn = pass_seconds(small, kTokens, seconds, clock);
  rate.small_batch_flops_per_second = 2.0 * double(kSmallBatchTokens - 1) * small.params / small_batch_seconds(t1, ts);
  rate.prefill_flops_per_second =
      2.0 * double(kTokens - kSmallBatchTokens) * small.params / std::max(tn - ts, 1e-9);
  return rate;
}

// The routed-expert kernel (cpu/expert_ffn.h) in one packed format: DeepSeek-V3-shaped experts
// (gate/up [2048, 7168], down [7168, 2048]) packed once from an FP8 source and copied until the
// set exceeds the LLC; a pass runs every expert, 8 per call (top-8 of one layer), first with 1
// token each (decode), then with 16 (the GEMM slope).
CpuKernelRate measure_expert_kernel(cpu::PackedFormat format, uint64_t working_set_bytes, double seconds,
                                    const PassClock& clock) {
  constexpr int64_t kHidden = 7168, kInter = 2048, kPerCall = 8, kTokens = 16;
  const cpu::PackedLayout up_layout = cpu::packed_layout(format, kInter, kHidden);
  const cpu::PackedLayout down_layout = cpu::packed_layout(format, kHidden, kInter);
  const uint64_t expert_bytes = 2 * up_layout.bytes() + down_layout.bytes();
  const int64_t experts = std::max<int64_t>(2 * kPerCall, int64_t((working_set_bytes + expert_bytes - 1) / expert_bytes + kPerCall - 1) /
                                                              kPerCall * kPerCall);
  // Every expert packed from its own pseudo-random FP8 source (distinct data, see make_matrices).
  std::vector<cpu::AlignedBytes> records;
  std::vector<cpu::PackedFfn> ffns(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) {
    const MatrixSet first = make_matrices(cpu::WeightFormat::kFP8Block, 1, uint64_t(2 * e + 1));   // [inter, hidden], [hidden, inter]
    const MatrixSet second = make_matrices(cpu::WeightFormat::kFP8Block, 1, uint64_t(2 * e + 2));  // up from here
    records.emplace_back(expert_bytes);
    uint8_t* base = records.back().data();
    cpu::pack_matrix(first.matrices[0], format, base);
    cpu::pack_matrix(second.matrices[0], format, base + up_layout.bytes());
    cpu::pack_matrix(first.matrices[1], format, base + 2 * up_layout.bytes());
    ffns[size_t(e)] = {.gate = {.layout = up_layout, .data = base},
                       .up = {.layout = up_layout, .data = base + up_layout.bytes()},
                       .down = {.layout = down_layout, .data = base + 2 * up_layout.bytes()}};
  }
  cpu::CpuThreads threads({.threads = worker_threads()});
  cpu::ExpertFfnRunner runner(&threads, cpu::active_isa());
  std::vector<float> x(size_t(kPerCall * kTokens * kHidden)), out(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.01f;
  auto pass_seconds = [&](int64_t tokens) {
    std::vector<double> passes;
    const auto start = Clock::now();
    while (int(passes.size()) < clock.min_passes() || (seconds_since(start) < seconds && passes.size() < 50)) {
      const double pass = clock.now();
      for (int64_t e0 = 0; e0 < experts; e0 += kPerCall) {
        std::vector<cpu::FfnTask> tasks;
        for (int64_t i = 0; i < kPerCall; ++i)
          tasks.push_back({.ffn = &ffns[size_t(e0 + i)], .x = x.data() + i * kTokens * kHidden, .tokens = tokens,
                           .out = out.data() + i * kTokens * kHidden});
        runner.run(tasks);
      }
      passes.push_back(clock.now() - pass);
    }
    return clock.pick(passes);
  };
  const double t1 = pass_seconds(1), ts = pass_seconds(kSmallBatchTokens), tn = pass_seconds(kTokens);
  const double params = 3.0 * double(kHidden) * double(kInter) * double(experts);
  CpuKernelRate rate;
  rate.decode_weight_bytes_per_second = double(expert_bytes) * double(experts) / t1;
  rate.small_batch_flops_per_second = 2.0 * double(kSmallBatchTokens - 1) * params / small_batch_seconds(t1, ts);
  rate.prefill_flops_per_second = 2.0 * double(kTokens - kSmallBatchTokens) * params / std::max(tn - ts, 1e-9);
  return rate;
}

// cpu::linear's prefill cost per (token, output row) beyond the FLOPs the GEMM rate covers: the
// slope from 4 to 128 tokens of an FP8 matrix with short rows (2048 x 256, a small model's
// projections) less its FLOPs at the rate measured on DeepSeek-shaped rows (`fp8_prefill_flops`).
// A small FP8 matrix (128x128 block scales) in the caller's buffers, every code finite.
cpu::WeightMatrix small_fp8_matrix(int64_t rows, int64_t cols, std::vector<uint8_t>& codes, std::vector<float>& scales) {
  codes.resize(size_t(rows * cols));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint8_t(0x30 + i % 7);
  scales.assign(size_t((rows + 127) / 128 * ((cols + 127) / 128)), 1e-2f);
  return {.format = cpu::WeightFormat::kFP8Block, .data = codes.data(), .scale_inv = scales.data(), .rows = rows, .cols = cols};
}

double measure_linear_output(double fp8_prefill_flops, double seconds, const PassClock& clock) {
  constexpr int64_t kRows = 2048, kCols = 256, kTokens = 128, kFew = kSmallBatchTokens;
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  const cpu::WeightMatrix w = small_fp8_matrix(kRows, kCols, codes, scales);
  std::vector<float> x(size_t(kTokens * kCols), 0.01f), y(size_t(kTokens * kRows));
  auto pass = [&](int64_t tokens) {
    std::vector<double> passes;
    const auto start = Clock::now();
    while (int(passes.size()) < clock.min_passes() || (seconds_since(start) < seconds && passes.size() < 200)) {
      const double t0 = clock.now();
      for (int i = 0; i < 8; ++i) cpu::linear(w, x.data(), tokens, y.data());
      passes.push_back((clock.now() - t0) / 8);
    }
    return clock.pick(passes);
  };
  const double slope = (pass(kTokens) - pass(kFew)) / double(kTokens - kFew);
  const double flops = 2.0 * double(kRows * kCols) / fp8_prefill_flops;
  return std::max(0.0, (slope - flops) / double(kRows));
}

// Fixed cost of one parallel kernel call: cpu::linear on a 64 x 16 f32 matrix (4 tasks of 16
// rows, 4 KiB of weights: the fork/join, not the arithmetic) at 1 token.
double measure_call_overhead(const PassClock& clock) {
  std::vector<float> w(64 * 16, 0.5f), x(16, 1.0f), y(64);
  const cpu::WeightMatrix m{.format = cpu::WeightFormat::kF32, .data = w.data(), .rows = 64, .cols = 16};
  for (int i = 0; i < 200; ++i) cpu::linear(m, x.data(), 1, y.data());
  std::vector<double> rounds;
  for (int round = 0; round < 5; ++round) {
    const double start = clock.now();
    constexpr int kCalls = 2000;
    for (int i = 0; i < kCalls; ++i) cpu::linear(m, x.data(), 1, y.data());
    rounds.push_back((clock.now() - start) / kCalls);
  }
  return clock.pick(rounds);
}

// cpu::dot and cpu::axpy on one thread, in cache, at 64 and 512 floats (the latent widths of
// small and DeepSeek-sized MLA): per-call time t(n) = c0 + c1·n, two FLOPs per element.
std::pair<double, double> measure_vector_ops(const PassClock& clock) {
  const PassClock one{.cpu_time = clock.cpu_time, .threads = 1};
  std::vector<float> a(512, 0.25f), b(512, 0.5f);
  float sink = 0;
  auto per_call = [&](int64_t n) {
    constexpr int kCalls = 20000;
    std::vector<double> rounds;
    for (int round = 0; round < 5; ++round) {
      const double start = one.now();
      for (int i = 0; i < kCalls; ++i) {
        sink += cpu::dot(a.data(), b.data(), n);
        cpu::axpy(1e-7f, a.data(), b.data(), n);
      }
      rounds.push_back((one.now() - start) / (2.0 * kCalls));
    }
    return one.pick(rounds);
  };
  const double t64 = per_call(64), t512 = per_call(512);
  const double per_element = std::max((t512 - t64) / 448.0, 1e-13);
  if (sink == 12345.f) std::fprintf(stderr, " ");  // keep the loop
  return {2.0 / per_element, std::max(0.0, t64 - 64 * per_element)};
}

// The prompt's MLA attention as the engine runs it (cpu::absorbed_attention_head: one head, a
// block of 64 rows, FP8 kv_b in cache) on one thread, in two shapes — the bundled model's (latent
// 128) and DeepSeek-V3's (latent 512) — each at positions [0, 64) and [448, 512). Per shape the two
// blocks give a cost per (row, head) and per (pair, head); across shapes each splits into a fixed
// part and a part per FLOP (CpuProfile::attention_*).
AttentionCost measure_attention(const PassClock& clock) {
  const PassClock one{.cpu_time = clock.cpu_time, .threads = 1};
  constexpr int64_t kRows = 64, kFirst[2] = {0, 448};
  const cpu::AbsorbedShape shapes[2] = {{.nope = 32, .rope = 16, .latent = 128, .v = 32, .scale = 0.1f},
                                        {.nope = 128, .rope = 64, .latent = 512, .v = 128, .scale = 0.1f}};
  double row[2] = {}, pair[2] = {}, row_flops[2] = {}, pair_flops[2] = {};
  for (int k = 0; k < 2; ++k) {
    const cpu::AbsorbedShape& sh = shapes[k];
    const int64_t kv_rows = sh.nope + sh.v, positions = kFirst[1] + kRows;
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    const cpu::WeightMatrix kv_b = small_fp8_matrix(kv_rows, sh.latent, codes, scales);
    std::vector<float> latents(size_t(positions * sh.latent)), rope(size_t(positions * sh.rope));
    std::vector<float> q(size_t(kRows * (sh.nope + sh.rope))), out(size_t(kRows * sh.v));
    for (size_t i = 0; i < latents.size(); ++i) latents[i] = float(int(i % 17) - 8) * 0.01f;
    for (size_t i = 0; i < rope.size(); ++i) rope[i] = float(int(i % 5) - 2) * 0.02f;
    for (size_t i = 0; i < q.size(); ++i) q[i] = float(int(i % 11) - 5) * 0.03f;
    cpu::AbsorbedScratch scratch;
    double t[2] = {};
    double pairs[2] = {};
    for (int b = 0; b < 2; ++b) {
      int64_t pos[kRows];
      for (int64_t i = 0; i < kRows; ++i) {
        pos[i] = kFirst[b] + i;
        pairs[b] += double(pos[i] + 1);
      }
      const cpu::AbsorbedHead task{.shape = sh, .kv_b = &kv_b, .latents = latents.data(), .rope_keys = rope.data(),
                                   .positions = pos, .rows = kRows, .q = q.data(), .q_stride = sh.nope + sh.rope};
      const int calls = k == 0 ? 40 : 4;
      std::vector<double> rounds;
      for (int round = 0; round < 2 * one.min_passes() + 1; ++round) {
        const double start = one.now();
        for (int c = 0; c < calls; ++c)
          cpu::absorbed_attention_head(task, out.data(), sh.v, scratch, cpu::active_isa());
        rounds.push_back((one.now() - start) / calls);
      }
      t[b] = one.pick(rounds);
    }
    pair[k] = std::max((t[1] - t[0]) / (pairs[1] - pairs[0]), 1e-12);
    row[k] = std::max((t[0] - pairs[0] * pair[k]) / double(kRows), 1e-12);
    row_flops[k] = 2.0 * double((sh.nope + sh.v) * sh.latent);
    pair_flops[k] = 2.0 * double(2 * sh.latent + sh.rope);
  }
  // t(F) = fixed + F / rate through the two shapes; a rate that noise makes negative or
  // a fixed part below zero fall back to the nearer bound (all per FLOP / all fixed).
  auto fit = [](const double* cost, const double* flops, double* fixed, double* rate) {
    const double per_flop = (cost[1] - cost[0]) / (flops[1] - flops[0]);
    if (per_flop <= 0) {
      *fixed = cost[1];
      *rate = 0;
      return;
    }
    *fixed = std::max(0.0, cost[0] - flops[0] * per_flop);
    *rate = *fixed > 0 ? 1.0 / per_flop : flops[1] / cost[1];
  };
  AttentionCost f;
  fit(row, row_flops, &f.row_seconds, &f.row_flops_per_second);
  fit(pair, pair_flops, &f.pair_seconds, &f.pair_flops_per_second);
  return f;
}

// Today's CPU attention re-reads kv_b per (token, head) in the checkpoint's format: W_UK's 128
// rows through cpu::axpy_weight_rows, then W_UV's 128 through cpu::dot_weight_rows, over rows of
// 512 latent columns. One thread runs that pattern on FP8 rows (DeepSeek's format, 128×128 block
// scales) over a buffer well past the LLC: bytes per second of kv_b re-read from DRAM, decode and
// compute included.
double measure_vector_stream(uint64_t buffer_bytes, double seconds, const PassClock& clock) {
  const PassClock one{.cpu_time = clock.cpu_time, .threads = 1};
  constexpr int64_t kLatent = 512, kRows = 128;
  const int64_t blocks = std::max<int64_t>(1, int64_t(buffer_bytes / (2 * kRows * kLatent)));
  std::vector<uint8_t> codes(size_t(blocks * 2 * kRows * kLatent));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint8_t(0x30 + i % 7);  // finite E4M3
  std::vector<float> scales(size_t(blocks * 2 * (kLatent / 128)), 1e-3f);
  const cpu::WeightMatrix w{.format = cpu::WeightFormat::kFP8Block,
                            .data = codes.data(),
                            .scale_inv = scales.data(),
                            .rows = blocks * 2 * kRows,
                            .cols = kLatent};
  const cpu::Isa isa = cpu::active_isa();
  std::vector<float> acc(kLatent, 0.f), ctx(kLatent, 0.5f), q(kRows, 0.01f), out(kRows);
  float sink = 0;
  std::vector<double> passes;
  const Clock::time_point start = Clock::now();
  while (int(passes.size()) < one.min_passes() || (seconds_since(start) < seconds && passes.size() < 50)) {
    const double t0 = one.now();
    for (int64_t b = 0; b < blocks; ++b) {
      cpu::axpy_weight_rows(q.data(), w, b * 2 * kRows, kRows, acc.data(), isa);
      cpu::dot_weight_rows(ctx.data(), w, b * 2 * kRows + kRows, kRows, out.data(), isa);
      sink += out[0];
    }
    passes.push_back(one.now() - t0);
  }
  if (sink == 12345.f) std::fprintf(stderr, " ");  // keep the loop
  return double(w.bytes()) / one.pick(passes);
}

// Removes the probe's file whatever happens.
struct TempFile {
  std::filesystem::path path;
  int fd = -1;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

namespace {
double dram_read_bandwidth(uint64_t buffer_bytes, double seconds, const PassClock& clock);
}  // namespace

double measure_dram_read_bandwidth(uint64_t buffer_bytes, double seconds) {
  return dram_read_bandwidth(buffer_bytes, seconds, PassClock{});
}

AttentionCost measure_attention_cost() { return measure_attention(PassClock{}); }

namespace {
double dram_read_bandwidth(uint64_t buffer_bytes, double seconds, const PassClock& clock) {
  const uint64_t count = buffer_bytes / sizeof(uint64_t);
  AlignedBuffer buffer = aligned_alloc_bytes(count * sizeof(uint64_t), "DRAM bandwidth");
  uint64_t* data = reinterpret_cast<uint64_t*>(buffer.get());
  const int threads = worker_threads();
  const uint64_t chunk = std::max<uint64_t>(1 << 16, count / uint64_t(threads * 8));
  // First touch from the same partition the passes use, so pages sit near their readers.
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, count, chunk), [&](const tbb::blocked_range<uint64_t>& r) {
    for (uint64_t i = r.begin(); i < r.end(); ++i) data[i] = i;
  }, tbb::static_partitioner());
  std::atomic<uint64_t> sink{0};
  std::vector<double> passes;
  const auto start = Clock::now();
  while (int(passes.size()) < std::max(3, clock.min_passes()) || (seconds_since(start) < seconds && passes.size() < 100)) {
    const double pass = clock.now();
    tbb::parallel_for(tbb::blocked_range<uint64_t>(0, count, chunk), [&](const tbb::blocked_range<uint64_t>& r) {
      // Integer sums with four accumulators: the compiler vectorises them, so the loop is
      // bound by memory, not by the adds (a float dot on the baseline ISA is not).
      uint64_t a = 0, b = 0, c = 0, d = 0;
      uint64_t i = r.begin();
      for (; i + 4 <= r.end(); i += 4) {
        a += data[i];
        b += data[i + 1];
        c += data[i + 2];
        d += data[i + 3];
      }
      for (; i < r.end(); ++i) a += data[i];
      sink.fetch_add(a + b + c + d, std::memory_order_relaxed);
    }, tbb::static_partitioner());
    passes.push_back(clock.now() - pass);
  }
  return double(count * sizeof(uint64_t)) / clock.pick(passes);
}
}  // namespace

DiskReadResult measure_disk_read(const std::filesystem::path& directory, uint64_t file_bytes, double seconds) {
  constexpr uint64_t kBlock = 4 * kMiB;  // written at a time
  file_bytes = std::max<uint64_t>(4 * kBlock, file_bytes / kBlock * kBlock);
  DiskReadResult result;
  struct statvfs fs {};
  check(::statvfs(directory.c_str(), &fs) == 0, std::string("cannot stat the directory: ") + std::strerror(errno),
        {.path = directory.string(), .hint = "give an existing directory with --dir"});
  result.available_bytes = uint64_t(fs.f_bavail) * uint64_t(fs.f_frsize);
  check(result.available_bytes > file_bytes * 2,
        fmt::format("the directory has {} MiB free, the disk test needs {} MiB", result.available_bytes / kMiB, file_bytes / kMiB),
        {.path = directory.string(), .hint = "use --dir on a drive with more space, or --no-disk"});

  TempFile file;
  file.path = directory / fmt::format(".hetmoe-probe-{}.tmp", ::getpid());
  file.fd = ::open(file.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  check(file.fd >= 0, std::string("cannot create the disk test file: ") + std::strerror(errno),
        {.path = file.path.string(), .hint = "the directory must be writable"});
  {
    AlignedBuffer block = aligned_alloc_bytes(kBlock, "disk");
    for (uint64_t i = 0; i < kBlock; ++i) block.get()[i] = uint8_t((i * 2654435761u) >> 24);  // not compressible to nothing
    for (uint64_t offset = 0; offset < file_bytes; offset += kBlock) {
      block.get()[0] = uint8_t(offset >> 22);
      const ssize_t n = ::pwrite(file.fd, block.get(), kBlock, off_t(offset));
      check(n == ssize_t(kBlock), std::string("writing the disk test file failed: ") + std::strerror(errno),
            {.path = file.path.string(), .hint = "is the disk full?"});
    }
    check(::fsync(file.fd) == 0, std::string("fsync failed: ") + std::strerror(errno), {.path = file.path.string()});
    ::close(file.fd);
    file.fd = -1;
  }
  // Read it back through hetmoe's own reader (io/storage.h), as the engine streams experts:
  // io_uring with O_DIRECT and registered buffers, 1 MiB reads, the engine's queue depth (the
  // pread pool where io_uring cannot be set up; buffered where the filesystem refuses O_DIRECT).
  constexpr uint64_t kRead = kMiB;
  const io::StorageOptions options{.quiet = true};
  const uint32_t depth = options.queue_depth;
  // The buffers and ops outlive the storage, whose destructor waits for reads still in flight.
  AlignedBuffer buffers = aligned_alloc_bytes(kRead * depth, "disk");
  std::vector<io::ReadOp> ops(depth);
  std::unique_ptr<io::Storage> storage = io::open_storage(file.path, options);
  const bool direct = storage->alignment() > 1;
  const io::BufferRegion region{buffers.get(), kRead * depth};
  storage->register_buffers({&region, 1});
  result.method = fmt::format("hetmoe's reader ({}, {}), {} MiB reads, queue depth {}", storage->backend(),
                              direct ? "O_DIRECT" : "buffered after posix_fadvise(DONTNEED): no O_DIRECT here",
                              kRead / kMiB, storage->queue_depth());
  file.fd = ::open(file.path.c_str(), O_RDONLY);  // for posix_fadvise only
  const uint64_t reads = file_bytes / kRead;
  const auto start_read = [&](uint64_t slot, uint64_t index) {
    ops[slot] = io::ReadOp{.offset = index * kRead, .length = kRead, .buffer = buffers.get() + slot * kRead, .tag = slot};
    storage->submit(&ops[slot]);
  };
  double best = 1e30;
  const auto start = Clock::now();
  int passes = 0;
  while (passes < 2 || (seconds_since(start) < seconds && passes < 20)) {
    if (!direct && file.fd >= 0) ::posix_fadvise(file.fd, 0, off_t(file_bytes), POSIX_FADV_DONTNEED);
    const auto pass = Clock::now();
    uint64_t next = 0;
    for (; next < std::min<uint64_t>(depth, reads); ++next) start_read(next, next);
    storage->flush();
    for (uint64_t done = 0; done < reads; ++done) {
      io::ReadOp* op = storage->wait(true);
      check(op != nullptr, "the disk test's reads vanished", {.path = file.path.string()});
      check(op->error == 0, io::describe_read_error(*storage, *op), {.path = file.path.string()});
      if (next < reads) {
        start_read(op->tag, next++);
        storage->flush();
      }
    }
    best = std::min(best, seconds_since(pass));
    ++passes;
  }
  result.bytes_per_second = double(file_bytes) / best;
  return result;
}

namespace {

// gpus[] from gpu/probe.h when this build has the CUDA backend; otherwise a source line says why
// the list is empty.
void probe_gpus_into(HardwareProfile& p, const ProbeOptions& options) {
  if (options.skip_gpu) {
    p.source.push_back("GPU: not probed (--no-gpu); gpus is empty");
    return;
  }
#if HETMOE_HAVE_GPU
  if (options.progress) options.progress("GPUs (HBM copy, pinned host-to-device copy, cuBLASLt BF16/FP8 8192^3 GEMM)");
  const gpu::GpuProbeResult result = gpu::probe_gpus(options.seconds_per_test);
  for (const gpu::GpuMeasurement& m : result.gpus) {
    GpuProfile g;
    g.name = fmt::format("{} (sm_{}{})", m.name, m.sm_major, m.sm_minor);
    g.memory_bytes = m.memory_bytes;
    g.reserved_bytes = m.reserved_bytes;
    g.hbm_bytes_per_second = m.hbm_bytes_per_second;
    g.bf16_flops_per_second = m.bf16_flops_per_second;
    g.fp8_flops_per_second = m.fp8_flops_per_second;
    g.pcie_h2d_bytes_per_second = m.pcie_h2d_bytes_per_second;
    g.launch_overhead_seconds = m.launch_overhead_seconds;
    p.gpus.push_back(g);
    for (const std::string& note : m.notes) p.source.push_back(fmt::format("GPU {}: {}", m.index, note));
  }
  if (result.gpus.empty()) {
    p.source.push_back("GPU: " + result.status + "; gpus is empty");
    return;
  }
  p.source.push_back("GPU: " + result.status +
                     "; hbm = 2 x bytes / time of a 1 GiB device-to-device copy, pcie_h2d = 256 MiB pinned copies, "
                     "bf16/fp8 = cuBLASLt 8192^3 TN GEMM with FP32 accumulation, launch = empty kernel + sync, "
                     "reserved = total - free after context creation; best repetition of each");
#else
  p.source.push_back("GPU: not probed (this build has no CUDA backend); gpus is empty");
#endif
}

}  // namespace

HardwareProfile probe_machine(const ProbeOptions& options) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  HardwareProfile p;
  p.measured = true;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  p.name = std::string("probed-") + (host[0] ? host : "localhost");
  const int threads = worker_threads();
  const PassClock clock{.cpu_time = options.cpu_time, .threads = double(threads)};

  say("topology (hwloc)");
  const Topology t = read_topology();
  p.cpu.model = t.model;
  p.cpu.sockets = t.sockets;
  p.cpu.numa_nodes = t.numa_nodes;
  // A profile describes the machine as hetmoe uses it: with `-t T` below the core count, the
  // rates are T threads' and so are the cores the cost model spreads row-parallel work over.
  p.cpu.physical_cores = std::min(t.cores, threads);
  p.cpu.threads = std::min(t.threads, threads);
  p.cpu.l1d_bytes = t.l1d;
  p.cpu.l2_bytes = t.l2;
  p.cpu.l3_bytes = t.l3;
  p.cpu.isa = isa_list();
  p.dram.bytes = t.memory;

  // Working sets: well past the last-level cache, well within DRAM.
  const uint64_t llc = std::max<uint64_t>(t.l3, 32 * kMiB);
  const uint64_t stream_bytes = std::min<uint64_t>(std::max<uint64_t>(1024 * kMiB, 4 * llc), t.memory / 4);
  say(fmt::format("DRAM read bandwidth ({} MiB buffer, {} threads)", stream_bytes / kMiB, threads));
  p.dram.read_bytes_per_second = dram_read_bandwidth(stream_bytes, options.seconds_per_test, clock);

  const uint64_t kernel_bytes = std::min<uint64_t>(std::max<uint64_t>(768 * kMiB, 2 * llc), t.memory / 8);
  const struct {
    cpu::PackedFormat packed;
    WeightFormat format;
  } kExpertFormats[] = {{cpu::PackedFormat::kFP8, WeightFormat::kFP8},
                        {cpu::PackedFormat::kBF16, WeightFormat::kBF16},
                        {cpu::PackedFormat::kINT8, WeightFormat::kINT8},
                        {cpu::PackedFormat::kINT4, WeightFormat::kINT4}};
  for (const auto& f : kExpertFormats) {
    say(fmt::format("routed-expert kernel {} (cpu/expert_ffn.h, {} MiB of V3-shaped experts, 8 per call, 1, 4 and 16 tokens)",
                    weight_format_name(f.format), kernel_bytes / kMiB));
    p.cpu.kernels[int(f.format)] = measure_expert_kernel(f.packed, kernel_bytes, options.seconds_per_test, clock);
  }
  const struct {
    cpu::WeightFormat kernel;
    WeightFormat format;
    const char* name;
  } kFormats[] = {{cpu::WeightFormat::kFP8Block, WeightFormat::kFP8, "fp8"},
                  {cpu::WeightFormat::kBF16, WeightFormat::kBF16, "bf16"},
                  {cpu::WeightFormat::kF32, WeightFormat::kF32, "f32"}};
  for (const auto& f : kFormats) {
    say(fmt::format("dense kernel cpu::linear {} ({} MiB of expert-shaped matrices at 1 token; 1, 4 and 128 tokens on two)", f.name,
                    kernel_bytes / kMiB));
    p.cpu.dense_kernels[int(f.format)] = measure_kernel(f.kernel, kernel_bytes, options.seconds_per_test, clock);
  }
  // The routed-expert table must name every format the planner may choose; f32 only exists as
  // the plain linear.
  p.cpu.kernels[int(WeightFormat::kF32)] = p.cpu.dense_kernels[int(WeightFormat::kF32)];
  p.cpu.kernel_call_overhead_seconds = measure_call_overhead(clock);
  say("cpu::linear on short rows (FP8 2048x256 at 4 and 128 tokens): the cost per output row");
  p.cpu.linear_output_seconds = measure_linear_output(p.cpu.dense_kernels[int(WeightFormat::kFP8)].prefill_flops_per_second,
                                                      options.seconds_per_test / 4, clock);
  {
    // Single-threaded: a thread's own CPU time, so divide the process clock by nothing.
    const auto [flops, call] = measure_vector_ops(clock);
    p.cpu.vector_flops_per_second = flops;
    p.cpu.vector_call_seconds = call;
    say("MLA prompt attention (cpu/absorbed_attention.h, one head, blocks of 64 rows, one thread)");
    const AttentionCost attention = measure_attention(clock);
    p.cpu.attention_row_seconds = attention.row_seconds;
    p.cpu.attention_row_flops_per_second = attention.row_flops_per_second;
    p.cpu.attention_pair_seconds = attention.pair_seconds;
    p.cpu.attention_pair_flops_per_second = attention.pair_flops_per_second;
    say("vector ops streaming from DRAM (kv_b-shaped rows, one thread)");
    p.cpu.vector_stream_bytes_per_second =
        measure_vector_stream(std::clamp<uint64_t>(2 * llc, 256 * kMiB, 2048 * kMiB), options.seconds_per_test, clock);
  }

  p.source.push_back(fmt::format("measured by `hetmoe probe` with {} worker threads, ISA path {}, timed in {}", threads,
                                 cpu::isa_name(cpu::active_isa()),
                                 options.cpu_time ? "process CPU seconds / threads, median pass (--cpu-time)" : "wall-clock seconds, fastest pass"));
  p.source.push_back(fmt::format("topology and DRAM size: hwloc {}", HWLOC_API_VERSION >> 16));
  p.source.push_back(fmt::format("DRAM read bandwidth: best of repeated parallel passes over a {} MiB buffer (vectorised integer sums)", stream_bytes / kMiB));
  p.source.push_back(fmt::format("cpu.kernels: the packed routed-expert kernels (cpu/expert_ffn.h) per format over {} MiB of "
                                 "V3-shaped experts, 8 per call, small_batch = 2*3*params / (t(4) - t(1)), prefill = 2*12*params / "
                                 "(t(16) - t(4)) (16 tokens per expert, as a 512-token prompt gives V3); cpu.dense_kernels: "
                                 "cpu::linear over {} MiB of 2048x7168 / 7168x2048 matrices, slopes from 1, 4 and 128 tokens on "
                                 "two of them; decode = bytes / t(1)",
                                 kernel_bytes / kMiB, kernel_bytes / kMiB));
  p.source.push_back("kernel_call_overhead_seconds: cpu::linear on a 64x16 f32 matrix (4 parallel tasks) at 1 token");
  p.source.push_back(
      "linear_output_seconds: cpu::linear FP8 2048x256, (t(128) - t(4)) / 124 per token less its FLOPs at "
      "dense_kernels.fp8's prefill rate, per output row");
  p.source.push_back(
      "vector_*: cpu::dot + cpu::axpy on one thread at 64 and 512 floats, t(n) = call + 2n / flops; vector_stream: 128 axpy + "
      "128 dot_weight_rows over FP8 rows of 512 (an MLA head's kv_b) cycled through 2x the LLC, one thread, bytes / s");
  p.source.push_back(
      "attention_*: cpu::absorbed_attention_head (one head, 64 rows, FP8 kv_b in cache, one thread) at latent 128 and 512, "
      "positions 0..63 and 448..511: per (row, head) and per (pair, head) seconds, each fitted as fixed + FLOPs / rate "
      "across the two shapes");
  if (!options.skip_disk) {
    say(fmt::format("disk read bandwidth in {} ({} MiB file)", options.disk_directory.string(), options.disk_test_bytes / kMiB));
    const DiskReadResult disk = measure_disk_read(options.disk_directory, options.disk_test_bytes, options.seconds_per_test);
    p.nvme.bytes = disk.available_bytes;
    p.nvme.read_bytes_per_second = disk.bytes_per_second;
    p.nvme.path = std::filesystem::absolute(options.disk_directory).string();
    p.nvme.method = disk.method;
    p.source.push_back("disk: " + disk.method + " of a temporary file; bytes = free space there");
  }
  probe_gpus_into(p, options);
  return p;
}

}  // namespace hetmoe::plan
