// AVX-512 silu and activation quantisation: the same IEEE operations as cpu/activation.cpp's
// scalar definitions, so the results are bitwise equal. Compiled with its own flags.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "cpu/activation.h"
#include "cpu/packed_matrix.h"

namespace hetmoe::cpu::kernels {
namespace {

inline __m512 exp_approx16(__m512 x) {
  // _mm512_min_ps(a, b) / _mm512_max_ps(a, b) return b when either is NaN, like min_sse/max_sse.
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3f)), _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(e, _mm512_castsi512_ps(bits));
}

}  // namespace

void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(mask, up + i);
    const __m512 minus_g =
        _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32(INT32_MIN)));
    const __m512 e = exp_approx16(minus_g);
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(s, u));
  }
}

bool quantize_activation_group_avx512(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum) {
  __m512 values[kGroupCols / 16];
  __m512 amax = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (int64_t c = 0; c < kGroupCols / 16; ++c) {
    const int64_t left = n - 16 * c;
    const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF)
                           : left > 0 ? __mmask16((1u << left) - 1)
                                      : __mmask16(0);
    values[c] = _mm512_maskz_loadu_ps(mask, x + 16 * c);
    const __m512i exponent = _mm512_and_si512(_mm512_castps_si512(values[c]), _mm512_set1_epi32(0x7F800000));
    bad |= _mm512_cmpeq_epi32_mask(exponent, _mm512_set1_epi32(0x7F800000));  // NaN or Inf
    amax = _mm512_max_ps(amax, _mm512_abs_ps(values[c]));
  }
  if (bad) return false;
  const float top = _mm512_reduce_max_ps(amax);
  if (top == 0.0f) {
    std::fill(q, q + kGroupCols, int8_t(0));
    *scale = 0.0f;
    *sum = 0;
    return true;
  }
  const __m512 inverse = _mm512_set1_ps(127.0f / top);
  __m512i total = _mm512_setzero_si512();
  for (int64_t c = 0; c < kGroupCols / 16; ++c) {
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(values[c], inverse));  // round to nearest even
    v = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
    total = _mm512_add_epi32(total, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * c), _mm512_cvtepi32_epi8(v));
  }
  *scale = top / 127.0f;
  *sum = _mm512_reduce_add_epi32(total);
  return true;
}

}  // namespace hetmoe::cpu::kernels
