// AVX-512 dot and axpy: the operations of cpu/ops.h in 16-wide vectors, same bits as the
// portable path. Compiled with its own flags, called only when cpu_features() says so.
#include <immintrin.h>

#include <algorithm>

#include "cpu/lanes_avx512.h"
#include "cpu/ops.h"

namespace hetmoe::cpu::kernels {
namespace {

// 64 lanes = 4 vectors per dot, R dots sharing each load of x. The tail (< 64 elements) is added
// lane by lane with masks, so lane j still receives element i with i mod 64 = j, in order.
template <int R>
void dots(const float* x, const float* const* rows, int64_t n, float* out) {
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < 4; ++k) acc[r][k] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) {
      const __m512 xv = _mm512_loadu_ps(x + i + 16 * k);
      for (int r = 0; r < R; ++r)
        acc[r][k] = _mm512_add_ps(acc[r][k], _mm512_mul_ps(xv, _mm512_loadu_ps(rows[r] + i + 16 * k)));
    }
  for (int k = 0; k < 4 && i + 16 * k < n; ++k) {
    const int64_t left = n - i - 16 * k;
    const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(mask, x + i + 16 * k);
    for (int r = 0; r < R; ++r) {
      const __m512 product = _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(mask, rows[r] + i + 16 * k));
      acc[r][k] = _mm512_mask_add_ps(acc[r][k], mask, acc[r][k], product);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = sum_64_lanes(acc[r]);
}

}  // namespace

float dot_avx512(const float* a, const float* b, int64_t n) {
  float out;
  dots<1>(a, &b, n, &out);
  return out;
}

void dot_rows_avx512(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out) {
  int64_t r = 0;
  for (; r + 4 <= count; r += 4) {
    const float* four[4] = {rows + r * stride, rows + (r + 1) * stride, rows + (r + 2) * stride,
                            rows + (r + 3) * stride};
    dots<4>(x, four, n, out + r);
  }
  for (; r < count; ++r) {
    const float* one = rows + r * stride;
    dots<1>(x, &one, n, out + r);
  }
}

// y in chunks of up to 8 vectors held in registers while every row is added in order.
void axpy_rows_avx512(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n) {
  for (int64_t j0 = 0; j0 < n; j0 += 128) {
    __m512 acc[8];
    __mmask16 mask[8];
    const int vectors = int(std::min<int64_t>(8, (n - j0 + 15) / 16));
    for (int k = 0; k < 8; ++k) {
      const int64_t left = n - j0 - 16 * k;
      mask[k] = left >= 16 ? __mmask16(0xFFFF) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
      acc[k] = _mm512_maskz_loadu_ps(mask[k], y + j0 + 16 * k);
    }
    for (int64_t r = 0; r < count; ++r) {
      const __m512 a = _mm512_set1_ps(alpha[r]);
      const float* row = rows + r * stride + j0;
      for (int k = 0; k < vectors; ++k)
        acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(a, _mm512_maskz_loadu_ps(mask[k], row + 16 * k)));
    }
    for (int k = 0; k < vectors; ++k) _mm512_mask_storeu_ps(y + j0 + 16 * k, mask[k], acc[k]);
  }
}

void axpy_avx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(a, _mm512_loadu_ps(x + i))));
  if (i < n) {
    const __mmask16 mask = __mmask16((1u << (n - i)) - 1);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y + i), _mm512_mul_ps(a, _mm512_maskz_loadu_ps(mask, x + i)));
    _mm512_mask_storeu_ps(y + i, mask, sum);
  }
}

}  // namespace hetmoe::cpu::kernels
