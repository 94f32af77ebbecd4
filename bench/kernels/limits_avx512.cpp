// The AVX-512 instruction loops of the limits (limits.h), compiled with AVX-512 flags
// (bench/CMakeLists.txt) and only run when cpu_features() has the instructions.
#include <immintrin.h>

#include <cstdint>

#include "bench/kernels/limits.h"
#include "cpu/cpu_features.h"

namespace hetmoe::bench {

// 12 independent chains hide the instruction latency (4-5 cycles, 2 ports).

float fma_chains_avx512(long repeats) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  return sum;
}

float bf16_chains_avx512(long repeats) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a80);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  return sum;
}

int vnni_chains_avx512(long repeats) {
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_si512();
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long n = 0; n < repeats; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  int sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_epi32(acc[i]);
  return sum;
}

// 4 interleaved sequential streams (like the decode kernels' 4 panels) with the kernels' software
// prefetch distance (cpu::stream_prefetch_bytes), so the limit is what a streaming kernel could reach.
uint64_t read_sum_avx512(const uint8_t* data, uint64_t bytes) {
  const uint64_t quarter = bytes / 4 / 64 * 64;
  const uint64_t ahead = uint64_t(cpu::stream_prefetch_bytes());
  const uint8_t* s0 = data;
  const uint8_t* s1 = data + quarter;
  const uint8_t* s2 = data + 2 * quarter;
  const uint8_t* s3 = data + 3 * quarter;
  __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (uint64_t i = 0; i < quarter; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(s0 + i + ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s1 + i + ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s2 + i + ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s3 + i + ahead), _MM_HINT_T0);
    acc0 = _mm512_add_epi64(acc0, _mm512_load_si512(s0 + i));
    acc1 = _mm512_add_epi64(acc1, _mm512_load_si512(s1 + i));
    acc2 = _mm512_add_epi64(acc2, _mm512_load_si512(s2 + i));
    acc3 = _mm512_add_epi64(acc3, _mm512_load_si512(s3 + i));
  }
  return uint64_t(
      _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(acc0, acc1), _mm512_add_epi64(acc2, acc3))));
}

}  // namespace hetmoe::bench
