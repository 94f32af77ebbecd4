// FP8 E4M3 block-scaled dequantisation, as DeepSeek-V3 ships its weights.
//
// W[i, j] = fp8(Q[i, j]) * S[i / block, j / block], S = weight_scale_inv (FP32,
// [ceil(rows/block), ceil(cols/block)]); edge blocks may be partial. Raw pointers and
// sizes only (kernel-header rule): callers validate shapes.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace hetmoe::cpu {

struct Fp8BlockMatrix {
  const uint8_t* codes = nullptr;      // f8_e4m3 [rows, cols], row-major
  const float* scale_inv = nullptr;    // f32 [ceil(rows/block), ceil(cols/block)]
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t block = 128;
};

// Dequantises rows [row_begin, row_end) into `out` (f32 [row_end - row_begin, cols]).
void dequant_fp8_rows(const Fp8BlockMatrix& matrix, int64_t row_begin, int64_t row_end, float* out,
                      Isa isa);
inline void dequant_fp8_rows(const Fp8BlockMatrix& matrix, int64_t row_begin, int64_t row_end,
                             float* out) {
  dequant_fp8_rows(matrix, row_begin, row_end, out, active_isa());
}

// Per-ISA row kernels: out[j] = fp8(codes[j]) * scale[j / block] for j < cols.
namespace kernels {
void dequant_fp8_row_scalar(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                            float* out);
void dequant_fp8_row_avx2(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                          float* out);
void dequant_fp8_row_avx512(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                            float* out);
}  // namespace kernels

}  // namespace hetmoe::cpu
