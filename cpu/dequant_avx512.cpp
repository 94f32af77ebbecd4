// AVX-512 FP8 E4M3 decode: compiled with -mavx512f -mavx512bw -mavx512vl, run only when
// cpu_features() says so.
#include <immintrin.h>

#include "cpu/dequant.h"

namespace hetmoe::cpu::kernels {
namespace {

// 16 FP8 codes -> 16 floats without a table. Normal codes: move the 7 magnitude bits to
// float bit 20 (exponent field gets e, mantissa gets m) and rebias the exponent by adding
// 120 << 23. Subnormal codes (e == 0) are m * 2^-9 exactly, done in integer->float. 0x7F
// magnitude is NaN.
inline __m512 decode16(__m128i bytes) {
  const __m512i codes = _mm512_cvtepu8_epi32(bytes);
  const __m512i magnitude = _mm512_and_si512(codes, _mm512_set1_epi32(0x7F));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(codes, _mm512_set1_epi32(0x80)), 24);
  __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(magnitude, 20), _mm512_set1_epi32(120 << 23));
  const __m512 subnormal = _mm512_mul_ps(_mm512_cvtepi32_ps(magnitude), _mm512_set1_ps(1.0f / 512.0f));
  __m512 value = _mm512_castsi512_ps(normal);
  const __mmask16 is_subnormal = _mm512_cmplt_epi32_mask(magnitude, _mm512_set1_epi32(8));
  value = _mm512_mask_mov_ps(value, is_subnormal, subnormal);
  const __mmask16 is_nan = _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7F));
  value = _mm512_mask_mov_ps(value, is_nan, _mm512_set1_ps(__builtin_nanf("")));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(value), sign));
}

}  // namespace

void dequant_fp8_row_avx512(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                            float* out) {
  for (int64_t start = 0; start < cols; start += block) {
    const int64_t end = start + block < cols ? start + block : cols;
    const __m512 scale = _mm512_set1_ps(scales[start / block]);
    int64_t j = start;
    for (; j + 16 <= end; j += 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j));
      _mm512_storeu_ps(out + j, _mm512_mul_ps(decode16(bytes), scale));
    }
    if (j < end) {  // masked tail: never reads past the row
      const __mmask16 mask = __mmask16((1u << (end - j)) - 1);
      const __m128i bytes = _mm_maskz_loadu_epi8(mask, codes + j);
      _mm512_mask_storeu_ps(out + j, mask, _mm512_mul_ps(decode16(bytes), scale));
    }
  }
}

}  // namespace hetmoe::cpu::kernels
