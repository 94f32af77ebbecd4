#include "cpu/ops.h"

#include <algorithm>
#include <cmath>

#include <xsimd/xsimd.hpp>

namespace hetmoe::cpu {

using Batch = xsimd::batch<float>;

float dot(const float* a, const float* b, int64_t n) {
  constexpr int64_t kLanes = int64_t(Batch::size);
  Batch acc0(0.0f), acc1(0.0f);
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 = xsimd::fma(Batch::load_unaligned(a + i), Batch::load_unaligned(b + i), acc0);
    acc1 = xsimd::fma(Batch::load_unaligned(a + i + kLanes), Batch::load_unaligned(b + i + kLanes), acc1);
  }
  float sum = xsimd::hadd(acc0 + acc1);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += double(x[i]) * double(x[i]);
  const float inverse = 1.0f / std::sqrt(float(sum_squares / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inverse);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void softmax(float* values, int64_t n) {
  const float max_value = *std::max_element(values, values + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    values[i] = std::exp(values[i] - max_value);
    sum += values[i];
  }
  const float inverse = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) values[i] *= inverse;
}

}  // namespace hetmoe::cpu
