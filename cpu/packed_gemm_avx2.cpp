// AVX2 + FMA + F16C packed GEMM: compiled with its own flags, called only when cpu_features()
// says so. Numerics: cpu/packed_gemm.h (bitwise the scalar path).
//
// NOTES:
// - 8 lanes, so a 16-row panel is two vectors. FP8 decodes as the AVX-512 path does (shifts
//   within each row's 32-bit lane give value × 2^-120; x is scaled by 2^112, cpu/fp8_avx512.h).
// - INT8/INT4 without VNNI: vpmaddubsw (u8 × s8 pairs into s16, 32 products per instruction)
//   then vpmaddwd by ones into one int32 per row. INT4's nibbles are u8 as stored; INT8 takes
//   |q| and moves q's sign onto x (vpsignb). Neither can saturate (bounds at the kernels), so
//   the integer sums are exact and equal the vpdpbusd result.
// - Kernel shape: up to 4 tokens with weights decoded in registers; one-/two-token FP8 and
//   BF16 take 2 panels at once (4 or 8 FMA chains instead of 2 or 4: the chains' order is
//   fixed, so latency, not throughput, bounded a one-panel decode); FP8 decodes 8 rows at a
//   time so the chains keep their registers.
// - Prefill (≥ 8 tokens): FP8/BF16 decode each panel group once into an L1 tile and run 6-token
//   register blocks over it; INT8/INT4 loop over 4-token chunks of the decode kernel inside a
//   block of 8 panels so the block stays in L2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/packed_gemm.h"

namespace hetmoe::cpu::kernels {
namespace {

using Format = PackedFormat;

// 32 bytes of a packed FP8 quad (rows 8h .. 8h + 7 × k .. k + 3, row r's codes in its 32-bit
// lane) -> w[c] = the 8 rows' codes of k + c as value × 2^-120 (cpu/fp8_avx512.h: the form, and
// why x · 2^112 times it is the packed numerics' product bit for bit).
inline void decode_fp8_rows8(const uint8_t* codes, __m256 w[4]) {
  const __m256i keep = _mm256_set1_epi32(int32_t(0x87F00000u));  // sign + 7 magnitude bits
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(codes));
  w[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 24), 4), keep));
  w[1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 16), 4), keep));
  w[2] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 8), 4), keep));
  w[3] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(v, 4), keep));
}

constexpr float kFp8XScale = 0x1p112f;

// out[0..128) = x · 2^112; true when every |x| < 2^16 (each product then exact).
inline bool scale_fp8_x(const float* x, float* out) {
  const __m256 limit = _mm256_set1_ps(65536.0f), scale = _mm256_set1_ps(kFp8XScale);
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  int ok = 0xFF;
  for (int k = 0; k < 128; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    ok &= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, magnitude), limit, _CMP_LT_OQ));
    _mm256_store_ps(out + k, _mm256_mul_ps(v, scale));
  }
  return ok == 0xFF;
}

// Four weights of a row (k .. k + 3, in order) times x[0..3] into one FMA chain.
inline __m256 fma4(__m256 b, const float* x, __m256 k0, __m256 k1, __m256 k2, __m256 k3) {
  b = _mm256_fmadd_ps(k0, _mm256_set1_ps(x[0]), b);
  b = _mm256_fmadd_ps(k1, _mm256_set1_ps(x[1]), b);
  b = _mm256_fmadd_ps(k2, _mm256_set1_ps(x[2]), b);
  return _mm256_fmadd_ps(k3, _mm256_set1_ps(x[3]), b);
}

// Each 64-byte chunk prefetches the one `ahead` bytes further in its panel, as the AVX-512
// decode does (the hardware prefetchers alone leave a one-token decode well short of the read
// bandwidth); the distance is stream_prefetch_bytes() (cpu_features.h).
inline void prefetch(const uint8_t* chunk, int64_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(chunk + ahead), _MM_HINT_T0);
}

inline __m256i broadcast_quad(const int8_t* q) {
  int32_t quad;
  std::memcpy(&quad, q, sizeof quad);
  return _mm256_set1_epi32(quad);
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

// Adds one group's integer row sums (two vectors of 8 rows) of token t, scaled, to its totals.
inline void add_int_group(const __m256i sums[2], const float* sw, int32_t comp, float sx, __m256 total[2]) {
  for (int h = 0; h < 2; ++h) {
    const __m256 acc = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[h], _mm256_set1_epi32(comp)));
    const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(sw + 8 * h), _mm256_set1_ps(sx));
    total[h] = _mm256_fmadd_ps(acc, scale, total[h]);
  }
}

// One FP8 group of P panels, 8 rows at a time (few registers, so the FMA chains stay in
// them): blk[pp][t][h] += Σ_k (value / 256) · x_t[k] in k order. kScaledX: x holds x · 2^112;
// otherwise the decoded weights are brought to value / 256 here.
template <int M, int P, bool kScaledX>
inline void fp8_group(const uint8_t* const* w, const float* const* x, int64_t ahead, __m256 (&blk)[P][M][2]) {
  for (int64_t ch = 0; ch < kGroupCols / 4; ++ch)
    for (int pp = 0; pp < P; ++pp) {
      prefetch(w[pp] + ch * 64, ahead);
      for (int h = 0; h < 2; ++h) {
        __m256 k[4];
        decode_fp8_rows8(w[pp] + ch * 64 + 32 * h, k);
        if constexpr (!kScaledX)
          for (__m256& v : k) v = _mm256_mul_ps(v, _mm256_set1_ps(kFp8XScale));
        for (int t = 0; t < M; ++t) blk[pp][t][h] = fma4(blk[pp][t][h], x[t] + 4 * ch, k[0], k[1], k[2], k[3]);
      }
    }
}

// FP8 / BF16: P panels side by side, so one token has 2·P independent FMA chains (the order
// within a chain is fixed by the numerics; with P = 1 a one-token decode waits on FMA latency).
template <Format F, int M, int P>
void decode_float_panels(const PackedGemmArgs& args, int64_t p0, int64_t t0) {
  const PackedLayout& l = args.w.layout;
  const int64_t ahead = stream_prefetch_bytes();
  const ActivationView& a = args.a;
  // Totals change once per group: kept in memory so the FMA chains get the registers.
  alignas(32) float total[P][M][kPanelRows] = {};
  for (int64_t g = 0; g < l.groups; ++g) {
    __m256 blk[P][M][2];
    for (int pp = 0; pp < P; ++pp)
      for (int t = 0; t < M; ++t) blk[pp][t][0] = blk[pp][t][1] = _mm256_setzero_ps();
    const float* x[M];
    for (int t = 0; t < M; ++t) x[t] = a.x + (t0 + t) * a.x_stride + g * kGroupCols;
    const uint8_t* w[P];
    for (int pp = 0; pp < P; ++pp) w[pp] = args.w.panel(p0 + pp) + l.header_bytes + g * l.group_bytes;
    if constexpr (F == Format::kFP8) {
      alignas(32) float scaled[M][kGroupCols];
      bool exact = true;
      for (int t = 0; t < M; ++t) exact &= scale_fp8_x(x[t], scaled[t]);
      if (exact) {
        const float* xs[M];
        for (int t = 0; t < M; ++t) xs[t] = scaled[t];
        fp8_group<M, P, true>(w, xs, ahead, blk);
      } else {
        fp8_group<M, P, false>(w, x, ahead, blk);
      }
      for (int pp = 0; pp < P; ++pp) {
        const __m256 scale = _mm256_set1_ps(reinterpret_cast<const float*>(args.w.panel(p0 + pp))[g]);
        for (int t = 0; t < M; ++t)
          for (int h = 0; h < 2; ++h) {
            float* o = total[pp][t] + 8 * h;
            _mm256_store_ps(o, _mm256_fmadd_ps(blk[pp][t][h], scale, _mm256_load_ps(o)));
          }
      }
    } else {
      for (int64_t ch = 0; ch < kGroupCols / 2; ++ch)
        for (int pp = 0; pp < P; ++pp) {
          prefetch(w[pp] + ch * 64, ahead);
          __m256 even[2], odd[2];
          for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w[pp] + ch * 64 + 32 * h));
            even[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            odd[h] = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int32_t(0xFFFF0000u))));
          }
          for (int t = 0; t < M; ++t) {
            const float* xk = x[t] + 2 * ch;
            for (int h = 0; h < 2; ++h) {
              __m256& b = blk[pp][t][h];
              b = _mm256_fmadd_ps(even[h], _mm256_set1_ps(xk[0]), b);
              b = _mm256_fmadd_ps(odd[h], _mm256_set1_ps(xk[1]), b);
            }
          }
        }
      for (int pp = 0; pp < P; ++pp)
        for (int t = 0; t < M; ++t)
          for (int h = 0; h < 2; ++h) {
            float* o = total[pp][t] + 8 * h;
            _mm256_store_ps(o, _mm256_add_ps(_mm256_load_ps(o), blk[pp][t][h]));
          }
    }
  }
  for (int pp = 0; pp < P; ++pp) {
    const int64_t p = p0 + pp;
    const int64_t valid = std::min<int64_t>(kPanelRows, l.rows - p * kPanelRows);
    for (int t = 0; t < M; ++t) {
      float* y = args.y + (t0 + t) * args.y_stride + (p - args.panel_begin) * kPanelRows;
      std::memcpy(y, total[pp][t], size_t(std::max<int64_t>(valid, 0)) * sizeof(float));
    }
  }
}

// INT8: the stored u8 is q + 128, so (u8 ^ 0x80) is q as s8. vpmaddubsw multiplies |q| (u8)
// by x·sign(q) (s8) and adds adjacent pairs into s16: at most 2·128·127 = 32512, never
// saturating, so each quad (4 k) of a row widens to one int32 with vpmaddwd by ones. The sum
// is Σ q·x exactly, which is what comp + Σ u8·x is (comp = -128·Σx), so comp is not added.
template <int M>
void decode_int8_panel(const PackedGemmArgs& args, int64_t p, int64_t t0) {
  const PackedLayout& l = args.w.layout;
  const int64_t ahead = stream_prefetch_bytes();
  const ActivationView& a = args.a;
  const __m256i flip = _mm256_set1_epi8(int8_t(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[M][2];
  for (int t = 0; t < M; ++t) total[t][0] = total[t][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < l.groups; ++g) {
    const uint8_t* w = args.w.panel(p) + l.header_bytes + g * l.group_bytes;
    const int8_t* q[M];
    for (int t = 0; t < M; ++t) q[t] = a.q + (t0 + t) * a.q_stride + g * kGroupCols;
    __m256i sums[M][2];
    for (int t = 0; t < M; ++t) sums[t][0] = sums[t][1] = _mm256_setzero_si256();
    for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
      prefetch(w + ch * 64, ahead);
      __m256i sign[2], magnitude[2];
      for (int h = 0; h < 2; ++h) {
        sign[h] = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32 * h)), flip);
        magnitude[h] = _mm256_abs_epi8(sign[h]);
      }
      for (int t = 0; t < M; ++t) {
        const __m256i xq = broadcast_quad(q[t] + 4 * ch);
        for (int h = 0; h < 2; ++h) {
          const __m256i pairs = _mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(xq, sign[h]));
          sums[t][h] = _mm256_add_epi32(sums[t][h], _mm256_madd_epi16(pairs, ones));
        }
      }
    }
    const float* sw = reinterpret_cast<const float*>(w + l.group_bytes - 64);
    for (int t = 0; t < M; ++t) add_int_group(sums[t], sw, 0, a.scale[(t0 + t) * a.groups + g], total[t]);
  }
  const int64_t valid = std::min<int64_t>(kPanelRows, l.rows - p * kPanelRows);
  for (int t = 0; t < M; ++t) {
    float* y = args.y + (t0 + t) * args.y_stride + (p - args.panel_begin) * kPanelRows;
    store_rows(y, total[t][0], valid);
    store_rows(y + 8, total[t][1], valid - 8);
  }
}

// INT4: nibbles (q + 8 ≤ 15) are u8 already. vpmaddubsw of a quad gives s16 pairs of at most
// 2·15·127 = 3810, so 8 quads (4 chunks) add up in s16 (≤ 30480) before one vpmaddwd by ones
// widens them to a row's int32. Integer sums are exact: the same bits as every other path.
template <int M>
void decode_int4_panel(const PackedGemmArgs& args, int64_t p, int64_t t0) {
  constexpr int64_t kChunksPerWiden = 4;
  const PackedLayout& l = args.w.layout;
  const int64_t ahead = stream_prefetch_bytes();
  const ActivationView& a = args.a;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[M][2];
  for (int t = 0; t < M; ++t) total[t][0] = total[t][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < l.groups; ++g) {
    const uint8_t* w = args.w.panel(p) + l.header_bytes + g * l.group_bytes;
    const int8_t* q[M];
    for (int t = 0; t < M; ++t) q[t] = a.q + (t0 + t) * a.q_stride + g * kGroupCols;
    __m256i sums[M][2];
    for (int t = 0; t < M; ++t) sums[t][0] = sums[t][1] = _mm256_setzero_si256();
    for (int64_t c0 = 0; c0 < kGroupCols / 8; c0 += kChunksPerWiden) {
      __m256i narrow[M][2];
      for (int t = 0; t < M; ++t) narrow[t][0] = narrow[t][1] = _mm256_setzero_si256();
      for (int64_t ch = c0; ch < c0 + kChunksPerWiden; ++ch) {
        prefetch(w + ch * 64, ahead);
        __m256i lo[2], hi[2];
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32 * h));
          lo[h] = _mm256_and_si256(v, low4);
          hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        }
        for (int t = 0; t < M; ++t) {
          const __m256i xa = broadcast_quad(q[t] + 8 * ch);
          const __m256i xb = broadcast_quad(q[t] + 8 * ch + 4);
          for (int h = 0; h < 2; ++h)
            narrow[t][h] = _mm256_add_epi16(
                narrow[t][h], _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], xa), _mm256_maddubs_epi16(hi[h], xb)));
        }
      }
      for (int t = 0; t < M; ++t)
        for (int h = 0; h < 2; ++h) sums[t][h] = _mm256_add_epi32(sums[t][h], _mm256_madd_epi16(narrow[t][h], ones));
    }
    const float* sw = reinterpret_cast<const float*>(w + l.group_bytes - 64);
    for (int t = 0; t < M; ++t) {
      const int64_t i = (t0 + t) * a.groups + g;
      add_int_group(sums[t], sw, a.comp[i], a.scale[i], total[t]);
    }
  }
  const int64_t valid = std::min<int64_t>(kPanelRows, l.rows - p * kPanelRows);
  for (int t = 0; t < M; ++t) {
    float* y = args.y + (t0 + t) * args.y_stride + (p - args.panel_begin) * kPanelRows;
    store_rows(y, total[t][0], valid);
    store_rows(y + 8, total[t][1], valid - 8);
  }
}

// Panels [p, end) of tokens t0 .. t0 + M - 1; returns the next panel to do.
template <Format F, int M>
int64_t decode_panels(const PackedGemmArgs& args, int64_t p, int64_t end, int64_t t0) {
  if constexpr (F == Format::kINT8) {
    decode_int8_panel<M>(args, p, t0);
    return p + 1;
  } else if constexpr (F == Format::kINT4) {
    decode_int4_panel<M>(args, p, t0);
    return p + 1;
  } else if constexpr (M <= 2) {
    if (p + 2 <= end) {
      decode_float_panels<F, M, 2>(args, p, t0);
      return p + 2;
    }
    decode_float_panels<F, M, 1>(args, p, t0);
    return p + 1;
  } else {
    decode_float_panels<F, M, 1>(args, p, t0);
    return p + 1;
  }
}

// --- FP8 / BF16 prefill --------------------------------------------------------------------
// Many tokens: each (panel, group) is decoded once into an fp32 tile [128 k][16 rows] (8 KiB,
// L1), then blocks of up to 6 tokens run 12 FMA chains over it (2 weight loads and 6
// broadcasts per 12 FMAs), where the decode kernel re-decoded every weight for each 4 tokens.
// Up to 8 panels share a group's pass over the activations (all tokens × 128 k stay in L2);
// per (token, row) totals live in scratch between groups. Same numerics as the decode kernel.
constexpr int64_t kPrefillPanels = 8;
constexpr int kPrefillTokens = 6;

template <Format F>
void decode_tile(const uint8_t* w, float* tile) {
  if constexpr (F == Format::kFP8) {
    for (int64_t ch = 0; ch < kGroupCols / 4; ++ch)
      for (int h = 0; h < 2; ++h) {
        __m256 k[4];
        decode_fp8_rows8(w + ch * 64 + 32 * h, k);
        for (int i = 0; i < 4; ++i)
          _mm256_store_ps(tile + (4 * ch + i) * kPanelRows + 8 * h, _mm256_mul_ps(k[i], _mm256_set1_ps(kFp8XScale)));
      }
  } else {
    for (int64_t ch = 0; ch < kGroupCols / 2; ++ch)
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ch * 64 + 32 * h));
        _mm256_store_ps(tile + (2 * ch) * kPanelRows + 8 * h, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        _mm256_store_ps(tile + (2 * ch + 1) * kPanelRows + 8 * h,
                        _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int32_t(0xFFFF0000u)))));
      }
  }
}

// Tokens t0 .. t0 + T - 1 of one group over one tile; totals: [token][kPanelRows] rows apart by
// `stride` floats.
template <Format F, int T>
void tile_tokens(const float* tile, const float* const* x, float scale, float* totals, int64_t stride) {
  __m256 blk[T][2];
  for (int t = 0; t < T; ++t) blk[t][0] = blk[t][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kGroupCols; ++k) {
    const __m256 w0 = _mm256_load_ps(tile + k * kPanelRows), w1 = _mm256_load_ps(tile + k * kPanelRows + 8);
    for (int t = 0; t < T; ++t) {
      const __m256 xk = _mm256_broadcast_ss(x[t] + k);
      blk[t][0] = _mm256_fmadd_ps(w0, xk, blk[t][0]);
      blk[t][1] = _mm256_fmadd_ps(w1, xk, blk[t][1]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2; ++h) {
      float* o = totals + t * stride + 8 * h;
      const __m256 total = _mm256_load_ps(o);
      _mm256_store_ps(o, F == Format::kFP8 ? _mm256_fmadd_ps(blk[t][h], _mm256_set1_ps(scale), total)
                                           : _mm256_add_ps(total, blk[t][h]));
    }
}

template <Format F>
void prefill_float(const PackedGemmArgs& args) {
  const PackedLayout& l = args.w.layout;
  const ActivationView& a = args.a;
  const int64_t stride = kPrefillPanels * kPanelRows;
  float* tile = aligned_span(args.scratch->tile, size_t(kGroupCols * kPanelRows));
  float* totals = aligned_span(args.scratch->output, size_t(args.tokens * stride));
  for (int64_t pb = args.panel_begin; pb < args.panel_end; pb += kPrefillPanels) {
    const int64_t panels = std::min(kPrefillPanels, args.panel_end - pb);
    std::fill(totals, totals + args.tokens * stride, 0.0f);
    for (int64_t g = 0; g < l.groups; ++g)
      for (int64_t i = 0; i < panels; ++i) {
        const uint8_t* panel = args.w.panel(pb + i);
        decode_tile<F>(panel + l.header_bytes + g * l.group_bytes, tile);
        const float scale = F == Format::kFP8 ? reinterpret_cast<const float*>(panel)[g] : 1.0f;
        // Blocks of near-equal size (8 tokens: 4 + 4, not 6 + 2), so no block is left with too
        // few chains to hide the FMA latency.
        const int64_t blocks = (args.tokens + kPrefillTokens - 1) / kPrefillTokens;
        for (int64_t b = 0, t0 = 0; b < blocks; ++b) {
          const int64_t m = (args.tokens - t0) / (blocks - b);
          const float* x[kPrefillTokens];
          for (int64_t t = 0; t < m; ++t) x[t] = a.x + (t0 + t) * a.x_stride + g * kGroupCols;
          float* out = totals + t0 * stride + i * kPanelRows;
          switch (m) {
            case 1: tile_tokens<F, 1>(tile, x, scale, out, stride); break;
            case 2: tile_tokens<F, 2>(tile, x, scale, out, stride); break;
            case 3: tile_tokens<F, 3>(tile, x, scale, out, stride); break;
            case 4: tile_tokens<F, 4>(tile, x, scale, out, stride); break;
            case 5: tile_tokens<F, 5>(tile, x, scale, out, stride); break;
            default: tile_tokens<F, 6>(tile, x, scale, out, stride); break;
          }
          t0 += m;
        }
      }
    const int64_t rows = std::min(panels * kPanelRows, l.rows - pb * kPanelRows);
    for (int64_t t = 0; t < args.tokens; ++t)
      std::memcpy(args.y + t * args.y_stride + (pb - args.panel_begin) * kPanelRows, totals + t * stride,
                  size_t(rows) * sizeof(float));
  }
}

template <Format F>
void run(const PackedGemmArgs& args) {
  if constexpr (F == Format::kFP8 || F == Format::kBF16) {
    if (args.tokens >= kPrefillMinTokens) return prefill_float<F>(args);
  }
  constexpr int64_t kPanelBlock = 8;  // 8 panels × 7168 k of FP8 ≈ 0.9 MB: stays in L2 across token chunks
  for (int64_t pb = args.panel_begin; pb < args.panel_end; pb += kPanelBlock)
    for (int64_t t0 = 0; t0 < args.tokens; t0 += 4) {
      const int64_t m = std::min<int64_t>(4, args.tokens - t0);
      const int64_t end = std::min(args.panel_end, pb + kPanelBlock);
      for (int64_t p = pb; p < end;) {
        switch (m) {
          case 1:
            p = decode_panels<F, 1>(args, p, end, t0);
            break;
          case 2:
            p = decode_panels<F, 2>(args, p, end, t0);
            break;
          case 3:
            p = decode_panels<F, 3>(args, p, end, t0);
            break;
          default:
            p = decode_panels<F, 4>(args, p, end, t0);
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
