#include "cpu/linear.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/dequant.h"
#include "cpu/ops.h"
#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace hetmoe::cpu {

uint64_t WeightMatrix::bytes() const {
  const uint64_t count = uint64_t(rows) * uint64_t(cols);
  switch (format) {
    case WeightFormat::kF32:
      return count * 4;
    case WeightFormat::kBF16:
      return count * 2;
    case WeightFormat::kFP8Block: {
      const uint64_t blocks = uint64_t((rows + block - 1) / block) * uint64_t((cols + block - 1) / block);
      return count + blocks * 4;
    }
  }
  return 0;
}

void weight_row(const WeightMatrix& w, int64_t row, float* out, Isa isa) {
  switch (w.format) {
    case WeightFormat::kF32:
      convert_to_float(DType::kF32, static_cast<const float*>(w.data) + row * w.cols, uint64_t(w.cols), out);
      return;
    case WeightFormat::kBF16:
      convert_to_float(DType::kBF16, static_cast<const uint16_t*>(w.data) + row * w.cols, uint64_t(w.cols), out);
      return;
    case WeightFormat::kFP8Block:
      dequant_fp8_rows({static_cast<const uint8_t*>(w.data), w.scale_inv, w.rows, w.cols, w.block}, row, row + 1,
                       out, isa);
      return;
  }
}

void weight_rows(const WeightMatrix& w, int64_t row0, int64_t count, float* out, Isa isa) {
  if (w.format != WeightFormat::kFP8Block) {
    for (int64_t i = 0; i < count; ++i) weight_row(w, row0 + i, out + i * w.cols, isa);
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* codes = static_cast<const uint8_t*>(w.data) + (row0 + i) * w.cols;
    uint8_t nan = 0;  // an OR over the row (vectorised), not a search that stops early
    for (int64_t k = 0; k < w.cols; ++k) nan |= uint8_t((codes[k] & 0x7F) == 0x7F);
    if (nan != 0) throw_fp8_nan(w, row0 + i);
  }
  dequant_fp8_rows({static_cast<const uint8_t*>(w.data), w.scale_inv, w.rows, w.cols, w.block}, row0, row0 + count,
                   out, isa);
}

namespace {

// Rows of W decoded `rows_per_chunk` at a time into a buffer that stays in L1, handed to `use`
// as (first row index relative to row0, rows in the chunk, f32 rows).
template <class Use>
void for_weight_chunks(const WeightMatrix& w, int64_t row0, int64_t count, Isa isa, Use&& use) {
  constexpr int64_t kBufferFloats = 4096;  // 16 KiB
  const int64_t rows_per_chunk = std::max<int64_t>(1, kBufferFloats / std::max<int64_t>(1, w.cols));
  float stack[kBufferFloats];
  std::vector<float> heap;
  float* buffer = stack;
  if (w.cols > kBufferFloats) {
    heap.resize(size_t(w.cols));
    buffer = heap.data();
  }
  for (int64_t r = 0; r < count; r += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, count - r);
    weight_rows(w, row0 + r, n, buffer, isa);
    use(r, n, static_cast<const float*>(buffer));
  }
}

}  // namespace

void axpy_weight_rows(const float* alpha, const WeightMatrix& w, int64_t row0, int64_t count, float* y, Isa isa) {
  if (has_avx512(isa) && kernels::fp8_weight_rows_fit_avx512(w))
    return kernels::axpy_fp8_rows_avx512(alpha, w, row0, count, y);
  for_weight_chunks(w, row0, count, isa, [&](int64_t r, int64_t n, const float* rows) {
    axpy_rows(alpha + r, rows, w.cols, n, y, w.cols, isa);
  });
}

void dot_weight_rows(const float* x, const WeightMatrix& w, int64_t row0, int64_t count, float* out, Isa isa) {
  if (has_avx512(isa) && kernels::fp8_weight_rows_fit_avx512(w))
    return kernels::dot_fp8_rows_avx512(x, w, row0, count, out);
  for_weight_chunks(w, row0, count, isa, [&](int64_t r, int64_t n, const float* rows) {
    dot_rows(x, rows, w.cols, n, w.cols, out + r, isa);
  });
}

void throw_fp8_nan(const WeightMatrix& w, int64_t row) {
  const uint8_t* codes = static_cast<const uint8_t*>(w.data) + row * w.cols;
  int64_t k = 0;
  while (k < w.cols && (codes[k] & 0x7F) != 0x7F) ++k;
  throw Error("FP8 weight at row " + std::to_string(row) + ", column " + std::to_string(k) + " of a " +
                  std::to_string(w.rows) + " x " + std::to_string(w.cols) + " matrix is NaN",
              {.hint = "the checkpoint is corrupt: shipped weights never hold NaN"});
}

void linear(const WeightMatrix& w, const float* x, int64_t tokens, float* y) {
  linear(w, x, tokens, y, active_isa());
}

void linear(const WeightMatrix& w, const float* x, int64_t tokens, float* y, Isa isa) {
  if (has_avx512(isa)) return kernels::linear_avx512(w, x, tokens, y);
  if (isa == Isa::kAvx2 && kernels::linear_fits_avx2(w)) return kernels::linear_avx2(w, x, tokens, y);
  // Rows are dequantised once into a per-task buffer and dotted with every token, so each
  // weight byte is read once per call whatever the token count.
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.rows, 16), [&](const tbb::blocked_range<int64_t>& range) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = range.begin(); r < range.end(); ++r) {
      if (w.format == WeightFormat::kFP8Block) {
        const uint8_t* codes = static_cast<const uint8_t*>(w.data) + r * w.cols;
        if (std::any_of(codes, codes + w.cols, [](uint8_t c) { return (c & 0x7F) == 0x7F; })) throw_fp8_nan(w, r);
      }
      weight_row(w, r, row.data(), isa);
      for (int64_t t = 0; t < tokens; ++t) y[t * w.rows + r] = dot(row.data(), x + t * w.cols, w.cols);
    }
  });
}

}  // namespace hetmoe::cpu
