// AVX2 plain linear on the checkpoint's row-major weights (FP8 with 128×128 block scales, BF16,
// F32): each 128-column block of a weight row is decoded once into an L1 buffer and FMA'd with
// every token of the tile, so the row is read once per tile of tokens and never written out.
// Compiled with -mavx2 -mfma -mf16c, called only when cpu_features() says so.
//
// Per (row, token) the operations are fixed, whatever the token count or the thread count: for
// each column block, four 8-lane chains acc[j mod 4] = fma(w'_j, x_j, acc[j mod 4]) over its
// 8-column chunks j (the block padded with zeros to a multiple of 8), blk = (acc0 + acc1) +
// (acc2 + acc3), total = fma(blk, s, total) with s = 256·scale for FP8 (w' = E4M3 value / 256,
// exactly, by the fp16 trick of linear_avx512.cpp) and 1 otherwise; y = the 8 lanes of total
// summed in a fixed tree. So a token's outputs are the same alone or in a batch.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "cpu/linear.h"

namespace hetmoe::cpu::kernels {
namespace {

constexpr int64_t kTokenTile = 8;    // tokens per pass over a row range (their x stay in L2)
constexpr int64_t kMaxBlock = 1024;  // widest column block decoded at once
constexpr int64_t kRowGrain = 16;    // rows per task

int64_t round8(int64_t n) { return (n + 7) & ~int64_t(7); }

// 16 E4M3 codes -> the fp16 bits of value / 256: code << 7 with the sign moved from bit 14 to 15.
inline __m256i fp8_as_half(__m128i codes) {
  const __m256i shifted = _mm256_slli_epi16(_mm256_cvtepu8_epi16(codes), 7);
  return _mm256_add_epi16(shifted, _mm256_and_si256(shifted, _mm256_set1_epi16(0x4000)));
}

// 16 E4M3 codes -> 16 floats (value / 256) at out; NaN codes (S.1111.111) ORed into `nan`.
inline void decode_fp8_16(__m128i codes, float* out, __m128i& nan) {
  const __m128i low7 = _mm_set1_epi8(0x7F);
  nan = _mm_or_si128(nan, _mm_cmpeq_epi8(_mm_and_si128(codes, low7), low7));
  const __m256i half = fp8_as_half(codes);
  _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm256_castsi256_si128(half)));
  _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(half, 1)));
}

// Columns [k0, k0 + n) of `row` as w' into out, zero-padded to round8(n) floats (out has room
// for round8(n) + 16).
template <WeightFormat F>
void decode_block(const void* row, int64_t k0, int64_t n, float* out, __m128i& nan) {
  if constexpr (F == WeightFormat::kFP8Block) {
    const uint8_t* p = static_cast<const uint8_t*>(row) + k0;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) decode_fp8_16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k)), out + k, nan);
    if (k < n) {
      alignas(16) uint8_t tail[16] = {};  // zero codes decode to +0
      std::memcpy(tail, p + k, size_t(n - k));
      decode_fp8_16(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)), out + k, nan);
    }
  } else if constexpr (F == WeightFormat::kBF16) {
    const uint16_t* p = static_cast<const uint16_t*>(row) + k0;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
      _mm256_storeu_ps(out + k, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16)));
    }
    for (; k < n; ++k) {
      const uint32_t bits = uint32_t(p[k]) << 16;
      std::memcpy(out + k, &bits, 4);
    }
  } else {
    std::memcpy(out, static_cast<const float*>(row) + k0, size_t(n) * 4);
  }
  for (int64_t k = n; k < round8(n); ++k) out[k] = 0.0f;
}

// Σ of the 8 lanes in a fixed tree.
inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// blk of one (row, block, token): `chunks` 8-wide chunks of w' and x in four fixed chains,
// chunk j into chain j mod 4 (named registers: an indexed array stayed on the stack).
inline __m256 block_dot(const float* w, const float* x, int64_t chunks) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t j = 0;
  for (; j + 4 <= chunks; j += 4) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j), _mm256_loadu_ps(x + 8 * j), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j + 8), _mm256_loadu_ps(x + 8 * j + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j + 16), _mm256_loadu_ps(x + 8 * j + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j + 24), _mm256_loadu_ps(x + 8 * j + 24), a3);
  }
  if (j < chunks) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j), _mm256_loadu_ps(x + 8 * j), a0);
  if (j + 1 < chunks) a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j + 8), _mm256_loadu_ps(x + 8 * j + 8), a1);
  if (j + 2 < chunks) a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * j + 16), _mm256_loadu_ps(x + 8 * j + 16), a2);
  return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

// block_dot for two tokens at once: the same chains per token (so the same bits as alone), with
// each w' chunk loaded once and eight independent FMA chains in flight.
inline void block_dot2(const float* w, const float* x0, const float* x1, int64_t chunks, __m256* blk0,
                       __m256* blk1) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  const auto step = [&](int64_t k, __m256& a, __m256& b) {
    const __m256 wv = _mm256_loadu_ps(w + k);
    a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + k), a);
    b = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + k), b);
  };
  int64_t j = 0;
  for (; j + 4 <= chunks; j += 4) {
    step(8 * j, a0, b0);
    step(8 * j + 8, a1, b1);
    step(8 * j + 16, a2, b2);
    step(8 * j + 24, a3, b3);
  }
  if (j < chunks) step(8 * j, a0, b0);
  if (j + 1 < chunks) step(8 * j + 8, a1, b1);
  if (j + 2 < chunks) step(8 * j + 16, a2, b2);
  *blk0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  *blk1 = _mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3));
}

// block_dot of one token over n (a multiple of 32) FP8 codes decoded in registers instead of
// through decode_block's buffer: the same w' values, chains and order, so the same bits, without
// the store and reload of every decoded vector (a decode step is one token). NaN codes raise
// their byte's max of (code & 0x7F) to 0x7F, checked once per block.
inline __m256 block_dot_fp8(const uint8_t* p, const float* x, int64_t n, __m128i& nan) {
  const __m128i low7 = _mm_set1_epi8(0x7F);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  __m128i top = _mm_setzero_si128();
  for (int64_t k = 0; k < n; k += 32) {
    const __m128i c0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
    const __m128i c1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k + 16));
    top = _mm_max_epu8(top, _mm_max_epu8(_mm_and_si128(c0, low7), _mm_and_si128(c1, low7)));
    const __m256i h0 = fp8_as_half(c0), h1 = fp8_as_half(c1);
    a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h0)), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1)), _mm256_loadu_ps(x + k + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h1)), _mm256_loadu_ps(x + k + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1)), _mm256_loadu_ps(x + k + 24), a3);
  }
  nan = _mm_or_si128(nan, _mm_cmpeq_epi8(top, low7));
  return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

struct Shape {
  int64_t block = 128;        // column block (FP8: the scale block)
  int64_t blocks = 0;         // per row (FP8: also the scale blocks per scale row)
  int64_t padded_cols = 0;    // a token's x with every block padded to a multiple of 8
};

Shape shape_of(const WeightMatrix& w) {
  Shape s;
  s.block = w.format == WeightFormat::kFP8Block ? w.block : 128;
  s.blocks = (w.cols + s.block - 1) / s.block;
  s.padded_cols = (s.blocks - 1) * round8(s.block) + round8(w.cols - (s.blocks - 1) * s.block);
  return s;
}

// Rows [r0, r1) for tokens [t0, t0 + nt) of the padded x (padded_cols floats per token).
template <WeightFormat F>
void rows(const WeightMatrix& w, const Shape& s, const float* xp, int64_t t0, int64_t nt, int64_t r0, int64_t r1,
          float* y) {
  alignas(32) float buffer[kMaxBlock + 16];
  const int64_t element = F == WeightFormat::kFP8Block ? 1 : F == WeightFormat::kBF16 ? 2 : 4;
  for (int64_t r = r0; r < r1; ++r) {
    const void* row = static_cast<const uint8_t*>(w.data) + r * w.cols * element;
    __m256 total[kTokenTile];
    for (int64_t t = 0; t < nt; ++t) total[t] = _mm256_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    int64_t xk = 0;  // the block's first column in the padded x
    for (int64_t b = 0; b < s.blocks; ++b) {
      const int64_t k0 = b * s.block, n = std::min(s.block, w.cols - k0);
      __m256 scale = _mm256_set1_ps(1.0f);
      if constexpr (F == WeightFormat::kFP8Block)
        scale = _mm256_set1_ps(256.0f * w.scale_inv[(r / s.block) * s.blocks + b]);
      const float* x = xp + t0 * s.padded_cols + xk;
      if constexpr (F == WeightFormat::kFP8Block) {
        if (nt == 1 && n % 32 == 0) {
          total[0] = _mm256_fmadd_ps(block_dot_fp8(static_cast<const uint8_t*>(row) + k0, x, n, nan), scale, total[0]);
          xk += n;
          continue;
        }
      }
      decode_block<F>(row, k0, n, buffer, nan);
      const int64_t chunks = round8(n) / 8;
      int64_t t = 0;
      for (; t + 2 <= nt; t += 2) {
        __m256 blk0, blk1;
        block_dot2(buffer, x + t * s.padded_cols, x + (t + 1) * s.padded_cols, chunks, &blk0, &blk1);
        total[t] = _mm256_fmadd_ps(blk0, scale, total[t]);
        total[t + 1] = _mm256_fmadd_ps(blk1, scale, total[t + 1]);
      }
      if (t < nt) total[t] = _mm256_fmadd_ps(block_dot(buffer, x + t * s.padded_cols, chunks), scale, total[t]);
      xk += round8(n);
    }
    if (_mm_movemask_epi8(nan) != 0) throw_fp8_nan(w, r);
    for (int64_t t = 0; t < nt; ++t) y[(t0 + t) * w.rows + r] = sum8(total[t]);
  }
}

// x [tokens, cols] with each column block zero-padded to a multiple of 8 (a copy only when some
// block is not already one).
const float* padded_x(const WeightMatrix& w, const Shape& s, const float* x, int64_t tokens,
                      std::vector<float>& storage) {
  if (s.padded_cols == w.cols) return x;
  storage.assign(size_t(tokens * s.padded_cols), 0.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t b = 0, xk = 0; b < s.blocks; ++b) {
      const int64_t k0 = b * s.block, n = std::min(s.block, w.cols - k0);
      std::memcpy(&storage[size_t(t * s.padded_cols + xk)], x + t * w.cols + k0, size_t(n) * 4);
      xk += round8(n);
    }
  return storage.data();
}

template <WeightFormat F>
void run_all(const WeightMatrix& w, const float* x, int64_t tokens, float* y) {
  const Shape s = shape_of(w);
  std::vector<float> storage;
  const float* xp = padded_x(w, s, x, tokens, storage);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.rows, kRowGrain), [&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t t0 = 0; t0 < tokens; t0 += kTokenTile)
      rows<F>(w, s, xp, t0, std::min(kTokenTile, tokens - t0), range.begin(), range.end(), y);
  });
}

}  // namespace

bool linear_fits_avx2(const WeightMatrix& w) {
  return w.format != WeightFormat::kFP8Block || (w.block >= 1 && w.block <= kMaxBlock);
}

void linear_avx2(const WeightMatrix& w, const float* x, int64_t tokens, float* y) {
  switch (w.format) {
    case WeightFormat::kFP8Block:
      return run_all<WeightFormat::kFP8Block>(w, x, tokens, y);
    case WeightFormat::kBF16:
      return run_all<WeightFormat::kBF16>(w, x, tokens, y);
    case WeightFormat::kF32:
      return run_all<WeightFormat::kF32>(w, x, tokens, y);
  }
}

}  // namespace hetmoe::cpu::kernels
