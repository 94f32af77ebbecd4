// Small FP32 vector ops of the forward pass. dot and axpy (the attention core's inner loops)
// have an AVX-512 path chosen once from active_isa(); both paths give the same bits:
//   dot   64 lane sums, element i into lane i mod 64 in order, each step lane = lane + a·b
//         (multiply, then add: no fma), then the lanes halved 32, 16, 8, 4, 2, 1 (lane j += lane
//         j + width). 64 lanes = 4 independent 16-wide vector chains, so a 512-long dot is not
//         bound by the add latency.
//   axpy  y[i] = y[i] + alpha·x[i] (multiply, then add), element by element.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace hetmoe::cpu {

float dot(const float* a, const float* b, int64_t n);
// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t n);
// The same with an explicit path (tests).
float dot(const float* a, const float* b, int64_t n, Isa isa);
void axpy(float alpha, const float* x, float* y, int64_t n, Isa isa);
// RMSNorm in FP32: out = w * x / sqrt(mean(x²) + eps). `out` may alias `x`.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// In-place softmax over n values (max-subtracted, FP32).
void softmax(float* values, int64_t n);

namespace kernels {
float dot_avx512(const float* a, const float* b, int64_t n);
void axpy_avx512(float alpha, const float* x, float* y, int64_t n);
}  // namespace kernels

}  // namespace hetmoe::cpu
