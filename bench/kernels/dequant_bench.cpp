// FP8 block dequantisation throughput per ISA path (input bytes per second).
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "cpu/dequant.h"

namespace hetmoe::cpu {
namespace {

void BM_DequantFp8(benchmark::State& state, Isa isa) {
  if (!isa_supported(isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  const int64_t rows = 2048, cols = 7168;  // one DeepSeek-V3 expert gate_proj
  std::vector<uint8_t> codes(size_t(rows * cols));
  std::mt19937 rng(1);
  for (auto& c : codes) c = uint8_t(rng() & 0x7E);
  std::vector<float> scales(size_t(16 * 56), 0.01f);
  std::vector<float> out(size_t(128 * cols));
  for (auto _ : state) {
    for (int64_t r = 0; r < rows; r += 128) {
      dequant_fp8_rows({codes.data(), scales.data(), rows, cols, 128}, r, r + 128, out.data(), isa);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * cols);
}

BENCHMARK_CAPTURE(BM_DequantFp8, scalar, Isa::kScalar)->Name("dequant/fp8/scalar");
BENCHMARK_CAPTURE(BM_DequantFp8, avx2, Isa::kAvx2)->Name("dequant/fp8/avx2");
BENCHMARK_CAPTURE(BM_DequantFp8, avx512, Isa::kAvx512)->Name("dequant/fp8/avx512");

}  // namespace
}  // namespace hetmoe::cpu
