#include "cpu/dequant.h"

#include "engine/core/dtype.h"

namespace hetmoe::cpu {
namespace kernels {

void dequant_fp8_row_scalar(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                            float* out) {
  const float* table = fp8_e4m3_table();
  for (int64_t j = 0; j < cols; ++j) out[j] = table[codes[j]] * scales[j / block];
}

}  // namespace kernels

void dequant_fp8_rows(const Fp8BlockMatrix& matrix, int64_t row_begin, int64_t row_end, float* out,
                      Isa isa) {
  auto* row_kernel = &kernels::dequant_fp8_row_scalar;
  if (has_avx512(isa)) row_kernel = &kernels::dequant_fp8_row_avx512;
  if (isa == Isa::kAvx2) row_kernel = &kernels::dequant_fp8_row_avx2;
  const int64_t scale_cols = (matrix.cols + matrix.block - 1) / matrix.block;
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float* scales = matrix.scale_inv + (i / matrix.block) * scale_cols;
    row_kernel(matrix.codes + i * matrix.cols, scales, matrix.cols, matrix.block,
               out + (i - row_begin) * matrix.cols);
  }
}

}  // namespace hetmoe::cpu
