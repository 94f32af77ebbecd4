// AVX-512 packed GEMM (AVX512F/BW + VNNI): compiled with its own flags, called only when
// cpu_features() says the CPU has them. Numerics: cpu/packed_gemm.h (bitwise the scalar path).
//
// NOTES:
// - FP8 decode without a table or conversion (cpu/fp8_avx512.h, decode_fp8_quad): a code's bits
//   shifted within its row's 32-bit lane are its value × 2^-120; decode multiplies them by
//   x · 2^112, the prefill tile by 2^112, so every product is (value / 256) · x exactly; the
//   ×256 lives in the packed block scale. 64 codes cost 11 integer ops.
// - INT8/INT4 use vpdpbusd (u8 weights × s8 activations) for decode too: one instruction per
//   64 weights per token, so unpacking never limits the stream (INT4: 3 ops per 128 weights).
// - Decode keeps 4 panels × M tokens independent FMA chains in flight (FMA latency 4, 2 ports);
//   prefill decodes a panel pair's group once into an L1 tile and runs 8 tokens × 32 rows.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/fp8_avx512.h"
#include "cpu/packed_gemm.h"

namespace hetmoe::cpu::kernels {
namespace {

using Format = PackedFormat;

// 64 bytes = 16 rows × bf16 pair (k, k+1) -> two vectors of 16 rows.
inline void decode_bf16_chunk(const uint8_t* values, __m512& w0, __m512& w1) {
  const __m512i v = _mm512_load_si512(values);
  w0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  w1 = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int32_t(0xFFFF0000u))));
}

// acc += u8(w) · s8(x) by 4-byte groups. Inline asm because GCC 12 copies each accumulator
// through a spare register around every vpdpbusd when it comes from the intrinsic (measured: 2
// extra moves per instruction halved the prefill rate).
inline __m512i dpbusd(__m512i acc, __m512i w, __m512i x) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
  return acc;
}

// Decode streams P panels at once; the hardware prefetchers alone left FP8 decode at ~70% of the
// read bandwidth (its decode work leaves fewer cycles to cover DRAM latency), so each chunk also
// prefetches the one `ahead` bytes further in its panel: stream_prefetch_bytes() (cpu_features.h;
// on the Xeon 2 KiB ≥ 4 KiB ≈ 8 KiB > none, on Zen 4 512 B > 1 KiB > 2 KiB).
inline void prefetch(const uint8_t* p, int64_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(p + ahead), _MM_HINT_T0);
}

inline __m512i broadcast_quad(const int8_t* q) {
  int32_t value;
  std::memcpy(&value, q, 4);
  return _mm512_set1_epi32(value);
}

inline void store_rows(float* y, __m512 value, int64_t valid) {
  if (valid >= 16) {
    _mm512_storeu_ps(y, value);
  } else if (valid > 0) {
    _mm512_mask_storeu_ps(y, __mmask16((1u << valid) - 1), value);
  }
}

struct Ctx {
  const PackedGemmArgs& args;
  int64_t valid_rows(int64_t panel) const {
    return std::min<int64_t>(kPanelRows, args.w.layout.rows - panel * kPanelRows);
  }
  float* y_at(int64_t t, int64_t panel) const {
    return args.y + t * args.y_stride + (panel - args.panel_begin) * kPanelRows;
  }
  const uint8_t* group(int64_t panel, int64_t g) const {
    const PackedLayout& l = args.w.layout;
    return args.w.panel(panel) + l.header_bytes + g * l.group_bytes;
  }
  float fp8_scale(int64_t panel, int64_t g) const {
    return reinterpret_cast<const float*>(args.w.panel(panel))[g];
  }
  const float* int_scales(int64_t panel, int64_t g) const {
    return reinterpret_cast<const float*>(group(panel, g) + args.w.layout.group_bytes - 64);
  }
};

// --- decode: P panels × M tokens (M ≤ 4), weights decoded in registers -------------------------

// One FP8 group: blk[i][t] += Σ_k (value / 256) · x_t[k] in k order. kScaledX: x holds x · 2^112
// (scale_fp8_x); otherwise the decoded weights are brought to value / 256 here.
template <int P, int M, bool kScaledX>
inline void fp8_group(const uint8_t* const* w, const float* const* x, int64_t ahead, __m512 (&blk)[P][M]) {
  for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
    for (int i = 0; i < P; ++i) {
      prefetch(w[i] + ch * 64, ahead);
      __m512 q[4];
      decode_fp8_quad(w[i] + ch * 64, q);
      if constexpr (!kScaledX)
        for (__m512& v : q) v = _mm512_mul_ps(v, _mm512_set1_ps(kFp8XScale));
      for (int t = 0; t < M; ++t) {
        const float* xk = x[t] + 4 * ch;
        for (int c = 0; c < 4; ++c) blk[i][t] = _mm512_fmadd_ps(q[c], _mm512_set1_ps(xk[c]), blk[i][t]);
      }
    }
  }
}

template <Format F, int P, int M>
void decode_block(const Ctx& c, int64_t p0, int64_t t0) {
  const ActivationView& a = c.args.a;
  const int64_t ahead = stream_prefetch_bytes();
  const int64_t groups = c.args.w.layout.groups;
  __m512 total[P][M];
  for (int i = 0; i < P; ++i)
    for (int t = 0; t < M; ++t) total[i][t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* w[P];
    for (int i = 0; i < P; ++i) w[i] = c.group(p0 + i, g);
    if constexpr (F == Format::kFP8 || F == Format::kBF16) {
      const float* x[M];
      for (int t = 0; t < M; ++t) x[t] = a.x + (t0 + t) * a.x_stride + g * kGroupCols;
      __m512 blk[P][M];
      for (int i = 0; i < P; ++i)
        for (int t = 0; t < M; ++t) blk[i][t] = _mm512_setzero_ps();
      if constexpr (F == Format::kFP8) {
        alignas(64) float scaled[M][kGroupCols];
        bool exact = true;
        for (int t = 0; t < M; ++t) exact &= scale_fp8_x(x[t], scaled[t]);
        if (exact) {
          const float* xs[M];
          for (int t = 0; t < M; ++t) xs[t] = scaled[t];
          fp8_group<P, M, true>(w, xs, ahead, blk);
        } else {
          fp8_group<P, M, false>(w, x, ahead, blk);
        }
        for (int i = 0; i < P; ++i) {
          const __m512 scale = _mm512_set1_ps(c.fp8_scale(p0 + i, g));
          for (int t = 0; t < M; ++t) total[i][t] = _mm512_fmadd_ps(blk[i][t], scale, total[i][t]);
        }
      } else {
        for (int64_t ch = 0; ch < kGroupCols / 2; ++ch) {
          for (int i = 0; i < P; ++i) {
            prefetch(w[i] + ch * 64, ahead);
            __m512 w0, w1;
            decode_bf16_chunk(w[i] + ch * 64, w0, w1);
            for (int t = 0; t < M; ++t) {
              const float* xk = x[t] + 2 * ch;
              blk[i][t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xk[0]), blk[i][t]);
              blk[i][t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xk[1]), blk[i][t]);
            }
          }
        }
        for (int i = 0; i < P; ++i)
          for (int t = 0; t < M; ++t) total[i][t] = _mm512_add_ps(total[i][t], blk[i][t]);
      }
    } else {
      const int8_t* q[M];
      __m512i acc[P][M];
      for (int t = 0; t < M; ++t) {
        q[t] = a.q + (t0 + t) * a.q_stride + g * kGroupCols;
        const __m512i comp = _mm512_set1_epi32(a.comp[(t0 + t) * a.groups + g]);
        for (int i = 0; i < P; ++i) acc[i][t] = comp;
      }
      if constexpr (F == Format::kINT8) {
        for (int64_t ch = 0; ch < kGroupCols / 4; ++ch)
          for (int i = 0; i < P; ++i) {
            prefetch(w[i] + ch * 64, ahead);
            const __m512i wv = _mm512_load_si512(w[i] + ch * 64);
            for (int t = 0; t < M; ++t) acc[i][t] = dpbusd(acc[i][t], wv, broadcast_quad(q[t] + 4 * ch));
          }
      } else {
        const __m512i low4 = _mm512_set1_epi8(0x0F);
        for (int64_t ch = 0; ch < kGroupCols / 8; ++ch)
          for (int i = 0; i < P; ++i) {
            prefetch(w[i] + ch * 64, ahead);
            const __m512i v = _mm512_load_si512(w[i] + ch * 64);
            const __m512i lo = _mm512_and_si512(v, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            for (int t = 0; t < M; ++t) {
              acc[i][t] = dpbusd(acc[i][t], lo, broadcast_quad(q[t] + 8 * ch));
              acc[i][t] = dpbusd(acc[i][t], hi, broadcast_quad(q[t] + 8 * ch + 4));
            }
          }
      }
      for (int i = 0; i < P; ++i) {
        const __m512 sw = _mm512_load_ps(c.int_scales(p0 + i, g));
        for (int t = 0; t < M; ++t) {
          const __m512 scale = _mm512_mul_ps(sw, _mm512_set1_ps(a.scale[(t0 + t) * a.groups + g]));
          total[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][t]), scale, total[i][t]);
        }
      }
    }
  }
  for (int i = 0; i < P; ++i)
    for (int t = 0; t < M; ++t) store_rows(c.y_at(t0 + t, p0 + i), total[i][t], c.valid_rows(p0 + i));
}

template <Format F, int P>
void decode_panels(const Ctx& c, int64_t p0, int64_t t0, int64_t m) {
  switch (m) {
    case 1:
      return decode_block<F, P, 1>(c, p0, t0);
    case 2:
      return decode_block<F, P, 2>(c, p0, t0);
    case 3:
      return decode_block<F, P, 3>(c, p0, t0);
    default:
      return decode_block<F, P, 4>(c, p0, t0);
  }
}

template <Format F>
void decode(const Ctx& c) {
  const PackedGemmArgs& args = c.args;
  // 4 panels for every token count: with 2 panels at 3–4 tokens every format streamed 7–15%
  // slower (fp8 0.62 → 0.69, int8 0.86 → 0.94–1.0, int4 0.77 → 0.88–0.91, bf16 0.87 → 0.93 of
  // the read bandwidth at 4 tokens; the totals the compiler spills are touched once a group).
  // Chunks of 4 tokens inside the panel loop: 5–7 tokens read a block of 4 panels (≤ 0.5 MB of a
  // V3 expert matrix) from DRAM once and again from L2, where a loop over the whole matrix per
  // chunk streamed it from DRAM twice (as the AVX2 path already does; same bits either way).
  auto chunks = [&](auto panels, int64_t p) {
    for (int64_t t0 = 0; t0 < args.tokens; t0 += 4)
      decode_panels<F, decltype(panels)::value>(c, p, t0, std::min<int64_t>(4, args.tokens - t0));
  };
  int64_t p = args.panel_begin;
  for (; p + 4 <= args.panel_end; p += 4) chunks(std::integral_constant<int, 4>{}, p);
  for (; p < args.panel_end; ++p) chunks(std::integral_constant<int, 1>{}, p);
}

// --- prefill: R panels (≤ 2) × all tokens, 8-token register blocks ----------------------------

constexpr int kT = 8;

// FP8/BF16: tile = f32 [128 k][32 rows] (panel i at column 16 i).
template <int R>
void fp32_tile_gemm(const float* tile, const float* x, int64_t x_stride, const __m512* scale, bool add,
                    float* out) {
  __m512 acc[kT][R];
  for (int t = 0; t < kT; ++t)
    for (int i = 0; i < R; ++i) acc[t][i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kGroupCols; ++k) {
    __m512 w[R];
    for (int i = 0; i < R; ++i) w[i] = _mm512_load_ps(tile + k * 32 + 16 * i);
    for (int t = 0; t < kT; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t * x_stride + k]);
      for (int i = 0; i < R; ++i) acc[t][i] = _mm512_fmadd_ps(w[i], xb, acc[t][i]);
    }
  }
  for (int t = 0; t < kT; ++t)
    for (int i = 0; i < R; ++i) {
      float* o = out + t * 32 + 16 * i;
      const __m512 prev = _mm512_load_ps(o);
      _mm512_store_ps(o, add ? _mm512_add_ps(prev, acc[t][i]) : _mm512_fmadd_ps(acc[t][i], scale[i], prev));
    }
}

// INT8/INT4: quad ch of panel i at w[i] + ch * stride (64 bytes: 16 rows × 4 k).
template <int R>
void int_tile_gemm(const uint8_t* const* w, int64_t stride, const ActivationView& a, int64_t t0, int64_t g,
                   const __m512* sw, float* out) {
  __m512i acc[kT][R];
  const int8_t* q[kT];
  for (int t = 0; t < kT; ++t) {
    q[t] = a.q + (t0 + t) * a.q_stride + g * kGroupCols;
    const __m512i comp = _mm512_set1_epi32(a.comp[(t0 + t) * a.groups + g]);
    for (int i = 0; i < R; ++i) acc[t][i] = comp;
  }
  for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
    __m512i wv[R];
    for (int i = 0; i < R; ++i) wv[i] = _mm512_load_si512(w[i] + ch * stride);
    for (int t = 0; t < kT; ++t) {
      const __m512i xb = broadcast_quad(q[t] + 4 * ch);
      for (int i = 0; i < R; ++i) acc[t][i] = dpbusd(acc[t][i], wv[i], xb);
    }
  }
  for (int t = 0; t < kT; ++t) {
    const __m512 sx = _mm512_set1_ps(a.scale[(t0 + t) * a.groups + g]);
    for (int i = 0; i < R; ++i) {
      float* o = out + t * 32 + 16 * i;
      const __m512 scale = _mm512_mul_ps(sw[i], sx);
      _mm512_store_ps(o, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t][i]), scale, _mm512_load_ps(o)));
    }
  }
}

// FP8/BF16 with vdpbf16ps (opt-in, PackedGemmArgs::bf16_dot): pair p (k = 2p, 2p + 1) of panel i
// at w[i] + p * stride u32 lanes (lane r = row r's bf16 pair); xb: the tokens' bf16 activations,
// whose 32-bit word at an even k is the pair (k, k + 1).
template <int R>
void bf16_tile_gemm(const uint32_t* const* w, int64_t stride, const uint16_t* xb, int64_t xb_stride, const __m512* scale,
                    bool add, float* out) {
  __m512 acc[kT][R];
  for (int t = 0; t < kT; ++t)
    for (int i = 0; i < R; ++i) acc[t][i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kGroupCols / 2; ++p) {
    __m512i wv[R];
    for (int i = 0; i < R; ++i) wv[i] = _mm512_load_si512(w[i] + p * stride);
    for (int t = 0; t < kT; ++t) {
      uint32_t pair;
      std::memcpy(&pair, xb + t * xb_stride + 2 * p, 4);
      const __m512bh xp = (__m512bh)_mm512_set1_epi32(int32_t(pair));
      for (int i = 0; i < R; ++i) acc[t][i] = _mm512_dpbf16_ps(acc[t][i], (__m512bh)wv[i], xp);
    }
  }
  for (int t = 0; t < kT; ++t)
    for (int i = 0; i < R; ++i) {
      float* o = out + t * 32 + 16 * i;
      const __m512 prev = _mm512_load_ps(o);
      _mm512_store_ps(o, add ? _mm512_add_ps(prev, acc[t][i]) : _mm512_fmadd_ps(acc[t][i], scale[i], prev));
    }
}

// x rows [0, tokens) as bf16 (RNE), k_padded each, into `out` (row stride k_padded).
void bf16_activations(const ActivationView& a, int64_t tokens, uint16_t* out) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t k = 0; k < a.k_padded; k += 16) {
      const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(a.x + t * a.x_stride + k));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * a.k_padded + k), v);
    }
}

// Up to 8 panel pairs share each group's pass over the activations: the group's x slice (all
// tokens × 128 k, 64 KB of f32 at 128 tokens) is read from L3 once per 8 pairs instead of once
// per pair (at 128 tokens x is 3.6 MB, more than L2, and re-reading it per pair made the FP8
// prefill L3-bound at ~25% of the FMA peak).
constexpr int64_t kPairsPerBlock = 8;

struct PrefillUnit {
  int64_t p0 = 0;
  int r = 2;                 // panels in the unit (1 or 2)
  float* tile = nullptr;     // FP8/BF16: f32 [128 k][32 rows]; BF16-dot FP8: u32 [64 pairs][32 rows]
  const uint32_t* pairs[2];  // BF16-dot: pair 0 of each panel
  int64_t pair_stride = 16;  // BF16-dot: u32 lanes between pairs
  uint8_t* bytes = nullptr;  // INT4: u8 [32 quads][2 panels][64]
  float* out = nullptr;      // f32 [tokens_padded, 32]: the unit's totals
  __m512 scale[2];           // FP8/BF16: per panel (BF16: 1)
  __m512 sw[2];              // INT: row scales of the group
  const uint8_t* quads[2];   // INT: quad 0 of each panel
  int64_t stride = 64;       // INT: bytes between quads
};

// BF16-dot units: BF16 pairs are used in place; FP8 groups are decoded once into pairs (value /
// 256 has at most 4 significant bits, so its upper 16 bits are the exact bf16).
template <Format F>
void prepare_dot_unit(const Ctx& c, int64_t g, PrefillUnit& u) {
  for (int i = 0; i < u.r; ++i) {
    const uint8_t* w = c.group(u.p0 + i, g);
    if constexpr (F == Format::kFP8) {
      u.scale[i] = _mm512_set1_ps(c.fp8_scale(u.p0 + i, g));
      uint32_t* tile = reinterpret_cast<uint32_t*>(u.tile);
      const __m512i high = _mm512_set1_epi32(int32_t(0xFFFF0000u));
      for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
        __m512 q[4];
        decode_fp8_quad(w + ch * 64, q);
        __m512i bits[4];
        for (int k = 0; k < 4; ++k) bits[k] = _mm512_castps_si512(_mm512_mul_ps(q[k], _mm512_set1_ps(kFp8XScale)));
        for (int h = 0; h < 2; ++h)
          _mm512_store_si512(tile + (2 * ch + h) * 32 + 16 * i,
                             _mm512_or_si512(_mm512_srli_epi32(bits[2 * h], 16), _mm512_and_si512(bits[2 * h + 1], high)));
      }
      u.pairs[i] = tile + 16 * i;
      u.pair_stride = 32;
    } else {
      u.scale[i] = _mm512_set1_ps(1.0f);
      u.pairs[i] = reinterpret_cast<const uint32_t*>(w);
      u.pair_stride = 16;
    }
  }
}

template <Format F>
void prepare_unit(const Ctx& c, int64_t g, PrefillUnit& u) {
  for (int i = 0; i < u.r; ++i) {
    const uint8_t* w = c.group(u.p0 + i, g);
    if constexpr (F == Format::kFP8) {
      u.scale[i] = _mm512_set1_ps(c.fp8_scale(u.p0 + i, g));
      for (int64_t ch = 0; ch < kGroupCols / 4; ++ch) {
        __m512 q[4];
        decode_fp8_quad(w + ch * 64, q);
        float* dst = u.tile + 4 * ch * 32 + 16 * i;
        for (int k = 0; k < 4; ++k) _mm512_store_ps(dst + 32 * k, _mm512_mul_ps(q[k], _mm512_set1_ps(kFp8XScale)));
      }
    } else if constexpr (F == Format::kBF16) {
      u.scale[i] = _mm512_set1_ps(1.0f);
      for (int64_t ch = 0; ch < kGroupCols / 2; ++ch) {
        __m512 w0, w1;
        decode_bf16_chunk(w + ch * 64, w0, w1);
        float* dst = u.tile + 2 * ch * 32 + 16 * i;
        _mm512_store_ps(dst, w0);
        _mm512_store_ps(dst + 32, w1);
      }
    } else if constexpr (F == Format::kINT8) {
      u.sw[i] = _mm512_load_ps(c.int_scales(u.p0 + i, g));
      u.quads[i] = w;
      u.stride = 64;
    } else {
      // Unpack the group's nibbles once: quad ch of panel i at bytes + ch * 128 + 64 i.
      u.sw[i] = _mm512_load_ps(c.int_scales(u.p0 + i, g));
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      for (int64_t ch = 0; ch < kGroupCols / 8; ++ch) {
        const __m512i v = _mm512_load_si512(w + ch * 64);
        _mm512_store_si512(u.bytes + (2 * ch) * 128 + 64 * i, _mm512_and_si512(v, low4));
        _mm512_store_si512(u.bytes + (2 * ch + 1) * 128 + 64 * i,
                           _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
      }
      u.quads[i] = u.bytes + 64 * i;
      u.stride = 128;
    }
  }
}

template <Format F, int R>
void run_unit(const Ctx& c, const PrefillUnit& u, int64_t g, int64_t t0, const uint16_t* xb) {
  const ActivationView& a = c.args.a;
  if (xb != nullptr) {
    if constexpr (F == Format::kFP8 || F == Format::kBF16)
      bf16_tile_gemm<R>(u.pairs, u.pair_stride, xb + t0 * a.k_padded + g * kGroupCols, a.k_padded, u.scale,
                        F == Format::kBF16, u.out + t0 * 32);
    return;
  }
  if constexpr (F == Format::kFP8 || F == Format::kBF16) {
    fp32_tile_gemm<R>(u.tile, a.x + t0 * a.x_stride + g * kGroupCols, a.x_stride, u.scale, F == Format::kBF16,
                      u.out + t0 * 32);
  } else {
    int_tile_gemm<R>(u.quads, u.stride, a, t0, g, u.sw, u.out + t0 * 32);
  }
}

// The next group's weights come from DRAM: without help, the first token block of every group
// waited for them (measured: INT8 prefill at 0.45 of the vpdpbusd peak in a layer against 0.67
// on L2-resident weights). Each (token block, unit) call prefetches its share of the unit's next
// group into L2, so the lines arrive while this group computes.
inline void prefetch_next_group(const Ctx& c, const PrefillUnit& u, int64_t g, int64_t block, int64_t blocks) {
  const int64_t lines = (c.args.w.layout.group_bytes + 63) / 64;
  const int64_t per_block = (lines + blocks - 1) / blocks;
  const int64_t begin = block * per_block, end = std::min(lines, begin + per_block);
  for (int i = 0; i < u.r; ++i) {
    const char* base = reinterpret_cast<const char*>(c.group(u.p0 + i, g));
    for (int64_t line = begin; line < end; ++line) _mm_prefetch(base + 64 * line, _MM_HINT_T1);
  }
}

template <Format F>
void prefill_block(const Ctx& c, int64_t p_begin, int64_t p_end, const uint16_t* xb) {
  const PackedGemmArgs& args = c.args;
  const int64_t tokens_padded = args.a.tokens_padded, groups = args.w.layout.groups;
  const int64_t units = (p_end - p_begin + 1) / 2;
  constexpr bool kFloatTile = F == Format::kFP8 || F == Format::kBF16;
  float* out = aligned_span(args.scratch->output, size_t(units * tokens_padded * 32));
  std::fill(out, out + units * tokens_padded * 32, 0.0f);
  float* tiles = kFloatTile ? aligned_span(args.scratch->tile, size_t(units * kGroupCols * 32)) : nullptr;
  uint8_t* bytes =
      F == Format::kINT4 ? aligned_span(args.scratch->bytes, size_t(units * kGroupCols * 32)) : nullptr;
  PrefillUnit unit[kPairsPerBlock];
  for (int64_t u = 0; u < units; ++u) {
    unit[u].p0 = p_begin + 2 * u;
    unit[u].r = int(std::min<int64_t>(2, p_end - unit[u].p0));
    unit[u].out = out + u * tokens_padded * 32;
    if (tiles) unit[u].tile = tiles + u * kGroupCols * 32;
    if (bytes) unit[u].bytes = bytes + u * kGroupCols * 32;
  }
  // Token blocks up to the last valid token (tokens_padded may hold one more block of zeros).
  const int64_t tokens_used = (args.tokens + kT - 1) / kT * kT;
  const int64_t blocks = tokens_used / kT;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t u = 0; u < units; ++u) {
      if (xb != nullptr) {
        prepare_dot_unit<F>(c, g, unit[u]);
      } else {
        prepare_unit<F>(c, g, unit[u]);
      }
    }
    for (int64_t t0 = 0, b = 0; t0 < tokens_used; t0 += kT, ++b)
      for (int64_t u = 0; u < units; ++u) {
        if (unit[u].r == 2) {
          run_unit<F, 2>(c, unit[u], g, t0, xb);
        } else {
          run_unit<F, 1>(c, unit[u], g, t0, xb);
        }
        if (g + 1 < groups) prefetch_next_group(c, unit[u], g + 1, b, blocks);
      }
  }
  for (int64_t u = 0; u < units; ++u)
    for (int64_t t = 0; t < args.tokens; ++t)
      for (int i = 0; i < unit[u].r; ++i)
        store_rows(c.y_at(t, unit[u].p0 + i), _mm512_load_ps(unit[u].out + t * 32 + 16 * i),
                   c.valid_rows(unit[u].p0 + i));
}

template <Format F>
void prefill(const Ctx& c) {
  // The opt-in BF16-dot path (cpu/packed_gemm.h): the call's activations as bf16 once. Calls
  // over other panel ranges of the same matrix convert them again (tokens·k per call against
  // tokens·k·rows·2 of GEMM; kept here rather than in ActivationBuffers so the flag stays a
  // kernel argument).
  uint16_t* xb = nullptr;
  if constexpr (F == Format::kFP8 || F == Format::kBF16) {
    if (c.args.bf16_dot && cpu_features().avx512_bf16) {
      const int64_t tokens_used = (c.args.tokens + kT - 1) / kT * kT;
      xb = aligned_span(c.args.scratch->bf16_x, size_t(tokens_used * c.args.a.k_padded));
      bf16_activations(c.args.a, tokens_used, xb);
    }
  }
  for (int64_t p = c.args.panel_begin; p < c.args.panel_end; p += 2 * kPairsPerBlock)
    prefill_block<F>(c, p, std::min(c.args.panel_end, p + 2 * kPairsPerBlock), xb);
}

template <Format F>
void run(const PackedGemmArgs& args) {
  const Ctx c{args};
  if (args.tokens < kPrefillMinTokens) {
    decode<F>(c);
  } else {
    prefill<F>(c);
  }
}

}  // namespace

void packed_gemm_avx512(const PackedGemmArgs& args) {
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
