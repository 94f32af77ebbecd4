// The fixed summation tree of cpu::dot's 64 lane sums (cpu/ops.h), shared by every AVX-512
// kernel that must give dot's bits (include only from *_avx512.cpp, compiled with AVX-512 flags).
#pragma once

#include <immintrin.h>

namespace hetmoe::cpu::kernels {

// lanes[k] holds lanes 16k … 16k + 15; lane j += lane j + width for width 32, 16, 8, 4, 2, 1.
inline float sum_64_lanes(const __m512 lanes[4]) {
  const __m512 v16 = _mm512_add_ps(_mm512_add_ps(lanes[0], lanes[2]), _mm512_add_ps(lanes[1], lanes[3]));
  const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(v16), _mm512_extractf32x8_ps(v16, 1));
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

}  // namespace hetmoe::cpu::kernels
