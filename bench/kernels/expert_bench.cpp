// The expert FFN kernels at DeepSeek-V3 expert shape (hidden 7168, intermediate 2048), per
// format, against this machine's limits measured at start-up in the same run.
//
//   decode/<format>/tokens:T/threads:N   one MoE layer step: 8 experts × T tokens each (T = 1, 4, 6), the
//       experts cycling through a pool of >= 4× LLC so their weights stream from DRAM.
//       bytes_per_second = packed weight bytes streamed; frac_of_limit = that / read bandwidth
//       (a STREAM-like read of the same pool on the same threads, measured right before in
//       windows of the same 8 experts' bytes).
//   prefill/<format>/tokens:128/threads:N   one expert × 128 tokens per iteration (cycling through
//       8 experts). ops_per_second = 2·MACs;
//       frac_of_limit = that / the peak of the instruction the format's prefill kernel uses
//       (fp32 FMA for fp8/bf16, the BF16 dot under HETMOE_FLOAT_PREFILL=bf16dot; for int8/int4 vpdpbusd, tdpbssd under the amx path, which
//       also reports vnni_peak_multiple = ops / the vpdpbusd peak, or vpmaddubsw under the avx2
//       path), measured right before; on AVX2 every limit is measured with AVX2 instructions.
//   frac_of_limit divides the mean rate by the limit's mean over its windows; frac_of_limit_best
//   divides the fastest iteration by the fastest limit window (both the least disturbed on a
//   shared machine); frac_of_startup_limit divides by the limits measured once at start-up.
//
// The plain linear's decode: linear_bench.cpp (linear/decode/...).
//
// Run: build/bench/hetmoe-bench-kernels [--benchmark_filter=decode/fp8]; HETMOE_BENCH_POOL_BYTES
// overrides the decode pool size (default max(4 × LLC, 1 GiB)).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bench/kernels/limits.h"
#include "bench/kernels/linear_bench.h"
#include "cpu/expert_ffn.h"
#include "engine/core/dtype.h"

namespace hetmoe::bench {
namespace {

constexpr int64_t kHidden = 7168, kInter = 2048, kExpertsPerToken = 8;
constexpr cpu::PackedFormat kFormats[] = {cpu::PackedFormat::kFP8, cpu::PackedFormat::kINT8,
                                          cpu::PackedFormat::kINT4, cpu::PackedFormat::kBF16};

struct Context {
  std::map<int, std::unique_ptr<cpu::CpuThreads>> threads;  // by thread count
  std::map<int, MachineLimits> limits;
  uint64_t pool_bytes = 0;
};
Context& context() {
  static Context c;
  return c;
}

cpu::CpuThreads& threads(int n) {
  auto& slot = context().threads[n];
  if (!slot) slot = std::make_unique<cpu::CpuThreads>(cpu::ThreadOptions{.threads = n});
  return *slot;
}

// One DeepSeek-shaped expert packed from a random FP8 source, copied into `count` distinct
// records (the content does not change the speed; distinct memory does).
class ExpertPool {
 public:
  ExpertPool(cpu::PackedFormat format, int64_t count) {
    cpu::AlignedBytes first = pack_one(format);
    for (int64_t i = 0; i < count; ++i) {
      records_.emplace_back(first.size());
      std::memcpy(records_.back().data(), first.data(), first.size());
      const uint8_t* base = records_.back().data();
      ffns_.push_back({{gate_, base}, {gate_, base + gate_.bytes()}, {down_, base + 2 * gate_.bytes()}});
    }
    expert_bytes_ = first.size();
  }
  const cpu::PackedFfn& expert(int64_t i) const { return ffns_[size_t(i % int64_t(ffns_.size()))]; }
  std::vector<std::span<const uint8_t>> regions() const {
    std::vector<std::span<const uint8_t>> out;
    for (const auto& r : records_) out.emplace_back(r.data(), r.size());
    return out;
  }
  int64_t count() const { return int64_t(ffns_.size()); }
  uint64_t expert_bytes() const { return expert_bytes_; }

 private:
  cpu::AlignedBytes pack_one(cpu::PackedFormat format) {
    gate_ = cpu::packed_layout(format, kInter, kHidden);
    down_ = cpu::packed_layout(format, kHidden, kInter);
    cpu::AlignedBytes record(2 * gate_.bytes() + down_.bytes());
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    std::vector<uint8_t> table(4096);
    for (auto& c : table) c = fp8_e4m3_from_float(112.0f * normal(rng));
    auto make = [&](int64_t rows, int64_t cols, uint8_t* out) {
      std::vector<uint8_t> codes(size_t(rows * cols));
      uint32_t state = 12345;
      for (auto& c : codes) c = table[(state = state * 1664525u + 1013904223u) >> 20];
      std::vector<float> scales(size_t(((rows + 127) / 128) * ((cols + 127) / 128)), 1e-4f);
      const cpu::WeightMatrix w{.format = cpu::WeightFormat::kFP8Block,
                                .data = codes.data(),
                                .scale_inv = scales.data(),
                                .rows = rows,
                                .cols = cols};
      cpu::pack_matrix(w, format, out);
    };
    make(kInter, kHidden, record.data());
    make(kInter, kHidden, record.data() + gate_.bytes());
    make(kHidden, kInter, record.data() + 2 * gate_.bytes());
    return record;
  }
  cpu::PackedLayout gate_, down_;
  std::vector<cpu::AlignedBytes> records_;
  std::vector<cpu::PackedFfn> ffns_;
  uint64_t expert_bytes_ = 0;
};

// One pool alive at a time (a pool is >= 4× LLC).
const ExpertPool& pool(cpu::PackedFormat format, bool large) {
  static std::unique_ptr<ExpertPool> current;
  static std::pair<cpu::PackedFormat, bool> key;
  if (!current || key != std::pair{format, large}) {
    current.reset();
    const uint64_t one = 2 * cpu::packed_layout(format, kInter, kHidden).bytes() +
                         cpu::packed_layout(format, kHidden, kInter).bytes();
    int64_t count = kExpertsPerToken;
    if (large) count = std::max<int64_t>(count, int64_t((context().pool_bytes + one - 1) / one + 7) / 8 * 8);
    current = std::make_unique<ExpertPool>(format, count);
    key = {format, large};
  }
  return *current;
}

void run_layer(benchmark::State& state, cpu::PackedFormat format, int64_t tokens, int n_threads,
               bool decode) {
  const ExpertPool& experts = pool(format, decode);
  cpu::CpuThreads& arena = threads(n_threads);
  const cpu::Isa isa = cpu::active_isa();
  cpu::ExpertFfnRunner runner(&arena, isa);
  const bool vnni = format == cpu::PackedFormat::kINT8 || format == cpu::PackedFormat::kINT4;
  // The limit this benchmark is held to, measured again right before it (the machine is shared
  // and its limits drift): read bandwidth over this very pool, or the peak of the instruction
  // the format's prefill kernel uses.
  const int64_t experts_per_iteration = decode ? kExpertsPerToken : 1;
  Rate limit;
  if (decode) {
    const auto regions = experts.regions();
    limit = measure_read_bandwidth(arena, regions, experts_per_iteration,
                                   int(std::max<int64_t>(12, 2 * experts.count() / experts_per_iteration)));
  } else {
    limit = measure_peak(arena, prefill_peak(format, isa), 0.05, 20);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(size_t(experts_per_iteration * tokens * kHidden)), out(x.size());
  for (auto& v : x) v = normal(rng);
  std::vector<cpu::FfnTask> tasks(static_cast<size_t>(experts_per_iteration));
  int64_t next = 0;
  double seconds = 0;     // manual timing, so the counters below can be plain ratios
  double fastest = 1e30;  // the least disturbed iteration on a shared machine
  for (auto _ : state) {
    for (int64_t e = 0; e < experts_per_iteration; ++e)
      tasks[size_t(e)] = {&experts.expert(next++), &x[size_t(e * tokens * kHidden)], tokens,
                          &out[size_t(e * tokens * kHidden)]};
    const auto start = std::chrono::steady_clock::now();
    runner.run(tasks);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(out.data());
    state.SetIterationTime(elapsed);
    seconds += elapsed;
    fastest = std::min(fastest, elapsed);
  }
  const MachineLimits& startup = context().limits[n_threads];
  const double work_per_iteration =
      double(experts_per_iteration) *
      (decode ? double(experts.expert_bytes()) : 2.0 * double(tokens) * 3.0 * kHidden * kInter);
  const double work = double(state.iterations()) * work_per_iteration;
  state.SetBytesProcessed(
      int64_t(double(state.iterations()) * double(experts_per_iteration) * double(experts.expert_bytes())));
  state.counters["frac_of_limit"] = work / seconds / limit.mean;
  state.counters["frac_of_limit_best"] = work_per_iteration / fastest / limit.best;
  if (decode) {
    state.counters["limit_GBps"] = limit.mean / 1e9;
    state.counters["limit_best_GBps"] = limit.best / 1e9;
    state.counters["frac_of_startup_limit"] = work / seconds / startup.read_bytes_per_second;
  } else {
    state.counters["ops_per_second"] = work / seconds;
    state.counters["limit_GOPs"] = limit.mean / 1e9;
    state.counters["limit_best_GOPs"] = limit.best / 1e9;
    state.counters["frac_of_startup_limit"] =
        work / seconds / peak_of(startup, prefill_peak(format, isa));
    if (vnni && isa == cpu::Isa::kAmx) state.counters["vnni_peak_multiple"] = work / seconds / startup.vnni_ops;
  }
  state.counters["pool_experts"] = double(experts.count());
}

// What a kernel can do when memory is not the limit: one thread, a 64-row matrix of the expert's
// width (≤ 0.9 MB, L2-resident), timed by the thread's CPU time, best of many short iterations.
//   kernel/decode/<format>  1 token: bytes_per_second of weights decoded and dotted; dram_multiple
//       = that / the start-up read bandwidth of one thread (> 1: decode is not what limits).
//   kernel/prefill/<format> 128 tokens: frac_of_limit = ops / the instruction's peak, measured the
//       same way (thread CPU time, best ~1 ms window) right before.
void run_kernel(benchmark::State& state, cpu::PackedFormat format, int64_t tokens) {
  const int64_t rows = 64, cols = kHidden;
  std::vector<uint8_t> codes(size_t(rows * cols));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (auto& c : codes) c = fp8_e4m3_from_float(112.0f * normal(rng));
  std::vector<float> scales(size_t(cols / 128), 1e-4f);
  const cpu::WeightMatrix source{.format = cpu::WeightFormat::kFP8Block,
                                 .data = codes.data(),
                                 .scale_inv = scales.data(),
                                 .rows = rows,
                                 .cols = cols};
  const cpu::PackedLayout layout = cpu::packed_layout(format, rows, cols);
  cpu::AlignedBytes bytes(layout.bytes());
  cpu::pack_matrix(source, format, bytes.data());
  std::vector<float> x(size_t(tokens * cols)), y(size_t(tokens * rows));
  for (auto& v : x) v = normal(rng);
  cpu::ActivationBuffers act;
  const cpu::Isa isa = cpu::active_isa();
  cpu::prepare_activations(layout, x.data(), tokens, cols, cpu::padded_tokens(tokens), act, isa);
  cpu::GemmScratch scratch;
  const cpu::PackedGemmArgs args{.w = {layout, bytes.data()},
                                 .a = act.view,
                                 .tokens = tokens,
                                 .panel_begin = 0,
                                 .panel_end = layout.panels,
                                 .y = y.data(),
                                 .y_stride = rows,
                                 .scratch = &scratch,
                                 .bf16_dot = cpu::float_prefill_bf16dot()};
  const bool vnni = format == cpu::PackedFormat::kINT8 || format == cpu::PackedFormat::kINT4;
  const double peak = tokens > 1 ? measure_peak_thread_cpu(prefill_peak(format, isa), 200) : 0;
  const double vnni_peak = vnni && isa == cpu::Isa::kAmx ? measure_peak_thread_cpu(PeakKind::kVnni, 200) : 0;
  cpu::packed_gemm(args, isa);  // warm
  double fastest = 1e30;
  for (auto _ : state) {
    const double start = thread_cpu_seconds();
    cpu::packed_gemm(args, isa);
    const double elapsed = thread_cpu_seconds() - start;
    benchmark::DoNotOptimize(y.data());
    state.SetIterationTime(elapsed);
    fastest = std::min(fastest, elapsed);
  }
  state.counters["bytes_per_second_best"] = double(layout.bytes()) / fastest;
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(layout.bytes()));
  if (tokens == 1) {
    state.counters["dram_multiple_best"] =
        double(layout.bytes()) / fastest / context().limits[1].read_bytes_per_second;
  } else {
    const double ops = 2.0 * double(rows) * double(cols) * double(tokens);
    state.counters["ops_per_second_best"] = ops / fastest;
    state.counters["frac_of_limit_best"] = ops / fastest / peak;
    state.counters["limit_GOPs"] = peak / 1e9;
    if (vnni_peak > 0) state.counters["vnni_peak_multiple_best"] = ops / fastest / vnni_peak;
  }
}

void register_benchmarks(int max_threads) {
  for (cpu::PackedFormat format : kFormats) {
    const std::string name(cpu::packed_format_name(format));
    benchmark::RegisterBenchmark(("kernel/decode/" + name).c_str(),
                                 [=](benchmark::State& s) { run_kernel(s, format, 1); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.5);
    benchmark::RegisterBenchmark(("kernel/prefill/" + name).c_str(),
                                 [=](benchmark::State& s) { run_kernel(s, format, 128); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.5);
  }
  std::vector<int> thread_counts = {1};
  if (max_threads > 1) thread_counts.push_back(max_threads);
  for (cpu::PackedFormat format : kFormats) {
    const std::string name(cpu::packed_format_name(format));
    for (int n : thread_counts)
      for (int64_t tokens : {1, 4, 6})  // 6: two chunks of the decode kernel (an expert's share of a short prompt)
        benchmark::RegisterBenchmark(
            ("decode/" + name + "/tokens:" + std::to_string(tokens) + "/threads:" + std::to_string(n))
                .c_str(),
            [=](benchmark::State& s) { run_layer(s, format, tokens, n, true); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->MinTime(2.0);
  }
  for (cpu::PackedFormat format : kFormats) {
    const std::string name(cpu::packed_format_name(format));
    for (int n : thread_counts)
      benchmark::RegisterBenchmark(("prefill/" + name + "/tokens:128/threads:" + std::to_string(n)).c_str(),
                                   [=](benchmark::State& s) { run_layer(s, format, 128, n, false); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(2.0);
  }
}

}  // namespace
}  // namespace hetmoe::bench

int main(int argc, char** argv) {
  using namespace hetmoe;
  benchmark::Initialize(&argc, argv);
  auto& c = bench::context();
  const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  c.pool_bytes = std::max<uint64_t>(uint64_t(1) << 30, 4 * uint64_t(std::max(0L, llc)));
  if (const char* env = std::getenv("HETMOE_BENCH_POOL_BYTES"))
    c.pool_bytes = std::strtoull(env, nullptr, 10);
  const int cores = cpu::probe_cpu_topology().physical_cores;
  std::fprintf(stderr,
               "hetmoe-bench-kernels: isa %s, %d physical cores, LLC %ld bytes, decode pool %llu bytes\n",
               std::string(cpu::isa_name(cpu::active_isa())).c_str(), cores, llc,
               static_cast<unsigned long long>(c.pool_bytes));
  for (int n : {1, cores}) {
    if (c.limits.count(n)) continue;
    const bench::MachineLimits l = bench::measure_limits(bench::threads(n), c.pool_bytes);
    c.limits[n] = l;
    std::fprintf(
        stderr,
        "limits/threads:%d  read %.2f GB/s  fp32 FMA %.1f GFLOP/s  bf16 dot %.1f GFLOP/s  vnni %.1f GOP/s  "
        "vpmaddubsw %.1f GOP/s  amx int8 %.1f GOP/s\n",
        n, l.read_bytes_per_second / 1e9, l.fma_flops / 1e9, l.bf16_dot_flops / 1e9, l.vnni_ops / 1e9,
        l.maddubs_ops / 1e9, l.amx_int8_ops / 1e9);
    benchmark::AddCustomContext("limit_read_GBps_threads" + std::to_string(n),
                                std::to_string(l.read_bytes_per_second / 1e9));
    benchmark::AddCustomContext("limit_fma_GFLOPs_threads" + std::to_string(n),
                                std::to_string(l.fma_flops / 1e9));
    benchmark::AddCustomContext("limit_bf16dot_GFLOPs_threads" + std::to_string(n),
                                std::to_string(l.bf16_dot_flops / 1e9));
    benchmark::AddCustomContext("limit_vnni_GOPs_threads" + std::to_string(n),
                                std::to_string(l.vnni_ops / 1e9));
    benchmark::AddCustomContext("limit_maddubs_GOPs_threads" + std::to_string(n),
                                std::to_string(l.maddubs_ops / 1e9));
    benchmark::AddCustomContext("limit_amx_int8_GOPs_threads" + std::to_string(n),
                                std::to_string(l.amx_int8_ops / 1e9));
  }
  bench::register_benchmarks(cores);
  bench::register_linear_benchmarks(cores, c.pool_bytes);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
