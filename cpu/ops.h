// Small FP32 vector ops of the forward pass. dot and axpy (the attention core's inner loops)
// have AVX2 and AVX-512 paths chosen once from active_isa(); every path gives the same bits:
//   dot   64 lane sums, element i into lane i mod 64 in order, each step lane = lane + a·b
//         (multiply, then add: no fma), then the lanes halved 32, 16, 8, 4, 2, 1 (lane j += lane
//         j + width). 64 lanes = 4 independent 16-wide vector chains (8 of 8 on AVX2), so a
//         512-long dot is not bound by the add latency.
//   axpy  y[i] = y[i] + alpha·x[i] (multiply, then add), element by element.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace hetmoe::cpu {

float dot(const float* a, const float* b, int64_t n);
// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t n);
// y += alpha[r] · rows[r · stride ...] for r = 0 … count − 1 in order: the same bits as count
// axpy calls, with y kept in registers across the rows on AVX-512.
void axpy_rows(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n);
// out[r] = dot(x, rows[r · stride ...], n) for r < count: the same bits as count dot calls,
// 4 rows sharing each load of x on AVX-512.
void dot_rows(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out);
// The same with an explicit path (tests).
float dot(const float* a, const float* b, int64_t n, Isa isa);
void axpy(float alpha, const float* x, float* y, int64_t n, Isa isa);
void axpy_rows(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n, Isa isa);
void dot_rows(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out, Isa isa);
// RMSNorm in FP32: out = w * x / sqrt(mean(x²) + eps). `out` may alias `x`.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// In-place softmax over n values (max-subtracted, FP32).
void softmax(float* values, int64_t n);

namespace kernels {
float dot_avx512(const float* a, const float* b, int64_t n);
void axpy_avx512(float alpha, const float* x, float* y, int64_t n);
void axpy_rows_avx512(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n);
void dot_rows_avx512(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out);
float dot_avx2(const float* a, const float* b, int64_t n);
void axpy_avx2(float alpha, const float* x, float* y, int64_t n);
void axpy_rows_avx2(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n);
void dot_rows_avx2(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out);
}  // namespace kernels

}  // namespace hetmoe::cpu
