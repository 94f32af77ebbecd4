// FP8 E4M3 decode shared by the AVX-512 kernels (include only from *_avx512.cpp / *_amx.cpp,
// which are compiled with AVX-512 flags).
//
// A code's bits moved into an fp16 lane (sign to bit 15, the 7 magnitude bits to 13..7) are
// exactly the E4M3 value / 256, subnormals included, and vcvtph2ps widens exactly; callers keep
// the ×256 in their scale. 64 codes: 5 integer ops, 2 extracts, 4 conversions. The 4 vectors hold
// codes {0,2,…,30}, {32,…,62}, {1,…,31}, {33,…,63} of the 64 (even bytes via a shift left, odd
// bytes in place).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace hetmoe::cpu::kernels {

inline void decode_fp8_64(const uint8_t* codes, __m512& w0, __m512& w1, __m512& w2, __m512& w3) {
  const __m512i v = _mm512_loadu_si512(codes);
  const __m512i keep = _mm512_set1_epi16(int16_t(0xBF80));  // sign + 7 magnitude bits of the fp16
  const __m512i odd = _mm512_and_si512(_mm512_srai_epi16(v, 1), keep);
  const __m512i even = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(v, 8), 1), keep);
  w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(even));
  w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(even, 1));
  w2 = _mm512_cvtph_ps(_mm512_castsi512_si256(odd));
  w3 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(odd, 1));
}

}  // namespace hetmoe::cpu::kernels
