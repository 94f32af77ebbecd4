// cpu::linear on every ISA path against a double reference on the checkpoint's exact weight
// values (tolerance 1e-5 · Σ|w·x|: f32 FMA chains of ≤ 128 products per block), and the
// invariances the forward pass relies on: a token's outputs are the same alone or in a batch
// (on AVX-512 the decode kernel and, from 8 tokens, the prefill GEMM: same bits).
#include "cpu/linear.h"
#include "cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace hetmoe::cpu {
namespace {

struct Matrix {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  WeightMatrix w;
  std::vector<double> exact;  // [rows, cols]
};

Matrix make_matrix(WeightFormat format, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Matrix m;
  m.exact.resize(size_t(rows * cols));
  const int64_t element = format == WeightFormat::kFP8Block ? 1 : format == WeightFormat::kBF16 ? 2 : 4;
  m.bytes.resize(size_t(rows * cols * element));
  const int64_t scale_cols = (cols + 127) / 128;
  if (format == WeightFormat::kFP8Block)
    for (int64_t b = 0; b < ((rows + 127) / 128) * scale_cols; ++b)
      m.scales.push_back(0.001f * (1.0f + float(b % 7)));
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = normal(rng);
    if (format == WeightFormat::kFP8Block) {
      const uint8_t code = fp8_e4m3_from_float(100.0f * v);
      m.bytes[size_t(i)] = code;
      m.exact[size_t(i)] = double(fp8_e4m3_to_float(code)) *
                           m.scales[size_t(((i / cols) / 128) * scale_cols + (i % cols) / 128)];
    } else if (format == WeightFormat::kBF16) {
      const uint16_t bits = bf16_from_float(v);
      std::memcpy(&m.bytes[size_t(2 * i)], &bits, 2);
      m.exact[size_t(i)] = bf16_to_float(bits);
    } else {
      std::memcpy(&m.bytes[size_t(4 * i)], &v, 4);
      m.exact[size_t(i)] = v;
    }
  }
  m.w = {.format = format,
         .data = m.bytes.data(),
         .scale_inv = m.scales.empty() ? nullptr : m.scales.data(),
         .rows = rows,
         .cols = cols,
         .block = 128};
  return m;
}

// y [tokens, rows] against the double reference on m's exact values, within 1e-5·Σ|w·x|.
void expect_near_reference(const Matrix& m, const std::vector<float>& x, const std::vector<float>& y, int64_t tokens) {
  const int64_t rows = m.w.rows, cols = m.w.cols;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double expected = 0, magnitude = 0;
      for (int64_t k = 0; k < cols; ++k) {
        expected += m.exact[size_t(r * cols + k)] * x[size_t(t * cols + k)];
        magnitude += std::fabs(m.exact[size_t(r * cols + k)] * x[size_t(t * cols + k)]);
      }
      ASSERT_NEAR(y[size_t(t * rows + r)], expected, 1e-5 * magnitude + 1e-30) << t << "," << r;
    }
}

class LinearPaths : public ::testing::TestWithParam<Isa> {};

TEST_P(LinearPaths, MatchesDoubleReferenceAndIsBatchInvariant) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (WeightFormat format : {WeightFormat::kFP8Block, WeightFormat::kBF16, WeightFormat::kF32}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{200, 300}, {130, 17}, {1, 129}, {13, 260}, {37, 64}}) {
      const Matrix m = make_matrix(format, rows, cols, uint32_t(rows + cols));
      for (int64_t tokens : {1, 2, 3, 7, 8, 16, 33, 101}) {
        SCOPED_TRACE(testing::Message() << isa_name(isa) << " format " << int(format) << " " << rows << "x"
                                        << cols << " tokens " << tokens);
        std::mt19937 rng{uint32_t(tokens)};
        std::normal_distribution<float> normal;
        std::vector<float> x(size_t(tokens * cols)), y(size_t(tokens * rows));
        for (auto& v : x) v = normal(rng);
        linear(m.w, x.data(), tokens, y.data(), isa);
        expect_near_reference(m, x, y, tokens);
        if (HasFatalFailure()) return;
        // Every token alone (the decode kernel) gives the same bits as inside the batch (from 8
        // tokens the prefill GEMM).
        std::vector<float> alone(static_cast<size_t>(rows));
        for (int64_t t = 0; t < tokens; ++t) {
          linear(m.w, &x[size_t(t * cols)], 1, alone.data(), isa);
          ASSERT_EQ(0, std::memcmp(alone.data(), &y[size_t(t * rows)], alone.size() * sizeof(float))) << "token " << t;
        }
      }
    }
  }
}

// FP8 decode multiplies weights decoded as value × 2^-120 by x · 2^112 in blocks whose |x| < 2^16
// and uses value / 256 weights elsewhere (cpu/fp8_avx512.h); the prefill GEMM always the latter.
// Activations on both sides of that bound, tiny, denormal and huge, in blocks and tokens that
// take different branches in one call: within the reference's tolerance, and each token alone
// (decode) equal to the same token in a batch of 1–4 (decode) or 9 (prefill), bit for bit.
TEST_P(LinearPaths, Fp8ActivationsAtTheScaledBoundKeepBatchInvariance) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  const int64_t rows = 40, cols = 5 * 128 + 40;
  const Matrix m = make_matrix(WeightFormat::kFP8Block, rows, cols, 77);
  const float below = std::nextafter(65536.0f, 0.0f);
  for (int64_t tokens : {2, 3, 4, 9}) {
    SCOPED_TRACE(testing::Message() << isa_name(isa) << " tokens " << tokens);
    std::mt19937 rng{uint32_t(tokens)};
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(tokens * cols)), y(size_t(tokens * rows));
    for (auto& v : x) v = normal(rng);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t b = 0; b < 5; ++b) {
        float* xb = &x[size_t(t * cols + b * 128)];
        switch ((b + t) % 5) {
          case 1: xb[9] = below; break;
          case 2: xb[70] = -65536.0f; break;
          case 3:
            for (int64_t k = 0; k < 128; ++k) xb[k] *= k % 2 ? 1e-39f : 1e-30f;
            break;
          case 4: xb[127] = 3e30f; break;
          default: break;
        }
      }
    linear(m.w, x.data(), tokens, y.data(), isa);
    expect_near_reference(m, x, y, tokens);
    if (HasFatalFailure()) return;
    std::vector<float> alone(static_cast<size_t>(rows));
    for (int64_t t = 0; t < tokens; ++t) {
      linear(m.w, &x[size_t(t * cols)], 1, alone.data(), isa);
      ASSERT_EQ(0, std::memcmp(alone.data(), &y[size_t(t * rows)], alone.size() * sizeof(float))) << "token " << t;
    }
  }
}

TEST_P(LinearPaths, RefusesNaNWeightsNamingRowAndColumn) {
  // E4M3 S.1111.111 (0x7F, 0xFF) is NaN; the AVX-512 decode would turn it into a finite value.
  // Every path refuses it, in the 64-code body, a block's 16-wide tail and the prefill GEMM.
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (auto [row, col, code] : {std::tuple<int64_t, int64_t, uint8_t>{5, 40, 0x7F}, {130, 299, 0xFF}, {199, 135, 0x7F}}) {
    Matrix m = make_matrix(WeightFormat::kFP8Block, 200, 300, 3);
    m.bytes[size_t(row * 300 + col)] = code;
    for (int64_t tokens : {1, 3, 8, 33}) {
      SCOPED_TRACE(testing::Message() << isa_name(isa) << " row " << row << " col " << col << " tokens " << tokens);
      std::vector<float> x(size_t(tokens * 300), 0.5f), y(size_t(tokens * 200));
      try {
        linear(m.w, x.data(), tokens, y.data(), isa);
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        const std::string text = e.what();
        EXPECT_NE(text.find("row " + std::to_string(row) + ", column " + std::to_string(col)), std::string::npos) << text;
        EXPECT_NE(text.find("NaN"), std::string::npos) << text;
      }
    }
  }
}

// The absorbed MLA attention reads kv_b rows through axpy_weight_rows / dot_weight_rows: the
// same bits as axpy_rows / dot_rows on a dequantised f32 copy (what it used before), for row
// ranges that start inside a scale block, chunk boundaries (8 rows at 512 columns) and rows wider
// than the 16 KiB buffer.
TEST_P(LinearPaths, WeightRowsMatchTheOpsOnADequantisedCopyBitwise) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (WeightFormat format : {WeightFormat::kFP8Block, WeightFormat::kBF16, WeightFormat::kF32}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 512}, {130, 192}, {40, 100}, {9, 5000}}) {
      const Matrix m = make_matrix(format, rows, cols, uint32_t(3 * rows + cols));
      std::vector<float> copy(size_t(rows * cols));
      for (int64_t r = 0; r < rows; ++r) weight_row(m.w, r, &copy[size_t(r * cols)], Isa::kScalar);
      std::mt19937 rng(5);
      std::normal_distribution<float> normal;
      std::vector<float> x(static_cast<size_t>(cols)), alpha(static_cast<size_t>(rows));
      for (auto& v : x) v = normal(rng);
      for (auto& v : alpha) v = normal(rng);
      for (auto [row0, count] : {std::pair<int64_t, int64_t>{0, rows}, {rows / 3, rows - rows / 3}, {rows - 1, 1}}) {
        SCOPED_TRACE(testing::Message() << isa_name(isa) << " format " << int(format) << " " << rows << "x" << cols
                                        << " rows " << row0 << "+" << count);
        std::vector<float> y(static_cast<size_t>(cols)), y_copy(static_cast<size_t>(cols));
        for (int64_t j = 0; j < cols; ++j) y[size_t(j)] = y_copy[size_t(j)] = 0.25f * float(j % 5);
        axpy_weight_rows(alpha.data(), m.w, row0, count, y.data(), isa);
        axpy_rows(alpha.data(), &copy[size_t(row0 * cols)], cols, count, y_copy.data(), cols, isa);
        ASSERT_EQ(0, std::memcmp(y.data(), y_copy.data(), y.size() * sizeof(float)));
        std::vector<float> out(static_cast<size_t>(count)), out_copy(static_cast<size_t>(count));
        dot_weight_rows(x.data(), m.w, row0, count, out.data(), isa);
        dot_rows(x.data(), &copy[size_t(row0 * cols)], cols, count, cols, out_copy.data(), isa);
        ASSERT_EQ(0, std::memcmp(out.data(), out_copy.data(), out.size() * sizeof(float)));
      }
      if (format != WeightFormat::kFP8Block) continue;
      // A NaN code is refused with the row named, as by linear().
      Matrix bad = make_matrix(format, rows, cols, 11);
      bad.bytes[size_t(5 * cols + cols / 2)] = 0xFF;
      std::vector<float> y(static_cast<size_t>(cols)), out(static_cast<size_t>(rows));
      for (auto call : {0, 1})
        try {
          if (call == 0) axpy_weight_rows(alpha.data(), bad.w, 0, rows, y.data(), isa);
          if (call == 1) dot_weight_rows(x.data(), bad.w, 0, rows, out.data(), isa);
          ADD_FAILURE() << "a NaN weight was accepted (call " << call << ")";
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("row 5,"), std::string::npos) << e.what();
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, LinearPaths, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

}  // namespace
}  // namespace hetmoe::cpu
