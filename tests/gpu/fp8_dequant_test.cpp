// Runs only where a CUDA device exists; compiled everywhere CUDA is.
#include "gpu/fp8_dequant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/dequant.h"

namespace hetmoe {
namespace {

bool have_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

TEST(GpuFp8Dequant, MatchesCpuReferenceWithPartialEdgeBlocks) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device on this machine";
  const int64_t rows = 200, cols = 300, block = 128;  // partial blocks on both edges
  const int64_t scale_rows = 2, scale_cols = 3;
  std::mt19937 rng(7);
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (auto& c : codes) c = uint8_t(rng() & 0xFF);
  for (auto& c : codes) if ((c & 0x7F) == 0x7F) c = 0;  // keep NaN codes out of the comparison
  std::vector<float> scales(size_t(scale_rows * scale_cols));
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = 0.5f + float(i);
  std::vector<float> expected(codes.size());
  cpu::dequant_fp8_rows({codes.data(), scales.data(), rows, cols, block}, 0, rows, expected.data(),
                        cpu::Isa::kScalar);

  uint8_t* d_codes = nullptr;
  float *d_scales = nullptr, *d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_codes, codes.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_scales, scales.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, expected.size() * 4), cudaSuccess);
  cudaMemcpy(d_codes, codes.data(), codes.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(d_scales, scales.data(), scales.size() * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(gpu::dequant_fp8_block_f32(d_codes, d_scales, rows, cols, int(block), d_out, nullptr), cudaSuccess);
  std::vector<float> got(expected.size());
  cudaMemcpy(got.data(), d_out, got.size() * 4, cudaMemcpyDeviceToHost);
  cudaFree(d_codes);
  cudaFree(d_scales);
  cudaFree(d_out);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected[i]) << "element " << i;
}

}  // namespace
}  // namespace hetmoe
