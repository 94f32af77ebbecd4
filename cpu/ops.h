// Small FP32 vector ops of the forward pass (portable xsimd code; the reference for any
// faster path).
#pragma once

#include <cstdint>

namespace hetmoe::cpu {

float dot(const float* a, const float* b, int64_t n);
// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t n);
// RMSNorm in FP32: out = w * x / sqrt(mean(x²) + eps). `out` may alias `x`.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// In-place softmax over n values (max-subtracted, FP32).
void softmax(float* values, int64_t n);

}  // namespace hetmoe::cpu
