// The AVX2 instruction loops of the limits (limits.h), compiled with -mavx2 -mfma
// (bench/CMakeLists.txt) and only run when cpu_features() reports AVX2 + FMA.
#include <immintrin.h>

#include <cstdint>

#include "bench/kernels/limits.h"
#include "cpu/cpu_features.h"

namespace hetmoe::bench {
namespace {

float sum8(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

}  // namespace

// 12 independent chains hide the instruction latency (4-5 cycles, 2 ports).
float fma_chains_avx2(long repeats) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += sum8(acc[i]);
  return sum;
}

// vpmaddubsw (32 u8 × s8 products summed in pairs into s16) with the vpaddw that accumulates
// it, as the AVX2 INT8/INT4 kernels use them (cpu/packed_gemm_avx2.cpp; their vpmaddwd widening
// runs once per 1–8 of these and is not counted as work).
int maddubs_chains_avx2(long repeats) {
  __m256i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_setzero_si256();
  __m256i a = _mm256_set1_epi8(3);
  const __m256i b = _mm256_set1_epi8(-2);
  for (long n = 0; n < repeats; ++n) {
    asm volatile("" : "+x"(a));  // a "changes": the products cannot be hoisted out of the loop
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_add_epi16(acc[i], _mm256_maddubs_epi16(a, b));
  }
  alignas(32) int16_t lanes[16];
  int sum = 0;
  for (int i = 0; i < 12; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[i]);
    for (int lane : lanes) sum += lane;
  }
  return sum;
}

// The same 4 streams and prefetch distance as read_sum_avx512.
uint64_t read_sum_avx2(const uint8_t* data, uint64_t bytes) {
  const uint64_t quarter = bytes / 4 / 64 * 64;
  const uint64_t ahead = uint64_t(cpu::stream_prefetch_bytes());
  const uint8_t* s[4] = {data, data + quarter, data + 2 * quarter, data + 3 * quarter};
  __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  for (uint64_t i = 0; i < quarter; i += 64)
    for (int k = 0; k < 4; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(s[k] + i + ahead), _MM_HINT_T0);
      const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(s[k] + i));
      const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(s[k] + i + 32));
      acc[k] = _mm256_add_epi64(acc[k], _mm256_add_epi64(lo, hi));
    }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3])));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace hetmoe::bench
