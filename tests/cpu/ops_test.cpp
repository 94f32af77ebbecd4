// dot and axpy on every path against a double reference (dot: |error| ≤ 1e-6 · Σ|a·b| for the
// lengths used here, f32 sums of ≤ 16 terms per lane plus a 6-level tree), and every path equal
// to the portable one bit for bit, for lengths around the 16- and 64-lane boundaries.
#include "cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace hetmoe::cpu {
namespace {

constexpr int64_t kLengths[] = {0, 1, 3, 15, 16, 17, 48, 63, 64, 65, 100, 128, 512, 576, 1000};

std::vector<float> random_vector(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(size_t(n) + 1);  // + 1: never read past n
  for (auto& x : v) x = normal(rng);
  return v;
}

class OpsPaths : public ::testing::TestWithParam<Isa> {};

TEST_P(OpsPaths, DotMatchesReferenceAndPortableBits) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (int64_t n : kLengths) {
    const std::vector<float> a = random_vector(n, uint32_t(n + 1)), b = random_vector(n, uint32_t(n + 7));
    double expected = 0, magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      expected += double(a[size_t(i)]) * double(b[size_t(i)]);
      magnitude += std::fabs(double(a[size_t(i)]) * double(b[size_t(i)]));
    }
    const float value = dot(a.data(), b.data(), n, isa);
    EXPECT_NEAR(value, expected, 1e-6 * magnitude + 1e-30) << "n " << n;
    const float portable = dot(a.data(), b.data(), n, Isa::kScalar);
    EXPECT_EQ(0, std::memcmp(&value, &portable, sizeof(float))) << "n " << n << ": " << value << " vs " << portable;
  }
}

TEST_P(OpsPaths, AxpyMatchesPortableBits) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (int64_t n : kLengths) {
    const std::vector<float> x = random_vector(n, uint32_t(n + 3));
    const std::vector<float> y0 = random_vector(n, uint32_t(n + 5));
    std::vector<float> y = y0, portable = y0;
    const float sentinel = y[size_t(n)];
    axpy(0.37f, x.data(), y.data(), n, isa);
    axpy(0.37f, x.data(), portable.data(), n, Isa::kScalar);
    EXPECT_EQ(0, std::memcmp(y.data(), portable.data(), size_t(n) * sizeof(float))) << "n " << n;
    EXPECT_EQ(y[size_t(n)], sentinel) << "wrote past n = " << n;
    for (int64_t i = 0; i < n; ++i)
      ASSERT_FLOAT_EQ(y[size_t(i)], y0[size_t(i)] + 0.37f * x[size_t(i)]);
  }
}

// The row forms equal their one-row calls bit for bit (row counts around the 4-row blocks, a row
// stride wider than n).
TEST_P(OpsPaths, RowFormsMatchSingleCalls) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (int64_t n : {1, 17, 64, 130, 512}) {
    for (int64_t count : {1, 3, 4, 9}) {
      const int64_t stride = n + 5;
      const std::vector<float> rows = random_vector(count * stride, uint32_t(n * 31 + count));
      const std::vector<float> x = random_vector(n, uint32_t(n + count)), alpha = random_vector(count, 99);
      std::vector<float> out(static_cast<size_t>(count));
      dot_rows(x.data(), rows.data(), stride, count, n, out.data(), isa);
      const std::vector<float> y0 = random_vector(n, 7);
      std::vector<float> y = y0, expected_y = y0;
      axpy_rows(alpha.data(), rows.data(), stride, count, y.data(), n, isa);
      for (int64_t r = 0; r < count; ++r) {
        const float expected = dot(x.data(), rows.data() + r * stride, n, Isa::kScalar);
        EXPECT_EQ(0, std::memcmp(&out[size_t(r)], &expected, sizeof(float))) << "dot n " << n << " row " << r;
        axpy(alpha[size_t(r)], rows.data() + r * stride, expected_y.data(), n, Isa::kScalar);
      }
      EXPECT_EQ(0, std::memcmp(y.data(), expected_y.data(), size_t(n) * sizeof(float))) << "axpy n " << n;
      EXPECT_EQ(y[size_t(n)], y0[size_t(n)]) << "axpy_rows wrote past n = " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, OpsPaths, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

}  // namespace
}  // namespace hetmoe::cpu
