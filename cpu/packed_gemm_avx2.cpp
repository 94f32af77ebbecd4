// AVX2 + FMA + F16C packed GEMM: compiled with its own flags, called only when cpu_features()
// says so. Numerics: cpu/packed_gemm.h (bitwise the scalar path).
//
// NOTES:
// - 8 lanes, so a 16-row panel is two vectors. FP8 decodes with the same fp16 trick as the
//   AVX-512 path (vcvtph2ps exists with F16C).
// - INT8/INT4 without VNNI: u8 weights zero-extended and s8 activations sign-extended to 16
//   bits, vpmaddwd into int32 pairs per row, pairs added at the group end. The integer sum is
//   exact, so it equals the vpdpbusd result.
// - One kernel shape: P = 1 panel × up to 4 tokens with weights decoded in registers. Many
//   tokens loop over 4-token chunks inside a block of 8 panels so the block stays in L2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/packed_gemm.h"

namespace hetmoe::cpu::kernels {
namespace {

using Format = PackedFormat;

// 32 bytes of an FP8 chunk (16 words) -> 16 rows of one k (even bytes) and 16 rows of k + 2
// (odd bytes), each as two vectors of 8 rows.
inline void decode_fp8_half(const uint8_t* codes, __m256 even[2], __m256 odd[2]) {
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i keep = _mm256_set1_epi16(int16_t(0xBF80));
  const __m256i o = _mm256_and_si256(_mm256_srai_epi16(v, 1), keep);
  const __m256i e = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(v, 8), 1), keep);
  even[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(e));
  even[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(e, 1));
  odd[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(o));
  odd[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(o, 1));
}

inline __m256i broadcast_quad16(const int8_t* q) {
  // (x0, x1, x2, x3) as int16, repeated for 4 rows: the 4 bytes broadcast, then sign-extended
  // (3 instructions; _mm256_set_epi16 of the 16 values compiled to ~20 inserts and shuffles).
  int32_t quad;
  std::memcpy(&quad, q, sizeof quad);
  return _mm256_cvtepi8_epi16(_mm_set1_epi32(quad));
}

// Adds Σ over 4 k of u8 weights (16 bytes: 4 rows × 4 k) times the quad to the row-pair
// accumulator (8 int32: 2 per row).
inline __m256i madd_quad(__m256i acc, __m128i weights, __m256i quad) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(weights), quad));
}

// 4 accumulators of row pairs (rows 0-3, 4-7, 8-11, 12-15) -> two vectors of 8 row sums.
inline void reduce_pairs(const __m256i pairs[4], __m256i sums[2]) {
  for (int h = 0; h < 2; ++h) {
    const __m256i added = _mm256_hadd_epi32(pairs[2 * h], pairs[2 * h + 1]);
    sums[h] = _mm256_permute4x64_epi64(added, 0xD8);
  }
}

inline void store_rows(float* y, __m256 value, int64_t valid) {
  if (valid >= 8) {
    _mm256_storeu_ps(y, value);
  } else if (valid > 0) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, value);
    std::memcpy(y, lanes, size_t(valid) * sizeof(float));
  }
}

template <Format F, int M>
void decode_panel(const PackedGemmArgs& args, int64_t p, int64_t t0) {
  const PackedLayout& l = args.w.layout;
  const ActivationView& a = args.a;
  const uint8_t* panel = args.w.panel(p);
  __m256 total[M][2];
  for (int t = 0; t < M; ++t) total[t][0] = total[t][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < l.groups; ++g) {
    const uint8_t* w = panel + l.header_bytes + g * l.group_bytes;
    if constexpr (F == Format::kFP8 || F == Format::kBF16) {
      __m256 blk[M][2];
      for (int t = 0; t < M; ++t) blk[t][0] = blk[t][1] = _mm256_setzero_ps();
      const float* x[M];
      for (int t = 0; t < M; ++t) x[t] = a.x + (t0 + t) * a.x_stride + g * kGroupCols;
      if constexpr (F == Format::kFP8) {
        for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
          __m256 k0[2], k1[2], k2[2], k3[2];
          decode_fp8_half(w + ch * 64, k0, k2);
          decode_fp8_half(w + ch * 64 + 32, k1, k3);
          for (int t = 0; t < M; ++t) {
            const float* xk = x[t] + 4 * ch;
            for (int h = 0; h < 2; ++h) {
              blk[t][h] = _mm256_fmadd_ps(k0[h], _mm256_set1_ps(xk[0]), blk[t][h]);
              blk[t][h] = _mm256_fmadd_ps(k1[h], _mm256_set1_ps(xk[1]), blk[t][h]);
              blk[t][h] = _mm256_fmadd_ps(k2[h], _mm256_set1_ps(xk[2]), blk[t][h]);
              blk[t][h] = _mm256_fmadd_ps(k3[h], _mm256_set1_ps(xk[3]), blk[t][h]);
            }
          }
        }
        const __m256 scale = _mm256_set1_ps(reinterpret_cast<const float*>(panel)[g]);
        for (int t = 0; t < M; ++t)
          for (int h = 0; h < 2; ++h) total[t][h] = _mm256_fmadd_ps(blk[t][h], scale, total[t][h]);
      } else {
        for (int64_t ch = 0; ch < kGroupCols / 2; ++ch) {
          __m256 even[2], odd[2];
          for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32 * h));
            even[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            odd[h] = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int32_t(0xFFFF0000u))));
          }
          for (int t = 0; t < M; ++t) {
            const float* xk = x[t] + 2 * ch;
            for (int h = 0; h < 2; ++h) {
              blk[t][h] = _mm256_fmadd_ps(even[h], _mm256_set1_ps(xk[0]), blk[t][h]);
              blk[t][h] = _mm256_fmadd_ps(odd[h], _mm256_set1_ps(xk[1]), blk[t][h]);
            }
          }
        }
        for (int t = 0; t < M; ++t)
          for (int h = 0; h < 2; ++h) total[t][h] = _mm256_add_ps(total[t][h], blk[t][h]);
      }
    } else {
      __m256i pairs[M][4];
      for (int t = 0; t < M; ++t)
        for (int i = 0; i < 4; ++i) pairs[t][i] = _mm256_setzero_si256();
      const int8_t* q[M];
      for (int t = 0; t < M; ++t) q[t] = a.q + (t0 + t) * a.q_stride + g * kGroupCols;
      // One quad of u8 weights for 16 rows (64 bytes) against token t's quad.
      const auto quad = [&](const __m256i lo_rows, const __m256i hi_rows, int64_t quad_index) {
        for (int t = 0; t < M; ++t) {
          const __m256i xq = broadcast_quad16(q[t] + 4 * quad_index);
          pairs[t][0] = madd_quad(pairs[t][0], _mm256_castsi256_si128(lo_rows), xq);
          pairs[t][1] = madd_quad(pairs[t][1], _mm256_extracti128_si256(lo_rows, 1), xq);
          pairs[t][2] = madd_quad(pairs[t][2], _mm256_castsi256_si128(hi_rows), xq);
          pairs[t][3] = madd_quad(pairs[t][3], _mm256_extracti128_si256(hi_rows, 1), xq);
        }
      };
      if constexpr (F == Format::kINT8) {
        for (int64_t ch = 0; ch < kGroupCols / 4; ++ch)
          quad(_mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64)),
               _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32)), ch);
      } else {
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        for (int64_t ch = 0; ch < kGroupCols / 8; ++ch) {
          const __m256i v0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64));
          const __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32));
          quad(_mm256_and_si256(v0, low4), _mm256_and_si256(v1, low4), 2 * ch);
          quad(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
               _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4), 2 * ch + 1);
        }
      }
      const float* sw = reinterpret_cast<const float*>(w + l.group_bytes - 64);
      for (int t = 0; t < M; ++t) {
        __m256i sums[2];
        reduce_pairs(pairs[t], sums);
        const __m256i comp = _mm256_set1_epi32(a.comp[(t0 + t) * a.groups + g]);
        const __m256 sx = _mm256_set1_ps(a.scale[(t0 + t) * a.groups + g]);
        for (int h = 0; h < 2; ++h) {
          const __m256 acc = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[h], comp));
          const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(sw + 8 * h), sx);
          total[t][h] = _mm256_fmadd_ps(acc, scale, total[t][h]);
        }
      }
    }
  }
  const int64_t valid = std::min<int64_t>(kPanelRows, l.rows - p * kPanelRows);
  for (int t = 0; t < M; ++t) {
    float* y = args.y + (t0 + t) * args.y_stride + (p - args.panel_begin) * kPanelRows;
    store_rows(y, total[t][0], valid);
    store_rows(y + 8, total[t][1], valid - 8);
  }
}

template <Format F>
void run(const PackedGemmArgs& args) {
  constexpr int64_t kPanelBlock = 8;  // 8 panels × 7168 k of FP8 ≈ 0.9 MB: stays in L2 across token chunks
  for (int64_t pb = args.panel_begin; pb < args.panel_end; pb += kPanelBlock)
    for (int64_t t0 = 0; t0 < args.tokens; t0 += 4) {
      const int64_t m = std::min<int64_t>(4, args.tokens - t0);
      for (int64_t p = pb; p < std::min(args.panel_end, pb + kPanelBlock); ++p) {
        switch (m) {
          case 1:
            decode_panel<F, 1>(args, p, t0);
            break;
          case 2:
            decode_panel<F, 2>(args, p, t0);
            break;
          case 3:
            decode_panel<F, 3>(args, p, t0);
            break;
          default:
            decode_panel<F, 4>(args, p, t0);
            break;
        }
      }
    }
}

}  // namespace

void packed_gemm_avx2(const PackedGemmArgs& args) {
  switch (args.w.layout.format) {
    case Format::kFP8:
      return run<Format::kFP8>(args);
    case Format::kBF16:
      return run<Format::kBF16>(args);
    case Format::kINT8:
      return run<Format::kINT8>(args);
    case Format::kINT4:
      return run<Format::kINT4>(args);
  }
}

}  // namespace hetmoe::cpu::kernels
