#include "cpu/ops.h"

#include <algorithm>
#include <cmath>

#include <xsimd/xsimd.hpp>

namespace hetmoe::cpu {

using Batch = xsimd::batch<float>;

namespace {

constexpr int kDotLanes = 64;

// xsimd batches of the build's baseline width (4 on SSE2), 64 / width of them side by side.
float dot_portable(const float* a, const float* b, int64_t n) {
  constexpr int kWidth = int(Batch::size), kBatches = kDotLanes / kWidth;
  static_assert(kDotLanes % kWidth == 0);
  Batch acc[kBatches];
  for (auto& v : acc) v = Batch(0.0f);
  int64_t i = 0;
  for (; i + kDotLanes <= n; i += kDotLanes)
    for (int k = 0; k < kBatches; ++k)
      acc[k] = acc[k] + Batch::load_unaligned(a + i + k * kWidth) * Batch::load_unaligned(b + i + k * kWidth);
  alignas(64) float lane[kDotLanes];
  for (int k = 0; k < kBatches; ++k) acc[k].store_aligned(lane + k * kWidth);
  for (int j = 0; i + j < n; ++j) lane[j] = lane[j] + a[i + j] * b[i + j];
  for (int width = kDotLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) lane[j] = lane[j] + lane[j + width];
  return lane[0];
}

void axpy_portable(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] + alpha * x[i];
}

// The path of the calls without an Isa, chosen once.
Isa default_isa() {
  static const Isa isa = active_isa();
  return isa;
}

}  // namespace

float dot(const float* a, const float* b, int64_t n, Isa isa) {
  if (has_avx512(isa)) return kernels::dot_avx512(a, b, n);
  return isa == Isa::kAvx2 ? kernels::dot_avx2(a, b, n) : dot_portable(a, b, n);
}

void axpy(float alpha, const float* x, float* y, int64_t n, Isa isa) {
  if (has_avx512(isa)) return kernels::axpy_avx512(alpha, x, y, n);
  if (isa == Isa::kAvx2) return kernels::axpy_avx2(alpha, x, y, n);
  axpy_portable(alpha, x, y, n);
}

void axpy_rows(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n, Isa isa) {
  if (has_avx512(isa)) return kernels::axpy_rows_avx512(alpha, rows, stride, count, y, n);
  if (isa == Isa::kAvx2) return kernels::axpy_rows_avx2(alpha, rows, stride, count, y, n);
  for (int64_t r = 0; r < count; ++r) axpy_portable(alpha[r], rows + r * stride, y, n);
}

void dot_rows(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out, Isa isa) {
  if (has_avx512(isa)) return kernels::dot_rows_avx512(x, rows, stride, count, n, out);
  if (isa == Isa::kAvx2) return kernels::dot_rows_avx2(x, rows, stride, count, n, out);
  for (int64_t r = 0; r < count; ++r) out[r] = dot_portable(x, rows + r * stride, n);
}

float dot(const float* a, const float* b, int64_t n) { return dot(a, b, n, default_isa()); }

void axpy(float alpha, const float* x, float* y, int64_t n) { axpy(alpha, x, y, n, default_isa()); }

void axpy_rows(const float* alpha, const float* rows, int64_t stride, int64_t count, float* y, int64_t n) {
  axpy_rows(alpha, rows, stride, count, y, n, default_isa());
}

void dot_rows(const float* x, const float* rows, int64_t stride, int64_t count, int64_t n, float* out) {
  dot_rows(x, rows, stride, count, n, out, default_isa());
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
