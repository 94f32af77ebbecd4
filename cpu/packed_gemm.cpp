// Dispatch, and the portable scalar path: the numerics of packed_gemm.h written out one output
// element at a time. Every vector path must give exactly these bits.
#include "cpu/packed_gemm.h"

#include <cassert>
#include <cmath>

#include "engine/core/dtype.h"

namespace hetmoe::cpu {

int64_t padded_tokens(int64_t tokens) {
  if (tokens < kPrefillMinTokens) return tokens;
  return (tokens + kPrefillPadTokens - 1) / kPrefillPadTokens * kPrefillPadTokens;
}

void packed_gemm(const PackedGemmArgs& args, Isa isa) {
  assert(args.a.tokens_padded >= padded_tokens(args.tokens));
  assert(args.a.k_padded == args.w.layout.k_padded());
  const bool int_format =
      args.w.layout.format == PackedFormat::kINT8 || args.w.layout.format == PackedFormat::kINT4;
  if (isa == Isa::kAmx && !(int_format && args.tokens >= kPrefillMinTokens))
    isa = Isa::kAvx512;  // tiles only pay off for the INT prefill GEMM
  if (isa == Isa::kAvx512 && int_format && !cpu_features().avx512_vnni)
    isa = Isa::kAvx2;  // same bits, no vpdpbusd
  switch (isa) {
    case Isa::kAmx:
      return kernels::packed_gemm_amx(args);
    case Isa::kAvx512:
      return kernels::packed_gemm_avx512(args);
    case Isa::kAvx2:
      return kernels::packed_gemm_avx2(args);
    case Isa::kScalar:
      return kernels::packed_gemm_scalar(args);
  }
}

namespace kernels {
namespace {

float fp8_over_256(uint8_t code) {
  return fp8_e4m3_table()[code] * (1.0f / 256.0f);
}

float element(const PackedGemmArgs& args, int64_t panel, int64_t r, int64_t t) {
  const PackedLayout& l = args.w.layout;
  const ActivationView& a = args.a;
  const uint8_t* base = args.w.panel(panel);
  float total = 0.0f;
  for (int64_t g = 0; g < l.groups; ++g) {
    const uint8_t* group = base + l.header_bytes + g * l.group_bytes;
    switch (l.format) {
      case PackedFormat::kFP8: {
        const float* x = a.x + t * a.x_stride + g * kGroupCols;
        float blk = 0.0f;
        for (int64_t k = 0; k < kGroupCols; ++k) blk = std::fma(fp8_over_256(group[quad_byte(r, k)]), x[k], blk);
        total = std::fma(blk, reinterpret_cast<const float*>(base)[g], total);
        break;
      }
      case PackedFormat::kBF16: {
        const float* x = a.x + t * a.x_stride + g * kGroupCols;
        const uint16_t* w = reinterpret_cast<const uint16_t*>(group);
        float blk = 0.0f;
        for (int64_t k = 0; k < kGroupCols; ++k)
          blk = std::fma(bf16_to_float(w[((k / 2) * 16 + r) * 2 + k % 2]), x[k], blk);
        total = total + blk;
        break;
      }
      case PackedFormat::kINT8:
      case PackedFormat::kINT4: {
        const int8_t* q = a.q + t * a.q_stride + g * kGroupCols;
        int32_t acc = a.comp[t * a.groups + g];
        for (int64_t k = 0; k < kGroupCols; ++k) {
          int w = 0;
          if (l.format == PackedFormat::kINT8) {
            w = group[quad_byte(r, k)];
          } else {
            const uint8_t byte = group[(k / 8) * 64 + 4 * r + k % 4];
            w = (k % 8) < 4 ? (byte & 0xF) : (byte >> 4);
          }
          acc += w * int32_t(q[k]);
        }
        const float sw = reinterpret_cast<const float*>(group + l.group_bytes - 64)[r];
        const float scale = sw * a.scale[t * a.groups + g];
        total = std::fma(float(acc), scale, total);
        break;
      }
    }
  }
  return total;
}

}  // namespace

void packed_gemm_scalar(const PackedGemmArgs& args) {
  for (int64_t p = args.panel_begin; p < args.panel_end; ++p)
    for (int64_t r = 0; r < kPanelRows; ++r) {
      const int64_t row = p * kPanelRows + r;
      if (row >= args.w.layout.rows) break;
      for (int64_t t = 0; t < args.tokens; ++t)
        args.y[t * args.y_stride + row - args.panel_begin * kPanelRows] = element(args, p, r, t);
    }
}

}  // namespace kernels
}  // namespace hetmoe::cpu
