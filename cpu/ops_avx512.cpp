// AVX-512 dot and axpy: the operations of cpu/ops.h in 16-wide vectors, same bits as the
// portable path. Compiled with its own flags, called only when cpu_features() says so.
#include <immintrin.h>

#include "cpu/ops.h"

namespace hetmoe::cpu::kernels {

// 64 lanes = 4 vectors; the tail (< 64 elements) is added lane by lane with masks, so lane j
// still receives element i with i mod 64 = j, in order.
float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k)
      acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(_mm512_loadu_ps(a + i + 16 * k), _mm512_loadu_ps(b + i + 16 * k)));
  for (int k = 0; k < 4 && i + 16 * k < n; ++k) {
    const int64_t left = n - i - 16 * k;
    const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __m512 product =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, a + i + 16 * k), _mm512_maskz_loadu_ps(mask, b + i + 16 * k));
    acc[k] = _mm512_mask_add_ps(acc[k], mask, acc[k], product);
  }
  // lane j += lane j + width for width 32, 16, 8, 4, 2, 1.
  const __m512 v32 = _mm512_add_ps(acc[0], acc[2]);
  const __m512 v32b = _mm512_add_ps(acc[1], acc[3]);
  const __m512 v16 = _mm512_add_ps(v32, v32b);
  const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(v16), _mm512_extractf32x8_ps(v16, 1));
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  const __m128 v1 = _mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1));
  return _mm_cvtss_f32(v1);
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
