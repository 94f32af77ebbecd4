// y = W x for weights in the formats checkpoints ship (FP8 E4M3 with block scales, BF16,
// F32), computed in FP32 on the row-major checkpoint mapping. The plain linear used by
// attention projections, dense layers, shared experts and lm_head (routed experts run on the
// packed kernels of cpu/expert_ffn.h). On AVX-512 the weights are decoded in registers and
// FMA'd with every token (cpu/linear_avx512.cpp); on AVX2 each 128-column block of a row is
// decoded into L1 and FMA'd with a tile of tokens (cpu/linear_avx2.cpp); the scalar path
// dequantises a row and dots it with each token.
//
// Each output element is computed by one thread in a fixed order that does not depend on the
// token count, so results do not depend on the thread count or the batch.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace hetmoe::cpu {

enum class WeightFormat { kF32, kBF16, kFP8Block };

struct WeightMatrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;         // [rows, cols] row-major in `format`
  const float* scale_inv = nullptr;   // kFP8Block: f32 [ceil(rows/block), ceil(cols/block)]
  int64_t rows = 0;                   // output features
  int64_t cols = 0;                   // input features
  int64_t block = 128;
  uint64_t bytes() const;
};

// Throws hetmoe::Error naming the first NaN code (E4M3 S.1111.111) of FP8 row `row` of `w`:
// shipped weights never hold NaN, so the linear refuses a corrupt checkpoint on every ISA
// rather than decode it (the AVX-512 decode would give a finite value, the table NaN).
[[noreturn]] void throw_fp8_nan(const WeightMatrix& w, int64_t row);

// x: f32 [tokens, w.cols]; y: f32 [tokens, w.rows] (overwritten).
void linear(const WeightMatrix& w, const float* x, int64_t tokens, float* y);

// Row `row` of W as f32 (cols values) into `out`, decoded with the given kernel path.
void weight_row(const WeightMatrix& w, int64_t row, float* out, Isa isa);

// Rows [row0, row0 + count) of W as f32 (weight_row's values) into out [count, cols]; FP8 NaN
// codes are refused (throw_fp8_nan).
void weight_rows(const WeightMatrix& w, int64_t row0, int64_t count, float* out, Isa isa);

// Rows [row0, row0 + count) of W used as the rows of axpy_rows / dot_rows (cpu/ops.h), decoded
// a few rows at a time into an L1 buffer with weight_row's values (FP8: fp8(code) · scale, as
// cpu::dequant_fp8_rows; BF16 and F32 exact): the same bits as those calls on a dequantised f32
// copy of W, while memory is read in the checkpoint's format (a quarter of the bytes for FP8).
//   y[j] += Σ_r alpha[r] · W[row0 + r, j] (rows in order, j < w.cols)
void axpy_weight_rows(const float* alpha, const WeightMatrix& w, int64_t row0, int64_t count, float* y, Isa isa);
//   out[r] = dot(x, W[row0 + r, ·], w.cols)
void dot_weight_rows(const float* x, const WeightMatrix& w, int64_t row0, int64_t count, float* out, Isa isa);

// linear() with an explicit kernel path.
void linear(const WeightMatrix& w, const float* x, int64_t tokens, float* y, Isa isa);

namespace kernels {
// y = W x on AVX-512 (F, BW, VL, F16C), over the caller's TBB arena.
void linear_avx512(const WeightMatrix& w, const float* x, int64_t tokens, float* y);
// y = W x on AVX2 (+ FMA, F16C), over the caller's TBB arena, when linear_fits_avx2(w) (an FP8
// scale block of at most 1024 columns).
bool linear_fits_avx2(const WeightMatrix& w);
void linear_avx2(const WeightMatrix& w, const float* x, int64_t tokens, float* y);
// axpy_weight_rows / dot_weight_rows for FP8 rows decoded in registers, when the shape allows
// (fp8_weight_rows_fit_avx512: columns and scale block multiples of 64).
bool fp8_weight_rows_fit_avx512(const WeightMatrix& w);
void axpy_fp8_rows_avx512(const float* alpha, const WeightMatrix& w, int64_t row0, int64_t count, float* y);
void dot_fp8_rows_avx512(const float* x, const WeightMatrix& w, int64_t row0, int64_t count, float* out);
}  // namespace kernels

}  // namespace hetmoe::cpu
