// The FFN's element-wise work: every path equals the scalar definition bit for bit (NaN, Inf,
// signed zeros, tails included), and hetmoe's exp is accurate.
#include "cpu/activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/packed_matrix.h"

namespace hetmoe::cpu {
namespace {

TEST(ExpApprox, RelativeErrorBelow3e7) {
  for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
    const double expected = std::exp(double(x));
    ASSERT_NEAR(exp_approx(x), expected, 3e-7 * expected) << x;
  }
  EXPECT_EQ(exp_approx(0.0f), 1.0f);
  EXPECT_GT(exp_approx(1000.0f), 1e38f);  // clamped, finite
  EXPECT_GT(exp_approx(-1000.0f), 0.0f);
}

std::vector<float> awkward_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  const float specials[] = {0.0f,
                            -0.0f,
                            88.5f,
                            -88.5f,
                            1e-30f,
                            -1e-30f,
                            200.0f,
                            -200.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            1e-45f};
  for (size_t i = 0; i < std::size(specials) && i * 7 < n; ++i) v[i * 7] = specials[i];
  return v;
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b));
}

class ActivationPaths : public ::testing::TestWithParam<Isa> {};

TEST_P(ActivationPaths, SiluMatchesScalarBits) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (size_t n : {1, 15, 16, 17, 200}) {
    const std::vector<float> g = awkward_values(n, uint32_t(n)), u = awkward_values(n, uint32_t(n + 1));
    std::vector<float> got(n), expected(n);
    silu_mul(g.data(), u.data(), int64_t(n), got.data(), isa);
    silu_mul(g.data(), u.data(), int64_t(n), expected.data(), Isa::kScalar);
    for (size_t i = 0; i < n; ++i)
      ASSERT_TRUE(same_bits(got[i], expected[i])) << i << ": g=" << g[i] << " u=" << u[i];
  }
}

TEST_P(ActivationPaths, QuantisationMatchesScalarBits) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (int64_t n : {0, 1, 17, 100, 128}) {
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<float> x = awkward_values(128, uint32_t(n * 3 + variant));
      if (variant == 0)
        for (auto& v : x) v = std::isfinite(v) ? v : 1.0f;  // finite only
      if (variant == 2) std::fill(x.begin(), x.end(), 0.0f);
      int8_t q1[128], q2[128];
      float s1 = -1, s2 = -1;
      int32_t sum1 = -1, sum2 = -1;
      quantize_activation_group(x.data(), n, q1, &s1, &sum1, isa);
      quantize_activation_group(x.data(), n, q2, &s2, &sum2);
      ASSERT_TRUE(same_bits(s1, s2)) << n << " " << variant;
      ASSERT_EQ(sum1, sum2);
      ASSERT_EQ(0, std::memcmp(q1, q2, 128));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, ActivationPaths, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

}  // namespace
}  // namespace hetmoe::cpu
