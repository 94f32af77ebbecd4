#include "cpu/activation.h"

#include <cmath>
#include <cstring>

#include "cpu/packed_matrix.h"

namespace hetmoe::cpu {
namespace {

// min/max with the SSE semantics (second operand when either is NaN), as the vector paths do.
inline float min_sse(float a, float b) {
  return a < b ? a : b;
}
inline float max_sse(float a, float b) {
  return a > b ? a : b;
}

}  // namespace

float exp_approx(float x) {
  x = max_sse(min_sse(x, 88.3f), -87.3f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(-n, 0.693359375f, x);
  r = std::fma(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  const float e = std::fma(p, r * r, r) + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return e * two_n;
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out, Isa isa) {
  if (has_avx512(isa)) return kernels::silu_mul_avx512(gate, up, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + exp_approx(-gate[i])) * up[i];
}

void quantize_activation_group(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum, Isa isa) {
  if (has_avx512(isa) && kernels::quantize_activation_group_avx512(x, n, q, scale, sum)) return;
  quantize_activation_group(x, n, q, scale, sum);
}

}  // namespace hetmoe::cpu
