// The packed expert kernels on every ISA path this CPU runs, every format, against a reference
// that takes the packed weights' exact values (packed_row_values) and computes in double.
//
// Tolerances (relative to Σ_k |w_k·x_k| of the output element):
//   FP8, BF16   1e-5: fp32 FMA chains of 128 products per group, one scaled add per group.
//   INT8, INT4  1e-6 against the quantised activations (the integer dot is exact; only the f32
//               scale product and the per-group add round), and against the unquantised x
//               within the activation rounding bound Σ_k |w_k|·sx_g/2.
// Beyond the tolerances, every path must equal the scalar path bit for bit, for every token
// count (decode and prefill kernels), and repeated runs must be identical.
#include "cpu/packed_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/expert_ffn.h"
#include "cpu/threads.h"
#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace hetmoe::cpu {
namespace {

constexpr int64_t kTokenCounts[] = {1, 2, 3, 4, 7, 16, 33, 128};
constexpr PackedFormat kFormats[] = {PackedFormat::kFP8, PackedFormat::kBF16, PackedFormat::kINT8,
                                     PackedFormat::kINT4};

// An FP8 matrix as DeepSeek ships it: codes ~ RNE(112·z), block scales varying by block.
struct Fp8Source {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  WeightMatrix matrix;
  Fp8Source(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    codes.resize(size_t(rows * cols));
    for (auto& c : codes) c = fp8_e4m3_from_float(112.0f * normal(rng));
    const int64_t blocks = ((rows + 127) / 128) * ((cols + 127) / 128);
    std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
    for (int64_t b = 0; b < blocks; ++b) scales.push_back(uniform(rng) / (112.0f * std::sqrt(float(cols))));
    matrix = {.format = WeightFormat::kFP8Block,
              .data = codes.data(),
              .scale_inv = scales.data(),
              .rows = rows,
              .cols = cols,
              .block = 128};
  }
};

struct Packed {
  AlignedBytes bytes;
  PackedMatrix matrix;
  Packed(const WeightMatrix& source, PackedFormat format) {
    const PackedLayout layout = packed_layout(format, source.rows, source.cols);
    bytes = AlignedBytes(layout.bytes());
    pack_matrix(source, format, bytes.data());
    matrix = {layout, bytes.data()};
  }
};

std::vector<float> random_x(int64_t tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(tokens * cols));
  for (auto& v : x) v = normal(rng);
  return x;
}

std::vector<float> run_gemm(const PackedMatrix& w, const std::vector<float>& x, int64_t tokens, Isa isa,
                            int64_t panel_begin = 0, int64_t panel_end = -1, bool bf16_dot = false) {
  if (panel_end < 0) panel_end = w.layout.panels;
  ActivationBuffers buffers;
  prepare_activations(w.layout, x.data(), tokens, w.layout.cols, padded_tokens(tokens), buffers);
  std::vector<float> y(size_t(tokens * w.layout.rows), -7.0f);
  GemmScratch scratch;
  packed_gemm({.w = w,
               .a = buffers.view,
               .tokens = tokens,
               .panel_begin = panel_begin,
               .panel_end = panel_end,
               .y = y.data() + panel_begin * kPanelRows,
               .y_stride = w.layout.rows,
               .scratch = &scratch,
               .bf16_dot = bf16_dot},
              isa);
  return y;
}

bool is_int(PackedFormat f) {
  return f == PackedFormat::kINT8 || f == PackedFormat::kINT4;
}

class PackedGemmPaths : public ::testing::TestWithParam<std::tuple<Isa, PackedFormat>> {};

TEST_P(PackedGemmPaths, MatchesDoubleReferenceAndScalarBits) {
  const auto [isa, format] = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{200, 300}, {300, 200}, {33, 1}, {1, 130}, {16, 128}}) {
    const Fp8Source source(rows, cols, uint32_t(rows * 7 + cols));
    const Packed packed(source.matrix, format);
    std::vector<double> w(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) packed_row_values(packed.matrix, r, &w[size_t(r * cols)]);
    for (int64_t tokens : kTokenCounts) {
      SCOPED_TRACE(testing::Message() << isa_name(isa) << " " << packed_format_name(format) << " " << rows
                                      << "x" << cols << " M=" << tokens);
      const std::vector<float> x = random_x(tokens, cols, uint32_t(tokens));
      const std::vector<float> y = run_gemm(packed.matrix, x, tokens, isa);
      // The activations the kernel multiplies with, and the rounding bound of their quantisation.
      ActivationBuffers act;
      prepare_activations(packed.matrix.layout, x.data(), tokens, cols, tokens, act);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double expected = 0, magnitude = 0, exact = 0, rounding_bound = 0;
          for (int64_t k = 0; k < cols; ++k) {
            const double wk = w[size_t(r * cols + k)], xk = x[size_t(t * cols + k)];
            double xq = xk;
            if (is_int(format)) {
              const double sx = act.view.scale[t * act.view.groups + k / kGroupCols];
              xq = double(act.view.q[t * act.view.q_stride + k]) * sx;
              rounding_bound += std::fabs(wk) * sx / 2;
            }
            expected += wk * xq;
            magnitude += std::fabs(wk * xq);
            exact += wk * xk;
          }
          const double tolerance = (is_int(format) ? 1e-6 : 1e-5) * magnitude + 1e-30;
          const float got = y[size_t(t * rows + r)];
          ASSERT_NEAR(got, expected, tolerance) << "t=" << t << " r=" << r;
          if (is_int(format)) {
            ASSERT_NEAR(got, exact, rounding_bound * (1 + 1e-6) + tolerance) << "t=" << t << " r=" << r;
          }
        }
      if (isa != Isa::kScalar) {
        const std::vector<float> scalar = run_gemm(packed.matrix, x, tokens, Isa::kScalar);
        ASSERT_EQ(0, std::memcmp(y.data(), scalar.data(), y.size() * sizeof(float))) << "differs from scalar";
      }
      const std::vector<float> again = run_gemm(packed.matrix, x, tokens, isa);
      ASSERT_EQ(0, std::memcmp(y.data(), again.data(), y.size() * sizeof(float))) << "repeat differs";
    }
  }
}

// A token's outputs do not depend on how many other tokens share the call (decode vs prefill
// kernels), nor on the panel range a call covers.
TEST_P(PackedGemmPaths, BatchAndPanelSplitInvariant) {
  const auto [isa, format] = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  const int64_t rows = 200, cols = 300, tokens = 33;
  const Fp8Source source(rows, cols, 5);
  const Packed packed(source.matrix, format);
  const std::vector<float> x = random_x(tokens, cols, 9);
  const std::vector<float> all = run_gemm(packed.matrix, x, tokens, isa);
  for (int64_t first : {0, 5, 29}) {
    for (int64_t count : {1, 3, 4}) {
      const std::vector<float> part_x(x.begin() + first * cols, x.begin() + (first + count) * cols);
      const std::vector<float> part = run_gemm(packed.matrix, part_x, count, isa);
      ASSERT_EQ(0, std::memcmp(part.data(), &all[size_t(first * rows)], part.size() * sizeof(float)))
          << "tokens " << first << "+" << count;
    }
  }
  std::vector<float> split(all.size(), -7.0f);
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 3}, {3, 4}, {4, 13}}) {
    const std::vector<float> y = run_gemm(packed.matrix, x, tokens, isa, b, e);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = b * kPanelRows; r < std::min(rows, e * kPanelRows); ++r)
        split[size_t(t * rows + r)] = y[size_t(t * rows + r)];
  }
  ASSERT_EQ(0, std::memcmp(split.data(), all.data(), all.size() * sizeof(float)));
}

// Every product at the format's largest magnitude and of one sign along a row: the integer
// kernels' narrow (16-bit) partial sums are at their bound here (AVX2 vpmaddubsw: INT8 pairs of
// 128·127, INT4 eight quads of 2·15·127), so a kernel that saturated or wrapped would be off by
// thousands of units. The exact answer is ±cols (weights ±1, x ±1).
TEST_P(PackedGemmPaths, LargestProductsStayExact) {
  const auto [isa, format] = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  const int64_t rows = 48, cols = 2 * kGroupCols + 40, tokens = 4;
  std::vector<float> w(size_t(rows * cols)), x(size_t(tokens * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) w[size_t(r * cols + k)] = (r % 2 ? -1.0f : 1.0f) * (r % 3 == 2 && k % 5 == 0 ? -1.0f : 1.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t k = 0; k < cols; ++k) x[size_t(t * cols + k)] = t % 2 ? -1.0f : 1.0f;
  const WeightMatrix source{.format = WeightFormat::kF32, .data = w.data(), .rows = rows, .cols = cols};
  const Packed packed(source, format);
  const std::vector<float> y = run_gemm(packed.matrix, x, tokens, isa);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0;
      for (int64_t k = 0; k < cols; ++k) exact += double(w[size_t(r * cols + k)]) * x[size_t(t * cols + k)];
      ASSERT_NEAR(y[size_t(t * rows + r)], exact, 1e-5 * double(cols)) << "t=" << t << " r=" << r;
    }
  if (isa != Isa::kScalar) {
    const std::vector<float> scalar = run_gemm(packed.matrix, x, tokens, Isa::kScalar);
    ASSERT_EQ(0, std::memcmp(y.data(), scalar.data(), y.size() * sizeof(float))) << "differs from scalar";
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, PackedGemmPaths,
                         ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                                            ::testing::ValuesIn(kFormats)),
                         [](const auto& param_info) {
                           return std::string(isa_name(std::get<0>(param_info.param))) + "_" +
                                  std::string(packed_format_name(std::get<1>(param_info.param)));
                         });

// The SIMD FP8 paths multiply weights decoded as value × 2^-120 by x · 2^112 when a group's
// |x| < 2^16 and use value / 256 weights with x as is otherwise (cpu/fp8_avx512.h). Every code
// (±0, subnormals, the largest) against activations on both sides of that bound, tiny and
// denormal, in groups and tokens that take different branches in one call: the scalar path's
// bits, for decode and prefill token counts.
TEST(PackedGemmFp8, EveryCodeAndActivationRangeEqualsScalarBits) {
  const int64_t rows = 40, cols = 5 * kGroupCols;
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint8_t c = uint8_t(i * 37 + i / 256);
    codes[i] = (c & 0x7F) == 0x7F ? uint8_t(c ^ 1) : c;  // 0x7F / 0xFF are NaN
  }
  std::vector<float> scales(5, 1.0f / 448.0f);
  scales[3] = 3.0e-3f;
  const WeightMatrix source{.format = WeightFormat::kFP8Block, .data = codes.data(), .scale_inv = scales.data(),
                            .rows = rows, .cols = cols, .block = 128};
  const Packed packed(source, PackedFormat::kFP8);
  const float below = std::nextafter(65536.0f, 0.0f);
  for (int64_t tokens : {1, 2, 3, 4, 7, 16, 33}) {
    std::vector<float> x = random_x(tokens, cols, uint32_t(100 + tokens));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t g = 0; g < 5; ++g) {
        float* xg = &x[size_t(t * cols + g * kGroupCols)];
        switch ((g + t) % 5) {
          case 1: xg[7] = -below; break;     // largest |x| the scaled form takes
          case 2: xg[100] = 65536.0f; break;  // the first it does not
          case 3:
            for (int64_t k = 0; k < kGroupCols; ++k) xg[k] *= k % 2 ? 1e-39f : 1e-30f;  // denormal, tiny
            break;
          case 4: xg[0] = -3e30f; break;
          default: break;
        }
      }
    const std::vector<float> scalar = run_gemm(packed.matrix, x, tokens, Isa::kScalar);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
      if (!isa_supported(isa)) continue;
      const std::vector<float> y = run_gemm(packed.matrix, x, tokens, isa);
      ASSERT_EQ(0, std::memcmp(y.data(), scalar.data(), y.size() * sizeof(float)))
          << isa_name(isa) << " M=" << tokens << " differs from scalar";
    }
  }
}

// The opt-in BF16-dot prefill (PackedGemmArgs::bf16_dot, AVX-512 with AVX512_BF16): FP8 and
// BF16 against a double reference on the bf16-rounded activations (tolerance 1e-5·Σ|w·x|, as the
// FMA path) and on the exact ones within the rounding bound Σ|w·x|·2^-8; below 8 tokens (decode)
// and on the other paths the flag changes nothing, bit for bit.
TEST(PackedGemmBf16Dot, PrefillWithinBf16ActivationRoundingAndIgnoredElsewhere) {
  const int64_t rows = 70, cols = 2 * kGroupCols + 60;
  const Fp8Source source(rows, cols, 21);
  for (PackedFormat format : {PackedFormat::kFP8, PackedFormat::kBF16}) {
    const Packed packed(source.matrix, format);
    std::vector<double> w(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) packed_row_values(packed.matrix, r, &w[size_t(r * cols)]);
    for (int64_t tokens : {1, 4, 7, 8, 16, 33, 128}) {
      SCOPED_TRACE(testing::Message() << packed_format_name(format) << " M=" << tokens);
      const std::vector<float> x = random_x(tokens, cols, uint32_t(50 + tokens));
      for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (!isa_supported(isa)) continue;
        const std::vector<float> fma = run_gemm(packed.matrix, x, tokens, isa);
        const std::vector<float> dot = run_gemm(packed.matrix, x, tokens, isa, 0, -1, true);
        const bool used = isa == Isa::kAvx512 && cpu_features().avx512_bf16 && tokens >= kPrefillMinTokens;
        if (!used) {
          ASSERT_EQ(0, std::memcmp(dot.data(), fma.data(), dot.size() * sizeof(float))) << isa_name(isa);
          continue;
        }
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double rounded = 0, exact = 0, magnitude = 0;
            for (int64_t k = 0; k < cols; ++k) {
              const float xk = x[size_t(t * cols + k)];
              const double wk = w[size_t(r * cols + k)];
              rounded += wk * double(bf16_to_float(bf16_from_float(xk)));
              exact += wk * double(xk);
              magnitude += std::fabs(wk * double(xk));
            }
            const float got = dot[size_t(t * rows + r)];
            ASSERT_NEAR(got, rounded, 1e-5 * magnitude + 1e-30) << "t=" << t << " r=" << r;
            ASSERT_NEAR(got, exact, magnitude * (0x1p-8 + 1e-5) + 1e-30) << "t=" << t << " r=" << r;
          }
      }
    }
  }
}

TEST(PackedGemmBf16Dot, ModeFromEnvironmentValue) {
  EXPECT_FALSE(float_prefill_bf16dot_from(nullptr));
  EXPECT_FALSE(float_prefill_bf16dot_from(""));
  EXPECT_FALSE(float_prefill_bf16dot_from("fma"));
  EXPECT_TRUE(float_prefill_bf16dot_from("bf16dot"));
  try {
    float_prefill_bf16dot_from("bf16");
    FAIL() << "accepted bf16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HETMOE_FLOAT_PREFILL=bf16"), std::string::npos) << e.what();
  }
}

// Packing: FP8 keeps the shipped values exactly; the others stay within their rounding.
TEST(PackMatrix, ValuesWithinFormatRounding) {
  const int64_t rows = 150, cols = 300;
  const Fp8Source source(rows, cols, 3);
  std::vector<float> original(static_cast<size_t>(cols));
  std::vector<double> packed_values(static_cast<size_t>(cols));
  for (PackedFormat format : kFormats) {
    const Packed packed(source.matrix, format);
    for (int64_t r = 0; r < rows; ++r) {
      weight_row(source.matrix, r, original.data(), Isa::kScalar);
      packed_row_values(packed.matrix, r, packed_values.data());
      for (int64_t g = 0; g * kGroupCols < cols; ++g) {
        double amax = 0;
        for (int64_t k = g * kGroupCols; k < std::min(cols, (g + 1) * kGroupCols); ++k)
          amax = std::max(amax, double(std::fabs(original[size_t(k)])));
        for (int64_t k = g * kGroupCols; k < std::min(cols, (g + 1) * kGroupCols); ++k) {
          const double exact = double(fp8_e4m3_to_float(source.codes[size_t(r * cols + k)])) *
                               double(source.scales[size_t((r / 128) * 3 + k / 128)]);
          const double got = packed_values[size_t(k)];
          switch (format) {
            case PackedFormat::kFP8:
              ASSERT_EQ(got, exact) << r << "," << k;
              break;
            case PackedFormat::kBF16:
              ASSERT_NEAR(got, exact, std::fabs(exact) / 256.0) << r << "," << k;
              break;
            case PackedFormat::kINT8:
              ASSERT_NEAR(got, exact, amax / 127 / 2 + amax * 1e-6) << r << "," << k;
              break;
            case PackedFormat::kINT4:
              ASSERT_NEAR(got, exact, amax / 7 / 2 + amax * 1e-6) << r << "," << k;
              break;
          }
        }
      }
    }
  }
}

TEST(PackMatrix, RejectsNanCodesAndOtherBlockSizes) {
  Fp8Source source(20, 40, 1);
  source.codes[17] = 0xFF;
  AlignedBytes bytes(packed_layout(PackedFormat::kFP8, 20, 40).bytes());
  EXPECT_THROW(pack_matrix(source.matrix, PackedFormat::kFP8, bytes.data()), std::exception);
  source.codes[17] = 0;
  source.matrix.block = 64;
  EXPECT_THROW(pack_matrix(source.matrix, PackedFormat::kFP8, bytes.data()), std::exception);
}

TEST(PackedFormatNames, RoundTrip) {
  for (PackedFormat format : kFormats) EXPECT_EQ(parse_packed_format(packed_format_name(format)), format);
  EXPECT_FALSE(parse_packed_format("fp4").has_value());
}

// --- the fused FFN over several experts -----------------------------------------------------------

struct Expert {
  Fp8Source gate_source, up_source, down_source;
  Packed gate, up, down;
  PackedFfn ffn;
  Expert(int64_t hidden, int64_t inter, PackedFormat format, uint32_t seed)
      : gate_source(inter, hidden, seed),
        up_source(inter, hidden, seed + 1),
        down_source(hidden, inter, seed + 2),
        gate(gate_source.matrix, format),
        up(up_source.matrix, format),
        down(down_source.matrix, format),
        ffn{gate.matrix, up.matrix, down.matrix} {}
};

// Reference: double math on the packed weights' values, activations quantised as the kernels do.
std::vector<double> reference_ffn(const Expert& e, const float* x, int64_t tokens) {
  const PackedLayout& g = e.gate.matrix.layout;
  const int64_t hidden = g.cols, inter = g.rows;
  const auto values = [](const PackedMatrix& m) {
    std::vector<double> v(size_t(m.layout.rows * m.layout.cols));
    for (int64_t r = 0; r < m.layout.rows; ++r) packed_row_values(m, r, &v[size_t(r * m.layout.cols)]);
    return v;
  };
  const auto as_used = [](const PackedLayout& layout, const float* in, int64_t n_tokens) {
    ActivationBuffers act;
    prepare_activations(layout, in, n_tokens, layout.cols, n_tokens, act);
    std::vector<double> out(size_t(n_tokens * layout.cols));
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t k = 0; k < layout.cols; ++k)
        out[size_t(t * layout.cols + k)] = act.view.x
                                               ? double(act.view.x[t * act.view.x_stride + k])
                                               : double(act.view.q[t * act.view.q_stride + k]) *
                                                     act.view.scale[t * act.view.groups + k / kGroupCols];
    return out;
  };
  const std::vector<double> wg = values(e.gate.matrix), wu = values(e.up.matrix), wd = values(e.down.matrix);
  const std::vector<double> xs = as_used(g, x, tokens);
  std::vector<float> h(size_t(tokens * inter));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < inter; ++r) {
      double a = 0, b = 0;
      for (int64_t k = 0; k < hidden; ++k) {
        a += wg[size_t(r * hidden + k)] * xs[size_t(t * hidden + k)];
        b += wu[size_t(r * hidden + k)] * xs[size_t(t * hidden + k)];
      }
      h[size_t(t * inter + r)] = float(a / (1 + std::exp(-a)) * b);
    }
  const std::vector<double> hs = as_used(e.down.matrix.layout, h.data(), tokens);
  std::vector<double> y(size_t(tokens * hidden));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < hidden; ++r) {
      double s = 0;
      for (int64_t k = 0; k < inter; ++k) s += wd[size_t(r * inter + k)] * hs[size_t(t * inter + k)];
      y[size_t(t * hidden + r)] = s;
    }
  return y;
}

class ExpertFfnPaths : public ::testing::TestWithParam<std::tuple<Isa, PackedFormat>> {};

TEST_P(ExpertFfnPaths, MatchesReferenceAndThreadCountInvariant) {
  const auto [isa, format] = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  const int64_t hidden = 300, inter = 200;
  std::vector<Expert> experts;
  experts.reserve(3);
  for (uint32_t e = 0; e < 3; ++e) experts.emplace_back(hidden, inter, format, 100 + 10 * e);
  const int64_t token_counts[] = {1, 33, 4};
  std::vector<std::vector<float>> xs, outs;
  std::vector<FfnTask> tasks;
  for (size_t e = 0; e < experts.size(); ++e) {
    xs.push_back(random_x(token_counts[e], hidden, uint32_t(40 + e)));
    outs.emplace_back(size_t(token_counts[e] * hidden), -7.0f);
  }
  for (size_t e = 0; e < experts.size(); ++e)
    tasks.push_back({&experts[e].ffn, xs[e].data(), token_counts[e], outs[e].data()});

  ExpertFfnRunner serial(nullptr, isa);
  serial.run(tasks);
  const std::vector<std::vector<float>> first = outs;
  // Tolerance relative to the output's scale: the FFN's intermediate is rounded to f32 (and for
  // INT formats requantised, where a rounding tie can flip one step of one h value).
  const double tolerance = is_int(format) ? 2e-4 : 2e-5;
  for (size_t e = 0; e < experts.size(); ++e) {
    const std::vector<double> expected = reference_ffn(experts[e], xs[e].data(), token_counts[e]);
    double scale = 0;
    for (double v : expected) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_NEAR(outs[e][i], expected[i], tolerance * scale) << "expert " << e << " element " << i;
  }
  for (int threads : {1, 2}) {
    CpuThreads arena({.threads = threads});
    ExpertFfnRunner runner(&arena, isa);
    for (auto& o : outs) std::fill(o.begin(), o.end(), -7.0f);
    runner.run(tasks);
    for (size_t e = 0; e < experts.size(); ++e)
      ASSERT_EQ(0, std::memcmp(outs[e].data(), first[e].data(), first[e].size() * sizeof(float)))
          << threads << " threads, expert " << e;
  }
  if (isa != Isa::kScalar) {
    ExpertFfnRunner scalar(nullptr, Isa::kScalar);
    scalar.run(tasks);
    for (size_t e = 0; e < experts.size(); ++e)
      ASSERT_EQ(0, std::memcmp(outs[e].data(), first[e].data(), first[e].size() * sizeof(float)))
          << "vs scalar";
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, ExpertFfnPaths,
                         ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                                            ::testing::ValuesIn(kFormats)),
                         [](const auto& param_info) {
                           return std::string(isa_name(std::get<0>(param_info.param))) + "_" +
                                  std::string(packed_format_name(std::get<1>(param_info.param)));
                         });

TEST(CpuThreads, SizedFromTopology) {
  const CpuTopology topology = probe_cpu_topology();
  EXPECT_GE(topology.physical_cores, 1);
  EXPECT_GE(topology.logical_cpus, topology.physical_cores);
  CpuThreads all;
  EXPECT_EQ(all.concurrency(), topology.physical_cores);
  CpuThreads reserved({.reserve_io_cores = 1});
  EXPECT_EQ(reserved.concurrency(), std::max(1, topology.physical_cores - 1));
}

}  // namespace
}  // namespace hetmoe::cpu
