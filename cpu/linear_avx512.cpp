// AVX-512 plain linear on the checkpoint's row-major weights (FP8 with 128×128 block scales,
// BF16, F32): decode 16 weights in registers and FMA them with every token's x, so the weight
// row is read once per call and never written out. Compiled with its own flags, called only
// when cpu_features() says so.
//
// Per (row, token) the operations are fixed, whatever the token count: for each 128-column
// block, blk = Σ fma(w', x, blk) over 16-wide chunks (w' = FP8 value / 256, or the BF16/F32
// value), total = fma(blk, 256·scale (or 1), total); y = the 16 lanes of total summed in
// _mm512_reduce_add_ps's fixed tree. So a token's result does not depend on the batch or the
// thread count. FP8 rows go 64 codes at a time in the quad order (lane l of vector c = column
// 4l + c; decode_fp8_quad, cpu/fp8_avx512.h): the decode forms each product as
// (value · 2^-120)·(x · 2^112), the prefill tile as (value / 256)·x — the same real number, so
// the same bits.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "cpu/fp8_avx512.h"
#include "cpu/lanes_avx512.h"
#include "cpu/linear.h"

namespace hetmoe::cpu::kernels {
namespace {

// E4M3 NaN codes (0x7F, 0xFF) among 64 / up to 16 codes: the decode below maps them to finite
// values, so rows OR these masks and a row with any is refused (throw_fp8_nan) — one test per
// row and call, ~3 ops per 64 codes.
inline __mmask64 fp8_nan_64(const uint8_t* p) {
  const __m512i low7 = _mm512_and_si512(_mm512_loadu_si512(p), _mm512_set1_epi8(0x7F));
  return _mm512_cmpeq_epi8_mask(low7, _mm512_set1_epi8(0x7F));
}
inline __mmask64 fp8_nan_16(const uint8_t* p, __mmask16 mask) {
  const __m128i low7 = _mm_and_si128(_mm_maskz_loadu_epi8(mask, p), _mm_set1_epi8(0x7F));
  return _mm_mask_cmpeq_epi8_mask(mask, low7, _mm_set1_epi8(0x7F));
}

template <WeightFormat F>
inline __m512 load_weights(const void* row, int64_t k, __mmask16 mask) {
  if constexpr (F == WeightFormat::kFP8Block) {
    const __m128i codes = _mm_maskz_loadu_epi8(mask, static_cast<const uint8_t*>(row) + k);
    // fp16 bits = code << 7 with the sign moved from bit 14 to bit 15: E4M3 value / 256 exactly.
    const __m256i shifted = _mm256_slli_epi16(_mm256_cvtepu8_epi16(codes), 7);
    const __m256i half = _mm256_add_epi16(shifted, _mm256_and_si256(shifted, _mm256_set1_epi16(0x4000)));
    return _mm512_cvtph_ps(half);
  } else if constexpr (F == WeightFormat::kBF16) {
    const __m256i bits = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(row) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  } else {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(row) + k);
  }
}

// The absorbed attention's FP8 rows (axpy/dot_fp8_rows below) are decoded 64 codes at a time by
// decode_fp8_64 (cpu/fp8_avx512.h: the fp16 form, value / 256). Its vectors hold the columns in an
// even/odd order, so x (or y) is permuted the same way (permute_x_fp8, to/from_chunk_order).
// The linear's own FP8 rows use the quad order instead (quad_x_fp8 below).

// Natural 64 floats from 4 vectors in decode_fp8_64's order (the inverse of permute_x_fp8).
inline void from_chunk_order(const __m512 v[4], __m512 out[4]) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  out[0] = _mm512_permutex2var_ps(v[0], lo, v[2]);
  out[1] = _mm512_permutex2var_ps(v[0], hi, v[2]);
  out[2] = _mm512_permutex2var_ps(v[1], lo, v[3]);
  out[3] = _mm512_permutex2var_ps(v[1], hi, v[3]);
}
inline void to_chunk_order(const __m512 v[4], __m512 out[4]) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  out[0] = _mm512_permutex2var_ps(v[0], even, v[1]);
  out[1] = _mm512_permutex2var_ps(v[2], even, v[3]);
  out[2] = _mm512_permutex2var_ps(v[0], odd, v[1]);
  out[3] = _mm512_permutex2var_ps(v[2], odd, v[3]);
}

// One token's x in the FP8 chunk order: each full 64-column chunk of a column block permuted as
// decode_fp8_64's vectors, the block's last < 64 columns in order (they take the 16-wide path).
void permute_x_fp8(const float* x, int64_t cols, int64_t block, float* out) {
  for (int64_t b0 = 0; b0 < cols; b0 += block) {
    const int64_t b1 = std::min(cols, b0 + block);
    int64_t k = b0;
    for (; k + 64 <= b1; k += 64) {
      __m512 natural[4], chunk[4];
      for (int q = 0; q < 4; ++q) natural[q] = _mm512_loadu_ps(x + k + 16 * q);
      to_chunk_order(natural, chunk);
      for (int q = 0; q < 4; ++q) _mm512_storeu_ps(out + k + 16 * q, chunk[q]);
    }
    std::copy(x + k, x + b1, out + k);
  }
}

// One token's x for the FP8 row kernels: each full 64-column chunk of a column block in the quad
// order (out[k + 16c + l] = x[k + 4l + c]), the block's last < 64 columns in order. With `scale`,
// a block's chunks are multiplied by 2^112 when every |x| in them is below 2^16 and scaled[b]
// says so (1), else left as they are (0); the tail is never scaled (the 16-wide path decodes
// value / 256).
void quad_x_fp8(const float* x, int64_t cols, int64_t block, bool scale, float* out, uint8_t* scaled) {
  const __m512i lanes = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
  const __m512 limit = _mm512_set1_ps(65536.0f);
  for (int64_t b0 = 0, b = 0; b0 < cols; b0 += block, ++b) {
    const int64_t b1 = std::min(cols, b0 + block), chunks_end = b0 + (b1 - b0) / 64 * 64;
    __mmask16 ok = 0xFFFF;
    if (scale)
      for (int64_t k = b0; k < chunks_end; k += 16)
        ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + k)), limit, _CMP_LT_OQ);
    const bool exact = scale && ok == 0xFFFF;
    const __m512 factor = _mm512_set1_ps(exact ? kFp8XScale : 1.0f);
    for (int64_t k = b0; k < chunks_end; k += 64)
      for (int c = 0; c < 4; ++c)
        _mm512_storeu_ps(out + k + 16 * c, _mm512_mul_ps(_mm512_i32gather_ps(lanes, x + k + c, 4), factor));
    if (scaled) scaled[b] = exact ? 1 : 0;
    std::copy(x + chunks_end, x + b1, out + chunks_end);
  }
}

// x of `tokens` rows in the FP8 kernels' order into `out`; `scaled` ([tokens][blocks]) as
// quad_x_fp8 sets it, when given (decode), else unscaled (prefill).
void quad_x_rows(const WeightMatrix& w, const float* x, int64_t tokens, float* out, uint8_t* scaled) {
  const int64_t blocks = (w.cols + w.block - 1) / w.block;
  for (int64_t t = 0; t < tokens; ++t)
    quad_x_fp8(x + t * w.cols, w.cols, w.block, scaled != nullptr, out + t * w.cols,
               scaled ? scaled + t * blocks : nullptr);
}

// Each row is a short stream (one row of a 7168-column FP8 matrix is 112 cache lines), too short
// for the hardware prefetcher to ramp up on, so while a group of R rows is decoded the next R rows
// (contiguous after them) are prefetched into L2 at the same column, a whole group ahead.
// Measured on ds3-small FP8 decode: +10–15% tokens/s at 1 and 2 threads (2 KiB ahead within a
// row, as the packed decode does, gained nothing here).
inline void prefetch_l2(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }

// 64 FP8 codes of each of R rows at column k × M tokens into blk (quad order). A token whose
// block x is scaled (x · 2^112, quad_x_fp8) takes the decoded value × 2^-120, the others value /
// 256 (× 2^112 here); kAll: every token is scaled, kNone: none is, kMixed: per token.
enum class Fp8Scaling { kAll, kNone, kMixed };

template <int M, int R, Fp8Scaling S>
inline void fp8_chunk(const uint8_t* const* row, int64_t k, int64_t ahead, const float* x, int64_t t0, int64_t cols,
                      const bool* scaled, __mmask64* nan, __m512 (&blk)[R][M]) {
  for (int i = 0; i < R; ++i) {
    __m512 q[4], unscaled[4];
    prefetch_l2(row[i] + ahead + k);
    decode_fp8_quad(row[i] + k, q);
    if constexpr (S != Fp8Scaling::kAll)
      for (int c = 0; c < 4; ++c) unscaled[c] = _mm512_mul_ps(q[c], _mm512_set1_ps(kFp8XScale));
    nan[i] |= fp8_nan_64(row[i] + k);
    for (int t = 0; t < M; ++t) {
      const float* xk = x + (t0 + t) * cols + k;
      const bool use_scaled = S == Fp8Scaling::kAll || (S == Fp8Scaling::kMixed && scaled[t]);
      for (int c = 0; c < 4; ++c)
        blk[i][t] = _mm512_fmadd_ps(use_scaled ? q[c] : unscaled[c], _mm512_loadu_ps(xk + 16 * c), blk[i][t]);
    }
  }
}

// Rows [r, r + R) × tokens [t0, t0 + M): R·M independent FMA chains hide the FMA latency, one
// decoded weight vector feeds M tokens and one x vector feeds R rows. The operations per
// (row, token) are those of the header comment, whatever R and M.
template <WeightFormat F, int M, int R>
void row_group(const WeightMatrix& w, const float* x, const uint8_t* scaled, int64_t t0, int64_t r, float* y) {
  const int64_t cols = w.cols, block = F == WeightFormat::kFP8Block ? w.block : 128;
  const int64_t element = F == WeightFormat::kFP8Block ? 1 : F == WeightFormat::kBF16 ? 2 : 4;
  const int64_t scale_cols = (cols + block - 1) / block;
  const int64_t ahead = R * cols * element;  // the next group's rows, at the same column
  const uint8_t* row[R];
  for (int i = 0; i < R; ++i) row[i] = static_cast<const uint8_t*>(w.data) + (r + i) * cols * element;
  __m512 total[R][M];
  __mmask64 nan[R];
  for (int i = 0; i < R; ++i) {
    nan[i] = 0;
    for (int t = 0; t < M; ++t) total[i][t] = _mm512_setzero_ps();
  }
  for (int64_t b0 = 0; b0 < cols; b0 += block) {
    const int64_t b1 = std::min(cols, b0 + block);
    __m512 blk[R][M];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < M; ++t) blk[i][t] = _mm512_setzero_ps();
    int64_t k = b0;
    if constexpr (F == WeightFormat::kFP8Block) {
      bool token_scaled[M];
      int count = 0;
      for (int t = 0; t < M; ++t) count += token_scaled[t] = scaled[(t0 + t) * scale_cols + b0 / block] != 0;
      if (count == M) {
        for (; k + 64 <= b1; k += 64) fp8_chunk<M, R, Fp8Scaling::kAll>(row, k, ahead, x, t0, cols, token_scaled, nan, blk);
      } else if (count == 0) {
        for (; k + 64 <= b1; k += 64) fp8_chunk<M, R, Fp8Scaling::kNone>(row, k, ahead, x, t0, cols, token_scaled, nan, blk);
      } else {
        for (; k + 64 <= b1; k += 64) fp8_chunk<M, R, Fp8Scaling::kMixed>(row, k, ahead, x, t0, cols, token_scaled, nan, blk);
      }
    }
    for (; k < b1; k += 16) {
      const __mmask16 mask = b1 - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (b1 - k)) - 1);
      __m512 xv[M];
      for (int t = 0; t < M; ++t) xv[t] = _mm512_maskz_loadu_ps(mask, x + (t0 + t) * cols + k);
      for (int i = 0; i < R; ++i) {
        if (F != WeightFormat::kFP8Block && (k * element) % 64 == 0) prefetch_l2(row[i] + ahead + k * element);
        const __m512 wv = load_weights<F>(row[i], k, mask);
        if constexpr (F == WeightFormat::kFP8Block) nan[i] |= fp8_nan_16(row[i] + k, mask);
        for (int t = 0; t < M; ++t) blk[i][t] = _mm512_fmadd_ps(wv, xv[t], blk[i][t]);
      }
    }
    for (int i = 0; i < R; ++i) {
      float scale = 1.0f;
      if constexpr (F == WeightFormat::kFP8Block)
        scale = w.scale_inv[((r + i) / block) * scale_cols + b0 / block] * 256.0f;
      for (int t = 0; t < M; ++t) total[i][t] = _mm512_fmadd_ps(blk[i][t], _mm512_set1_ps(scale), total[i][t]);
    }
  }
  if constexpr (F == WeightFormat::kFP8Block)
    for (int i = 0; i < R; ++i)
      if (nan[i] != 0) throw_fp8_nan(w, r + i);
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < M; ++t) y[(t0 + t) * w.rows + r + i] = _mm512_reduce_add_ps(total[i][t]);
}

// Rows [row_begin, row_end) for tokens [t0, t0 + M), in groups of R = 8 / M rows.
template <WeightFormat F, int M>
void rows(const WeightMatrix& w, const float* x, const uint8_t* scaled, int64_t t0, int64_t row_begin,
          int64_t row_end, float* y) {
  constexpr int R = M == 1 ? 8 : M == 2 ? 4 : 2;
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) row_group<F, M, R>(w, x, scaled, t0, r, y);
  for (; r < row_end; ++r) row_group<F, M, 1>(w, x, scaled, t0, r, y);
}

// Tiles of 16 rows (at most 16 × 7168 × 4 bytes, L2-resident) run over every token chunk of 4,
// so a decode step or a short batch reads each weight from DRAM once.
template <WeightFormat F>
void run_decode(const WeightMatrix& w, const float* x, const uint8_t* scaled, int64_t tokens, int64_t row_begin,
                int64_t row_end, float* y) {
  constexpr int64_t kRowTile = 16;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowTile) {
    const int64_t r1 = std::min(row_end, r0 + kRowTile);
    for (int64_t t0 = 0; t0 < tokens; t0 += 4) {
      switch (std::min<int64_t>(4, tokens - t0)) {
        case 1:
          rows<F, 1>(w, x, scaled, t0, r0, r1, y);
          break;
        case 2:
          rows<F, 2>(w, x, scaled, t0, r0, r1, y);
          break;
        case 3:
          rows<F, 3>(w, x, scaled, t0, r0, r1, y);
          break;
        default:
          rows<F, 4>(w, x, scaled, t0, r0, r1, y);
          break;
      }
    }
  }
}

// --- prefill: the same per-(row, token) operations as a register-blocked GEMM ------------------
//
// row_group decodes every weight chunk again for each 4-token chunk and keeps 8 chains: ~25% of
// the FMA peak on a prompt. Here up to 64 rows × one column block are decoded once per 96 tokens
// into a tile (with load_weights, so values and zeroed tails are the same), then R = 4 rows ×
// M = 6 tokens of 16-lane chains run over it; each block's sum goes into a per-(row, token) lane
// total in memory with the same fma. Same bits as row_group, so a token never depends on the
// batch. 64 rows per pass over the tokens: with 16, re-reading x (96 tokens × 7168 f32 = 2.75 MB,
// beyond L2) for every 16 rows made the kernel L3-bound.

constexpr int kPrefillRows = 4, kPrefillTokens = 6;
constexpr int64_t kRowBlock = 64;   // rows per pass over the tokens
constexpr int64_t kTokenSpan = 96;  // tokens per pass (lane totals: 64 × 96 × 64 B in L2)

struct PrefillScratch {
  std::vector<float> weights;  // [kRowBlock rows][block, rounded up to 16]
  std::vector<float> totals;   // [kRowBlock rows][kTokenSpan][16 lanes]
};

// `totals` += each block sum × scale (fma); on the first column block the totals start from
// zero in registers (the same fma with a +0 addend, so no pass zeroes the totals in memory).
template <int R, int M>
void tile_gemm(const float* wt, int64_t w_stride, const float* x, int64_t cols, int64_t k0, int64_t k1,
               const float* scale, float* totals) {
  __m512 blk[R][M];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < M; ++t) blk[i][t] = _mm512_setzero_ps();
  for (int64_t k = k0; k < k1; k += 16) {
    const __mmask16 mask = k1 - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k1 - k)) - 1);
    __m512 xv[M];
    for (int t = 0; t < M; ++t) xv[t] = _mm512_maskz_loadu_ps(mask, x + t * cols + k);
    for (int i = 0; i < R; ++i) {
      const __m512 wv = _mm512_load_ps(wt + i * w_stride + (k - k0));
      for (int t = 0; t < M; ++t) blk[i][t] = _mm512_fmadd_ps(wv, xv[t], blk[i][t]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < M; ++t) {
      float* total = totals + (i * kTokenSpan + t) * 16;
      const __m512 sum = k0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(total);
      _mm512_store_ps(total, _mm512_fmadd_ps(blk[i][t], _mm512_set1_ps(scale[i]), sum));
    }
}

// Rows [0, nr) of the tile × M tokens.
template <int M>
void tile_gemm_rows(const float* wt, int64_t w_stride, int64_t nr, const float* x, int64_t cols, int64_t k0,
                    int64_t k1, const float* scale, float* totals) {
  int64_t i = 0;
  for (; i + kPrefillRows <= nr; i += kPrefillRows)
    tile_gemm<kPrefillRows, M>(wt + i * w_stride, w_stride, x, cols, k0, k1, scale + i, totals + i * kTokenSpan * 16);
  for (; i < nr; ++i)
    tile_gemm<1, M>(wt + i * w_stride, w_stride, x, cols, k0, k1, scale + i, totals + i * kTokenSpan * 16);
}

void tile_gemm_block(const float* wt, int64_t w_stride, int64_t nr, const float* x, int64_t cols, int64_t k0,
                     int64_t k1, int64_t tokens, const float* scale, float* totals) {
  int64_t t = 0;
  for (; t + kPrefillTokens <= tokens; t += kPrefillTokens)
    tile_gemm_rows<kPrefillTokens>(wt, w_stride, nr, x + t * cols, cols, k0, k1, scale, totals + t * 16);
  const float* xt = x + t * cols;
  float* tt = totals + t * 16;
  switch (tokens - t) {
    case 1:
      return tile_gemm_rows<1>(wt, w_stride, nr, xt, cols, k0, k1, scale, tt);
    case 2:
      return tile_gemm_rows<2>(wt, w_stride, nr, xt, cols, k0, k1, scale, tt);
    case 3:
      return tile_gemm_rows<3>(wt, w_stride, nr, xt, cols, k0, k1, scale, tt);
    case 4:
      return tile_gemm_rows<4>(wt, w_stride, nr, xt, cols, k0, k1, scale, tt);
    case 5:
      return tile_gemm_rows<5>(wt, w_stride, nr, xt, cols, k0, k1, scale, tt);
    default:
      return;
  }
}

// Rows [row_begin, row_end) of y for `tokens` ≤ kTokenSpan tokens of x (FP8: x already in the
// quad order, unscaled: quad_x_rows).
template <WeightFormat F>
void run_prefill(const WeightMatrix& w, const float* xs, int64_t span, int64_t row_begin, int64_t row_end,
                 float* y) {
  const int64_t cols = w.cols, block = F == WeightFormat::kFP8Block ? w.block : 128;
  const int64_t element = F == WeightFormat::kFP8Block ? 1 : F == WeightFormat::kBF16 ? 2 : 4;
  const int64_t scale_cols = (cols + block - 1) / block;
  const int64_t w_stride = (block + 15) / 16 * 16;
  static thread_local PrefillScratch scratch;
  scratch.weights.resize(size_t(kRowBlock * w_stride + 16));
  scratch.totals.resize(size_t(kRowBlock * kTokenSpan * 16 + 16));
  float* wt = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch.weights.data()) + 63) & ~uintptr_t(63));
  float* totals = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch.totals.data()) + 63) & ~uintptr_t(63));
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowBlock) {
    const int64_t nr = std::min(row_end - r0, kRowBlock);
    float scale[kRowBlock];
    for (int64_t b0 = 0; b0 < cols; b0 += block) {
      const int64_t b1 = std::min(cols, b0 + block);
      for (int64_t i = 0; i < nr; ++i) {
        const void* row = static_cast<const uint8_t*>(w.data) + (r0 + i) * cols * element;
        int64_t k = b0;
        __mmask64 nan = 0;
        if constexpr (F == WeightFormat::kFP8Block)
          for (; k + 64 <= b1; k += 64) {
            __m512 q[4];
            decode_fp8_quad(static_cast<const uint8_t*>(row) + k, q);
            nan |= fp8_nan_64(static_cast<const uint8_t*>(row) + k);
            float* dst = wt + i * w_stride + (k - b0);
            for (int c = 0; c < 4; ++c) _mm512_store_ps(dst + 16 * c, _mm512_mul_ps(q[c], _mm512_set1_ps(kFp8XScale)));
          }
        for (; k < b1; k += 16) {
          const __mmask16 mask = b1 - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (b1 - k)) - 1);
          _mm512_store_ps(wt + i * w_stride + (k - b0), load_weights<F>(row, k, mask));
          if constexpr (F == WeightFormat::kFP8Block) nan |= fp8_nan_16(static_cast<const uint8_t*>(row) + k, mask);
        }
        if (nan != 0) throw_fp8_nan(w, r0 + i);
        scale[i] = 1.0f;
        if constexpr (F == WeightFormat::kFP8Block)
          scale[i] = w.scale_inv[((r0 + i) / block) * scale_cols + b0 / block] * 256.0f;
      }
      tile_gemm_block(wt, w_stride, nr, xs, cols, b0, b1, span, scale, totals);
    }
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t t = 0; t < span; ++t)
        y[t * w.rows + r0 + i] = _mm512_reduce_add_ps(_mm512_load_ps(totals + (i * kTokenSpan + t) * 16));
  }
}

// From this many tokens the prefill GEMM runs (a speed choice only: same bits).
constexpr int64_t kPrefillMinTokens = 8;

// FP8 x is put in the quad order once per call for a decode step (scaled by 2^112 per block where
// it can be), once per 96-token span for a prompt (a whole prompt's copy could be tens of MB),
// shared by every row task; each span is then one parallel pass over the rows (64 rows per task).
template <WeightFormat F>
void run_all(const WeightMatrix& w, const float* x, int64_t tokens, float* y) {
  std::vector<float> permuted;  // not thread_local: a caller inside a TBB task may be re-entered
  std::vector<uint8_t> scaled;
  const int64_t cols = w.cols;
  if (tokens < kPrefillMinTokens) {
    if (F == WeightFormat::kFP8Block) {
      permuted.resize(size_t(tokens * cols));
      scaled.resize(size_t(tokens * ((cols + w.block - 1) / w.block)));
      quad_x_rows(w, x, tokens, permuted.data(), scaled.data());
      x = permuted.data();
    }
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.rows, 64), [&](const tbb::blocked_range<int64_t>& range) {
      run_decode<F>(w, x, scaled.data(), tokens, range.begin(), range.end(), y);
    });
    return;
  }
  for (int64_t s0 = 0; s0 < tokens; s0 += kTokenSpan) {
    const int64_t span = std::min(tokens - s0, kTokenSpan);
    const float* xs = x + s0 * cols;
    if (F == WeightFormat::kFP8Block) {
      permuted.resize(size_t(span * cols));
      float* out = permuted.data();
      tbb::parallel_for(int64_t(0), span, [&](int64_t t) { quad_x_rows(w, xs + t * cols, 1, out + t * cols, nullptr); });
      xs = out;
    }
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.rows, 64), [&](const tbb::blocked_range<int64_t>& range) {
      run_prefill<F>(w, xs, span, range.begin(), range.end(), y + s0 * w.rows);
    });
  }
}

// --- FP8 rows for axpy_weight_rows / dot_weight_rows (the absorbed MLA attention's kv_b) -------
//
// 64 codes at a time in decode_fp8_64's order; each weight is (code / 256) · (256 · scale), which
// is fl(code · scale) exactly — the value dequant_fp8_rows gives — so the per-element operations
// of axpy_rows and dot_rows (cpu/ops.h) run on the same values in the same order. The chunk order
// only moves elements between lanes: axpy's y is loaded into it and stored back out of it, dot's
// 64 lane sums are moved back to their natural lanes before the tail and the fixed tree.

// The 64 weights of `row` at column k (a multiple of 64 inside one scale block), as f32 in chunk
// order; NaN codes are ORed into `nan`.
inline void fp8_weights_64(const WeightMatrix& w, int64_t row, int64_t k, __m512 out[4], __mmask64& nan) {
  const int64_t scale_cols = (w.cols + w.block - 1) / w.block;
  const uint8_t* codes = static_cast<const uint8_t*>(w.data) + row * w.cols + k;
  const __m512 scale = _mm512_set1_ps(w.scale_inv[(row / w.block) * scale_cols + k / w.block] * 256.0f);
  decode_fp8_64(codes, out[0], out[1], out[2], out[3]);
  nan |= fp8_nan_64(codes);
  for (int q = 0; q < 4; ++q) out[q] = _mm512_mul_ps(out[q], scale);
}

}  // namespace

bool fp8_weight_rows_fit_avx512(const WeightMatrix& w) {
  return w.format == WeightFormat::kFP8Block && w.cols % 64 == 0 && w.block % 64 == 0;
}

void axpy_fp8_rows_avx512(const float* alpha, const WeightMatrix& w, int64_t row0, int64_t count, float* y) {
  for (int64_t j0 = 0; j0 < w.cols; j0 += 64) {
    __m512 natural[4], acc[4];
    for (int q = 0; q < 4; ++q) natural[q] = _mm512_loadu_ps(y + j0 + 16 * q);
    to_chunk_order(natural, acc);
    __mmask64 nan = 0;
    for (int64_t r = 0; r < count; ++r) {
      __m512 wv[4];
      fp8_weights_64(w, row0 + r, j0, wv, nan);
      const __m512 a = _mm512_set1_ps(alpha[r]);
      for (int q = 0; q < 4; ++q) acc[q] = _mm512_add_ps(acc[q], _mm512_mul_ps(a, wv[q]));
    }
    if (nan != 0)  // name the first row holding one in this chunk
      for (int64_t r = 0; r < count; ++r)
        if (fp8_nan_64(static_cast<const uint8_t*>(w.data) + (row0 + r) * w.cols + j0) != 0) throw_fp8_nan(w, row0 + r);
    from_chunk_order(acc, natural);
    for (int q = 0; q < 4; ++q) _mm512_storeu_ps(y + j0 + 16 * q, natural[q]);
  }
}

void dot_fp8_rows_avx512(const float* x, const WeightMatrix& w, int64_t row0, int64_t count, float* out) {
  // x in chunk order: on the stack for kv_b's 512 columns (called per head and token), else on the heap.
  alignas(64) float local[1024];
  std::vector<float> heap;
  float* permuted = local;
  if (w.cols > 1024) {
    heap.resize(size_t(w.cols));
    permuted = heap.data();
  }
  permute_x_fp8(x, w.cols, w.block, permuted);
  for (int64_t r = 0; r < count; ++r) {
    __m512 acc[4];
    for (int q = 0; q < 4; ++q) acc[q] = _mm512_setzero_ps();
    __mmask64 nan = 0;
    for (int64_t k = 0; k < w.cols; k += 64) {
      __m512 wv[4];
      fp8_weights_64(w, row0 + r, k, wv, nan);
      for (int q = 0; q < 4; ++q)
        acc[q] = _mm512_add_ps(acc[q], _mm512_mul_ps(_mm512_loadu_ps(permuted + k + 16 * q), wv[q]));
    }
    if (nan != 0) throw_fp8_nan(w, row0 + r);
    __m512 lanes[4];
    from_chunk_order(acc, lanes);
    out[r] = sum_64_lanes(lanes);
  }
}

void linear_avx512(const WeightMatrix& w, const float* x, int64_t tokens, float* y) {
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
