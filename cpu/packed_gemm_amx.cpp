// INT8/INT4 prefill GEMM on Intel AMX tiles: compiled with its own flags, called only when
// cpu_features() says the CPU has AMX-INT8 and the kernel granted the tile state.
// Numerics: cpu/packed_gemm.h, bitwise the scalar path.
//
// NOTES:
// - The packed INT layouts already are AMX's B-tile layout: a group's 32 k-quads × 16 rows ×
//   4 bytes are two tiles of 16 quad-rows × 64 bytes (k 0..63, 64..127). The weights are stored
//   unsigned (q + 128, nibble q + 8); the group is copied once into an L1 buffer as signed q
//   (xor 0x80 / nibble − 8), so tdpbssd gives Σ q_w·q_x, which is exactly the other paths'
//   comp + Σ u8(w)·q_x. No comp, no saturation (|Σ| ≤ 128·127·128).
// - Tiles: C0..C3 = 2 token blocks × 2 panels (16 × 16 int32), A4/A5 = 16 tokens × 64 k of q
//   (s8), B6/B7 = 2 panels' quads. One group of a panel pair: per 32 tokens 8 tdpbssd.
// - The per-group scale cannot live in the tile: after each group the C tiles go to memory and
//   total = fma(float(acc), sw·sx, total) runs on AVX-512, 3 vector ops per 16 outputs. That
//   fix-up, not the tile unit, is what limits this kernel (docs/KERNELS.md).
#include <immintrin.h>

#include <algorithm>

#include "cpu/packed_gemm.h"

namespace hetmoe::cpu::kernels {
namespace {

using Format = PackedFormat;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows × 64 bytes; configured per call and released at the end, so a thread
// holds tile state only while it computes (context switches stay cheap).
class TileScope {
 public:
  TileScope() {
    TileConfig config;
    for (int i = 0; i < 8; ++i) {
      config.rows[i] = 16;
      config.colsb[i] = 64;
    }
    _tile_loadconfig(&config);
  }
  ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

constexpr int64_t kGroupWeightBytes = kGroupCols * kPanelRows;  // 2048 signed bytes per panel

// The group's weights of panel `panel` as signed bytes in B-tile order, and its 16 row scales.
template <Format F>
void load_group(const PackedGemmArgs& args, int64_t panel, int64_t g, int8_t* out, __m512* sw) {
  const PackedLayout& l = args.w.layout;
  const uint8_t* group = args.w.panel(panel) + l.header_bytes + g * l.group_bytes;
  *sw = _mm512_load_ps(group + l.group_bytes - 64);
  if constexpr (F == Format::kINT8) {
    const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
    for (int64_t ch = 0; ch < kGroupCols / 4; ++ch)
      _mm512_store_si512(out + ch * 64, _mm512_xor_si512(_mm512_load_si512(group + ch * 64), flip));
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    for (int64_t ch = 0; ch < kGroupCols / 8; ++ch) {
      const __m512i v = _mm512_load_si512(group + ch * 64);
      const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, low4), eight);
      const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low4), eight);
      _mm512_store_si512(out + (2 * ch) * 64, lo);
      _mm512_store_si512(out + (2 * ch + 1) * 64, hi);
    }
  }
}

// The next group's packed bytes into L2 while this group computes.
inline void prefetch_group(const PackedGemmArgs& args, int64_t panel, int64_t g) {
  const PackedLayout& l = args.w.layout;
  const char* base = reinterpret_cast<const char*>(args.w.panel(panel) + l.header_bytes + g * l.group_bytes);
  for (int64_t off = 0; off < l.group_bytes; off += 64) _mm_prefetch(base + off, _MM_HINT_T1);
}

// C tiles (16 tokens × 16 rows, int32) of one group -> out[t][16 i + r] += float(acc)·(sw·sx).
inline void fix_up(const int32_t* c, __m512 sw, const float* sx, int64_t sx_stride, float* out) {
  for (int t = 0; t < 16; ++t) {
    const __m512 acc = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t));
    const __m512 scale = _mm512_mul_ps(sw, _mm512_set1_ps(sx[t * sx_stride]));
    float* o = out + t * 32;
    _mm512_store_ps(o, _mm512_fmadd_ps(acc, scale, _mm512_load_ps(o)));
  }
}

// One group, `MB` blocks of 16 tokens (1 or 2) × `R` panels (1 or 2) from token row t0: the
// products into the C tiles, stored at c (int32 [2 m + i][16 tokens][16 rows]).
template <int MB, int R>
void tile_block(const ActivationView& a, const int8_t* w, int64_t g, int64_t t0, int32_t* c) {
  _tile_zero(0);
  if constexpr (R == 2) _tile_zero(1);
  if constexpr (MB == 2) _tile_zero(2);
  if constexpr (MB == 2 && R == 2) _tile_zero(3);
  const int8_t* q = a.q + t0 * a.q_stride + g * kGroupCols;
  for (int half = 0; half < 2; ++half) {
    _tile_loadd(4, q + 64 * half, a.q_stride);
    if constexpr (MB == 2) _tile_loadd(5, q + 16 * a.q_stride + 64 * half, a.q_stride);
    _tile_loadd(6, w + 1024 * half, 64);
    if constexpr (R == 2) _tile_loadd(7, w + kGroupWeightBytes + 1024 * half, 64);
    _tile_dpbssd(0, 4, 6);
    if constexpr (R == 2) _tile_dpbssd(1, 4, 7);
    if constexpr (MB == 2) _tile_dpbssd(2, 5, 6);
    if constexpr (MB == 2 && R == 2) _tile_dpbssd(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  if constexpr (R == 2) _tile_stored(1, c + 256, 64);
  if constexpr (MB == 2) _tile_stored(2, c + 512, 64);
  if constexpr (MB == 2 && R == 2) _tile_stored(3, c + 768, 64);
}

struct Block {
  int64_t t0 = 0;
  int mb = 0;  // 0: none
};

template <int R>
void fix_up_block(const ActivationView& a, Block b, int64_t g, const __m512* sw, const int32_t* c, float* out) {
  const float* sx = a.scale + b.t0 * a.groups + g;
  for (int m = 0; m < b.mb; ++m)
    for (int i = 0; i < R; ++i)
      fix_up(c + 256 * (2 * m + i), sw[i], sx + 16 * m * a.groups, a.groups, out + (b.t0 + 16 * m) * 32 + 16 * i);
}

// All token blocks of one group. A block's C tiles are fixed up while the next block's products
// run: reading them back right after the tile stores stalls on the stores (measured: fixing up
// the previous block instead is ~10% faster).
template <int R>
void group_tokens(const ActivationView& a, const int8_t* w, int64_t g, int64_t tokens16, const __m512* sw,
                  int32_t* c, float* out) {
  Block pending;
  int parity = 0;
  for (int64_t t0 = 0; t0 < tokens16; t0 += 32, parity ^= 1) {
    const Block b{t0, tokens16 - t0 >= 32 ? 2 : 1};
    int32_t* cb = c + 1024 * parity;
    if (b.mb == 2) {
      tile_block<2, R>(a, w, g, t0, cb);
    } else {
      tile_block<1, R>(a, w, g, t0, cb);
    }
    if (pending.mb) fix_up_block<R>(a, pending, g, sw, c + 1024 * (parity ^ 1), out);
    pending = b;
  }
  fix_up_block<R>(a, pending, g, sw, c + 1024 * (parity ^ 1), out);
}

template <Format F>
void prefill(const PackedGemmArgs& args) {
  const PackedLayout& l = args.w.layout;
  const ActivationView& a = args.a;
  const int64_t tokens16 = (args.tokens + 15) / 16 * 16;  // ≤ a.tokens_padded
  args.scratch->output.resize(size_t(tokens16 * 32 + 16));
  float* out = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(args.scratch->output.data()) + 63) & ~uintptr_t(63));
  alignas(64) int8_t w[2 * kGroupWeightBytes];
  alignas(64) int32_t c[2 * 4 * 256];
  const TileScope tiles;
  for (int64_t p0 = args.panel_begin; p0 < args.panel_end; p0 += 2) {
    const int r = int(std::min<int64_t>(2, args.panel_end - p0));
    std::fill(out, out + tokens16 * 32, 0.0f);
    __m512 sw[2];
    for (int64_t g = 0; g < l.groups; ++g) {
      for (int i = 0; i < r; ++i) {
        load_group<F>(args, p0 + i, g, w + i * kGroupWeightBytes, &sw[i]);
        if (g + 1 < l.groups) prefetch_group(args, p0 + i, g + 1);
      }
      if (r == 2) {
        group_tokens<2>(a, w, g, tokens16, sw, c, out);
      } else {
        group_tokens<1>(a, w, g, tokens16, sw, c, out);
      }
    }
    for (int64_t t = 0; t < args.tokens; ++t)
      for (int i = 0; i < r; ++i) {
        const int64_t valid = std::min<int64_t>(kPanelRows, l.rows - (p0 + i) * kPanelRows);
        float* y = args.y + t * args.y_stride + (p0 + i - args.panel_begin) * kPanelRows;
        const __m512 v = _mm512_load_ps(out + t * 32 + 16 * i);
        if (valid >= 16) {
          _mm512_storeu_ps(y, v);
        } else {
          _mm512_mask_storeu_ps(y, __mmask16((1u << valid) - 1), v);
        }
      }
  }
}

}  // namespace

void packed_gemm_amx(const PackedGemmArgs& args) {
  if (args.w.layout.format == Format::kINT8) {
    prefill<Format::kINT8>(args);
  } else {
    prefill<Format::kINT4>(args);
  }
}

}  // namespace hetmoe::cpu::kernels
