// y = W x for a packed weight matrix (cpu/packed_matrix.h) over a range of its 16-row panels:
// the kernel under the expert FFN.
//
// Two kernel shapes per format and ISA, chosen by the token count: decode (few tokens) fuses
// the weight decode into the dot products and streams each panel once; prefill (many tokens)
// decodes a panel pair's group once into an L1 tile and runs a register-blocked GEMM over
// 8-token blocks (FP8/BF16: fp32 FMA; INT8/INT4: vpdpbusd on int8 activations, or AMX tiles
// with Isa::kAmx: 16 tokens × 16 rows × 64 k per tdpbssd).
//
// Numerics, the same for every kernel shape and ISA path, so a result never depends on the
// ISA, the token count, the batch or the thread count (bitwise):
//   FP8   per (token, row): for each group of 128 k in order, blk = Σ_k fma(w/256, x, blk)
//         sequentially from 0; total = fma(blk, 256·scale, total). (The SIMD paths form each
//         product as (w·2^-120)·(x·2^112), the same real number: cpu/fp8_avx512.h.)
//   BF16  the same with scale 1 (total = blk + total).
//   INT8/INT4  acc = comp + Σ_k u8(w)·q(x) (int32, exact); total = fma(float(acc), sw·sx, total).
//
// One opt-in exception (PackedGemmArgs::bf16_dot, HETMOE_FLOAT_PREFILL=bf16dot): the FP8/BF16
// prefill GEMM on AVX-512 with AVX512_BF16 multiplies bf16-rounded activations with
// vdpbf16ps, per group acc = Σ_pairs dpbf16(w, bf16(x)), total as above. Weights are exact
// (FP8 value / 256 and BF16 are bf16 values); the activations are not, and a prompt's tokens
// then differ from the same tokens decoded one at a time. Elsewhere the flag is ignored.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/packed_matrix.h"

namespace hetmoe::cpu {

// Below this many tokens the decode kernel runs (in chunks of up to 4 tokens); from it on the
// prefill GEMM. A speed choice only: both give the same bits.
inline constexpr int64_t kPrefillMinTokens = 8;
// Prefill token rows come in multiples of this (ActivationView::tokens_padded): an AMX tile
// holds 16 token rows; the AVX-512 kernel's 8-token register blocks stop at the last valid one.
inline constexpr int64_t kPrefillPadTokens = 16;

// Per-thread working memory of the prefill kernels, grown on first use.
struct GemmScratch {
  std::vector<float> tile;     // decoded weight tile
  std::vector<float> output;   // f32 [tokens_padded, 32] totals of one panel pair
  std::vector<uint8_t> bytes;  // unpacked INT4 tile
  std::vector<uint16_t> bf16_x;  // bf16 activations of the opt-in BF16-dot prefill
};

struct PackedGemmArgs {
  PackedMatrix w;
  ActivationView a;
  int64_t tokens = 0;  // valid token rows of x and y (≤ a.tokens_padded)
  int64_t panel_begin = 0;
  int64_t panel_end = 0;
  // f32 [tokens, y_stride]: y[t * y_stride + j] = output row 16 * panel_begin + j, written for
  // rows < w.layout.rows only.
  float* y = nullptr;
  int64_t y_stride = 0;
  GemmScratch* scratch = nullptr;
  bool bf16_dot = false;  // FP8/BF16 prefill with vdpbf16ps where the CPU has it (see above)
};

void packed_gemm(const PackedGemmArgs& args, Isa isa);

// Tokens rounded up to what the kernel for `tokens` needs in ActivationView::tokens_padded.
int64_t padded_tokens(int64_t tokens);

namespace kernels {
// 64-byte aligned storage for `count` elements inside a scratch vector (GemmScratch's fields).
template <class T>
T* aligned_span(std::vector<T>& v, size_t count) {
  v.resize(count + 64 / sizeof(T));
  auto address = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<T*>((address + 63) & ~uintptr_t(63));
}

void packed_gemm_scalar(const PackedGemmArgs& args);
void packed_gemm_avx2(const PackedGemmArgs& args);
void packed_gemm_avx512(const PackedGemmArgs& args);
void packed_gemm_amx(const PackedGemmArgs& args);  // INT8/INT4, tokens >= kPrefillMinTokens
}  // namespace kernels

}  // namespace hetmoe::cpu
