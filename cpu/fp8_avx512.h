// FP8 E4M3 decode shared by the AVX-512 kernels (include only from *_avx512.cpp / *_amx.cpp,
// which are compiled with AVX-512 flags).
//
// A code's bits moved into an fp16 lane (sign to bit 15, the 7 magnitude bits to 13..7) are
// exactly the E4M3 value / 256, subnormals included, and vcvtph2ps widens exactly; callers keep
// the ×256 in their scale. 64 codes: two ymm loads, 5 integer ops on each half, 4 conversions
// straight from the halves. The 4 vectors hold codes {0,2,…,30}, {32,…,62}, {1,…,31}, {33,…,63}
// of the 64 (even bytes via a shift left, odd bytes in place). The integer part runs on ymm
// halves, not on one zmm and two extracts: on Zen 4 (512-bit ops on 2 × 256-bit pipes) the step
// streams 21.0 against 18.8 GB/s per core, same values (bench/RESULTS.md, stop 21).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace hetmoe::cpu::kernels {

inline void decode_fp8_64(const uint8_t* codes, __m512& w0, __m512& w1, __m512& w2, __m512& w3) {
  const __m256i keep = _mm256_set1_epi16(int16_t(0xBF80));  // sign + 7 magnitude bits of the fp16
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32));
  w0 = _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(lo, 8), 1), keep));
  w1 = _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(hi, 8), 1), keep));
  w2 = _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(lo, 1), keep));
  w3 = _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(hi, 1), keep));
}

}  // namespace hetmoe::cpu::kernels
