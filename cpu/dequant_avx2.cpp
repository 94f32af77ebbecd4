// AVX2 FP8 E4M3 decode (same bit trick as the AVX-512 path, 8 lanes at a time).
#include <immintrin.h>

#include "cpu/dequant.h"

namespace hetmoe::cpu::kernels {
namespace {

inline __m256 decode8(__m128i bytes) {
  const __m256i codes = _mm256_cvtepu8_epi32(bytes);
  const __m256i magnitude = _mm256_and_si256(codes, _mm256_set1_epi32(0x7F));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(codes, _mm256_set1_epi32(0x80)), 24);
  const __m256 normal =
      _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(magnitude, 20), _mm256_set1_epi32(120 << 23)));
  const __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(magnitude), _mm256_set1_ps(1.0f / 512.0f));
  const __m256 is_subnormal = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), magnitude));
  __m256 value = _mm256_blendv_ps(normal, subnormal, is_subnormal);
  const __m256 is_nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7F)));
  value = _mm256_blendv_ps(value, _mm256_set1_ps(__builtin_nanf("")), is_nan);
  return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(value), sign));
}

}  // namespace

void dequant_fp8_row_avx2(const uint8_t* codes, const float* scales, int64_t cols, int64_t block,
                          float* out) {
  for (int64_t start = 0; start < cols; start += block) {
    const int64_t end = start + block < cols ? start + block : cols;
    const float scale = scales[start / block];
    const __m256 scale8 = _mm256_set1_ps(scale);
    int64_t j = start;
    for (; j + 8 <= end; j += 8) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + j));
      _mm256_storeu_ps(out + j, _mm256_mul_ps(decode8(bytes), scale8));
    }
    dequant_fp8_row_scalar(codes + j, &scale, end - j, block, out + j);  // tail within one block
  }
}

}  // namespace hetmoe::cpu::kernels
