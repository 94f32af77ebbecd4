// AVX2 dot and axpy: the operations of cpu/ops.h in 8-wide vectors, same bits as the portable
// path (64 dot lanes = 8 ymm chains, multiply then add, never fused). Compiled with its own flags,
// called only when cpu_features() says so.
#include <immintrin.h>

#include <algorithm>

#include "cpu/ops.h"

namespace hetmoe::cpu::kernels {
namespace {

// Lanes 8k … 8k + 7 are in lanes[k]; lane j += lane j + width for width 32, 16, 8, 4, 2, 1.
float sum_64_lanes(__m256 lanes[8]) {
  for (int k = 0; k < 4; ++k) lanes[k] = _mm256_add_ps(lanes[k], lanes[k + 4]);
  for (int k = 0; k < 2; ++k) lanes[k] = _mm256_add_ps(lanes[k], lanes[k + 2]);
  const __m256 v8 = _mm256_add_ps(lanes[0], lanes[1]);
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

// All-ones in the first `count` (0 … 8) of 8 lanes.
__m256i first_lanes(int64_t count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::clamp<int64_t>(count, 0, 8))), index);
}

}  // namespace

// Eight named-by-index chains: GCC keeps a fully unrolled __m256[8] in registers (the loops have
// constant trip counts), and x's loads come from L1 in the attention's calls.
float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 8; ++k)
      acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(b + i + 8 * k)));
  // The tail (< 64 elements): lane j takes element i + j only, the other lanes keep their bits
  // (a blend, not an added zero, which would turn a -0 lane into +0).
  for (int k = 0; k < 8 && i + 8 * k < n; ++k) {
    const __m256i mask = first_lanes(n - i - 8 * k);
    const __m256 product = _mm256_mul_ps(_mm256_maskload_ps(a + i + 8 * k, mask), _mm256_maskload_ps(b + i + 8 * k, mask));
    acc[k] = _mm256_blendv_ps(acc[k], _mm256_add_ps(acc[k], product), _mm256_castsi256_ps(mask));
  }
  return sum_64_lanes(acc);
}

void dot_rows_avx2(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out) {
  for (int64_t r = 0; r < count; ++r) out[r] = dot_avx2(x, rows + r * stride, n);
}

// y in chunks of 64 held in 8 registers while every row is added in order.
void axpy_rows_avx2(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n) {
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    __m256 acc[8];
    __m256i mask[8];
    for (int k = 0; k < 8; ++k) {
      mask[k] = first_lanes(n - j0 - 8 * k);
      acc[k] = _mm256_maskload_ps(y + j0 + 8 * k, mask[k]);
    }
    if (j0 + 64 <= n) {
      for (int64_t r = 0; r < count; ++r) {
        const __m256 a = _mm256_set1_ps(alpha[r]);
        const float* row = rows + r * stride + j0;
        for (int k = 0; k < 8; ++k) acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(a, _mm256_loadu_ps(row + 8 * k)));
      }
    } else {
      for (int64_t r = 0; r < count; ++r) {
        const __m256 a = _mm256_set1_ps(alpha[r]);
        const float* row = rows + r * stride + j0;
        for (int k = 0; k < 8; ++k)
          acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(a, _mm256_maskload_ps(row + 8 * k, mask[k])));
      }
    }
    for (int k = 0; k < 8; ++k) _mm256_maskstore_ps(y + j0 + 8 * k, mask[k], acc[k]);
  }
}

void axpy_avx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(a, _mm256_loadu_ps(x + i))));
  for (; i < n; ++i) y[i] = y[i] + alpha * x[i];
}

}  // namespace hetmoe::cpu::kernels
