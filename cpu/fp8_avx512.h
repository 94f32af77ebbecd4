// FP8 E4M3 decode shared by the AVX-512 kernels (include only from *_avx512.cpp / *_amx.cpp,
// which are compiled with AVX-512 flags).
//
// Packed FP8 (decode_fp8_quad): 64 bytes hold 16 rows × 4 k, row r's codes in 32-bit lane r
// (cpu/packed_matrix.h). Shifted within the lane to `sign | magnitude << 20`, a code's bits are
// an fp32 equal to its E4M3 value × 2^-120 exactly (exponent-0 codes as fp32 denormals): no
// conversion instruction. Multiplied by x · 2^112 (scale_fp8_x) each product is the packed
// numerics' (value / 256) · x as a real number, so the FMA rounds it the same, bit for bit, as
// long as x · 2^112 is finite (|x| < 2^16; a group with a larger or non-finite x multiplies the
// weights by 2^112 instead, exact, and uses x as is). On Zen 4 the L2-resident decode streams
// 23.5–24.1 against 19.4–19.9 GB/s per core with the fp16 form below on the former (even/odd)
// packed layout, whose four conversions bounded it (docs/KERNELS.md).
//
// Row-major FP8 (decode_fp8_64, the plain linear over checkpoint rows): a code's bits moved
// into an fp16 lane (sign to bit 15, the 7 magnitude bits to 13..7) are exactly the E4M3 value / 256, subnormals included, and vcvtph2ps widens exactly; callers keep
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

// One packed 64-byte quad -> w[c] = the 16 rows' codes of k + c, as value × 2^-120. On 64
// consecutive codes of one row (the plain linear) lane l of w[c] is column 4l + c.
inline void decode_fp8_quad(const uint8_t* quad, __m512 w[4]) {
  const __m512i keep = _mm512_set1_epi32(int32_t(0x87F00000u));  // sign + 7 magnitude bits
  const __m512i v = _mm512_loadu_si512(quad);  // the plain linear's rows need not be aligned
  w[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(_mm512_slli_epi32(v, 24), 4), keep));
  w[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(_mm512_slli_epi32(v, 16), 4), keep));
  w[2] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(_mm512_slli_epi32(v, 8), 4), keep));
  w[3] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(v, 4), keep));
}

inline constexpr float kFp8XScale = 0x1p112f;  // x · 2^112 against weights × 2^-120

// out[0..128) = x · 2^112; true when every |x| < 2^16 (then each product is exact as above).
inline bool scale_fp8_x(const float* x, float* out) {
  const __m512 limit = _mm512_set1_ps(65536.0f), scale = _mm512_set1_ps(kFp8XScale);
  __mmask16 ok = 0xFFFF;
  for (int k = 0; k < 128; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(v), limit, _CMP_LT_OQ);
    _mm512_store_ps(out + k, _mm512_mul_ps(v, scale));
  }
  return ok == 0xFFFF;
}

}  // namespace hetmoe::cpu::kernels
