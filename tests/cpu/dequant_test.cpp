#include "cpu/dequant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/core/dtype.h"

namespace hetmoe::cpu {
namespace {

// Every path this CPU supports against the scalar formula, with partial edge blocks on both axes.
class Fp8DequantIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(Fp8DequantIsa, MatchesScalarBitwiseOnPartialBlocks) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {130, 257}, {200, 300}, {576, 128}, {3, 17}}) {
    const int64_t block = 128;
    const int64_t scale_rows = (rows + block - 1) / block, scale_cols = (cols + block - 1) / block;
    std::mt19937 rng(unsigned(rows * 1000 + cols));
    std::vector<uint8_t> codes(size_t(rows * cols));
    for (auto& c : codes) c = uint8_t(rng());  // every code, NaNs included
    std::vector<float> scales(size_t(scale_rows * scale_cols));
    for (auto& s : scales) s = std::ldexp(1.0f + float(rng() % 100) / 100.0f, int(rng() % 20) - 10);
    std::vector<float> got(codes.size(), -1.0f);
    dequant_fp8_rows({codes.data(), scales.data(), rows, cols, block}, 0, rows, got.data(), isa);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const float expected = fp8_e4m3_to_float(codes[size_t(i * cols + j)]) *
                               scales[size_t((i / block) * scale_cols + j / block)];
        const float value = got[size_t(i * cols + j)];
        if (std::isnan(expected)) {
          ASSERT_TRUE(std::isnan(value)) << i << "," << j;
        } else {
          ASSERT_EQ(value, expected) << isa_name(isa) << " at " << i << "," << j << " code "
                                     << int(codes[size_t(i * cols + j)]);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, Fp8DequantIsa, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

TEST(CpuFeatures, EnvironmentOverrideIsChecked) {
  setenv("HETMOE_ISA", "scalar", 1);
  EXPECT_EQ(active_isa(), Isa::kScalar);
  setenv("HETMOE_ISA", "sse9", 1);
  EXPECT_THROW(active_isa(), std::exception);
  unsetenv("HETMOE_ISA");
  EXPECT_EQ(active_isa(), supported_isas().back());
}

TEST(CpuFeatures, PrefetchDistanceByVendorAndChecked) {
  EXPECT_EQ(prefetch_bytes_from(nullptr, true), 512);
  EXPECT_EQ(prefetch_bytes_from("", false), 2048);
  EXPECT_EQ(prefetch_bytes_from("1024", true), 1024);
  for (const char* bad : {"0", "100", "-64", "32768", "1k", "64 "})
    EXPECT_THROW(prefetch_bytes_from(bad, false), std::exception) << bad;
  EXPECT_EQ(stream_prefetch_bytes() % 64, 0);
}

}  // namespace
}  // namespace hetmoe::cpu
