// The element-wise activation work of the expert FFN, with one definition on every kernel
// path so the FFN stays bitwise identical across ISAs (cpu/packed_gemm.h's promise):
//
//   silu_mul: out = g / (1 + exp(-g)) · u, with exp = hetmoe's own Cephes-style expf (range
//     reduction by ln 2, degree-6 polynomial, all FMAs written out, argument clamped to
//     [-87.3, 88.3]); the vector paths perform the same IEEE operations. (libm's expf would
//     differ from any vector exp, and at 128 tokens the scalar libm call costs ~15% of an INT8
//     expert's prefill.)
//   quantize_activations: per (token, group of 128) as packed_matrix.h defines it.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace hetmoe::cpu {

float exp_approx(float x);  // the scalar definition (max relative error ~2e-7 in range)

void silu_mul(const float* gate, const float* up, int64_t n, float* out, Isa isa);

// x: n values (n ≤ 128; the group's other values are taken as 0) -> q[128], scale, Σq.
void quantize_activation_group(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum, Isa isa);

namespace kernels {
void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out);
// Returns false (and writes nothing) for a group holding NaN or Inf: the caller falls back to
// the scalar definition.
bool quantize_activation_group_avx512(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum);
}  // namespace kernels

}  // namespace hetmoe::cpu
