#include "engine/core/dtype.h"

#include "engine/core/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace hetmoe {
namespace {

// Independent formula for E4M3FN (OCP FP8): sign, 4-bit exponent with bias 7, 3-bit mantissa,
// only S.1111.111 is NaN, no infinities. Written with std::ldexp so it shares no code with the table.
double e4m3_formula(int code) {
  const int sign = code >> 7, exponent = (code >> 3) & 15, mantissa = code & 7;
  if (exponent == 15 && mantissa == 7) return std::nan("");
  const double magnitude = exponent == 0 ? std::ldexp(mantissa / 8.0, -6)
                                         : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return sign ? -magnitude : magnitude;
}

TEST(Fp8E4M3, DecodesAll256CodesLikeTheFormula) {
  for (int code = 0; code < 256; ++code) {
    const double expected = e4m3_formula(code);
    const float got = fp8_e4m3_to_float(uint8_t(code));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << code;
    } else {
      EXPECT_EQ(double(got), expected) << "code " << code;
    }
  }
}

TEST(Fp8E4M3, MatchesModelSpecAppendixB) {
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x08), 0.015625f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), 0.001953125f);
  EXPECT_EQ(fp8_e4m3_to_float(0xFE), -448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xFF)));
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_float(0x80)));
}

TEST(Fp8E4M3, EveryFiniteCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) continue;
    EXPECT_EQ(fp8_e4m3_from_float(fp8_e4m3_to_float(uint8_t(code))), code) << "code " << code;
  }
}

// Brute force: the nearest representable value, ties to the even code (mantissa LSB 0).
uint8_t nearest_even_reference(float value) {
  int best = 0;
  double best_distance = INFINITY;
  for (int code = 0; code < 0x7F; ++code) {  // non-negative finite codes
    const double distance = std::fabs(double(std::fabs(value)) - e4m3_formula(code));
    if (distance < best_distance || (distance == best_distance && (code & 1) == 0)) {
      best = code;
      best_distance = distance;
    }
  }
  return uint8_t(best | (std::signbit(value) ? 0x80 : 0));
}

TEST(Fp8E4M3, EncodeRoundsToNearestEven) {
  // Exact midpoints between neighbouring codes are where ties-to-even matters.
  for (int code = 0; code < 0x7E; ++code) {
    const float midpoint = float((e4m3_formula(code) + e4m3_formula(code + 1)) / 2);
    EXPECT_EQ(fp8_e4m3_from_float(midpoint), nearest_even_reference(midpoint)) << "midpoint above " << code;
    EXPECT_EQ(fp8_e4m3_from_float(-midpoint), nearest_even_reference(-midpoint));
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-460.0f, 460.0f);
  for (int i = 0; i < 20000; ++i) {
    const float value = uniform(rng) * (i % 2 ? 1.0f : 1e-3f);
    EXPECT_EQ(fp8_e4m3_from_float(value), nearest_even_reference(value)) << value;
  }
}

TEST(Fp8E4M3, EncodeSaturatesAndKeepsNaN) {
  EXPECT_EQ(fp8_e4m3_from_float(1e9f), 0x7E);
  EXPECT_EQ(fp8_e4m3_from_float(-INFINITY), 0xFE);
  EXPECT_EQ(fp8_e4m3_from_float(std::nanf("")) & 0x7F, 0x7F);
}

TEST(Bf16, RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(bf16_from_float(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(bf16_from_float(1.00390625f), 0x3F80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: -> 1 + 2^-6.
  EXPECT_EQ(bf16_from_float(1.01171875f), 0x3F82);
  EXPECT_TRUE(std::isnan(bf16_to_float(bf16_from_float(std::nanf("")))));
  EXPECT_EQ(bf16_to_float(bf16_from_float(-2.5f)), -2.5f);
}

TEST(Fp16, RoundTripsAndRounds) {
  EXPECT_EQ(fp16_from_float(1.0f), 0x3C00);
  EXPECT_EQ(fp16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_from_float(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
}

TEST(Int8, GroupQuantisationIsSymmetricAndBounded) {
  std::vector<float> values(64);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) - 20.0f;
  std::vector<int8_t> q(64);
  std::vector<float> scales(2), back(64);
  quantize_int8(values, 32, q, scales);
  EXPECT_FLOAT_EQ(scales[0], 20.0f / 127.0f);
  EXPECT_FLOAT_EQ(scales[1], 43.0f / 127.0f);
  dequantize_int8(q, scales, 32, back);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(back[i], values[i], scales[i / 32] / 2 + 1e-6f);
  EXPECT_EQ(q[0], -127);
}

// Ties round to even, and every value rounds as std::nearbyint does (the engine's round_even
// adds and subtracts 2^23 instead of calling libm).
TEST(Int8, RoundsTiesToEvenLikeNearbyint) {
  // scale = 127 / 127 = 1: q = RNE(value).
  std::vector<float> values = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -126.5f, 0.49999997f};
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-127.0f, 127.0f);
  while (values.size() < 4096) values.push_back(uniform(rng));
  std::vector<int8_t> q(values.size());
  std::vector<float> scales(1);
  quantize_int8(values, 4096, q, scales);
  ASSERT_EQ(scales[0], 1.0f);
  for (size_t i = 0; i < values.size(); ++i)
    ASSERT_EQ(q[i], int8_t(std::nearbyint(values[i]))) << "value " << values[i];
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], 4);
  EXPECT_EQ(q[3], -2);
  EXPECT_EQ(q[4], -4);
  EXPECT_EQ(q[5], 0);
}

TEST(Int4, PackedGroupQuantisationRoundTrips) {
  std::vector<float> values(256);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (auto& v : values) v = normal(rng);
  std::vector<uint8_t> packed(128);
  std::vector<float> scales(8), back(256);
  quantize_int4(values, 32, packed, scales);
  dequantize_int4(packed, scales, 32, back);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(back[i], values[i], scales[i / 32] / 2 + 1e-6f) << i;
    EXPECT_GE(int4_at(packed.data(), i), -7);
    EXPECT_LE(int4_at(packed.data(), i), 7);
  }
}

// The group quantisers against a plain reference (scale = max|v| / Q, q = clamp(nearbyint(v / scale),
// ±Q), 0 for a zero group), value for value: groups of 32, 128 and an odd 3 (INT4 pairs then span
// two groups), ties (a group whose scale is exactly 1), an all-zero group, values far outside
// the group's typical range.
TEST(GroupQuantisation, MatchesThePlainReferenceBitForBit) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (int group : {32, 128, 3}) {
    std::vector<float> values(size_t(group) * 12);
    for (auto& v : values) v = normal(rng) * (rng() % 4 == 0 ? 100.0f : 1.0f);
    for (int i = 0; i < group; ++i) values[size_t(i)] = 0.0f;                               // a zero group
    for (int i = 0; i < group; ++i) values[size_t(group + i)] = float(i % 15) * 0.5f - 3.5f;  // ties
    values[size_t(group)] = 7.0f;                                                          // INT4 scale 1
    values[size_t(2 * group)] = 1e30f;                                                     // one huge value
    auto reference = [&](int q_max) {
      std::vector<int> q(values.size());
      for (size_t g = 0; g < values.size() / size_t(group); ++g) {
        float amax = 0;
        for (int i = 0; i < group; ++i) amax = std::max(amax, std::fabs(values[g * size_t(group) + size_t(i)]));
        const float scale = amax / float(q_max);
        for (int i = 0; i < group; ++i) {
          const size_t at = g * size_t(group) + size_t(i);
          q[at] = scale == 0 ? 0 : int(std::clamp(std::nearbyint(values[at] / scale), float(-q_max), float(q_max)));
        }
      }
      return q;
    };
    const std::vector<int> ref8 = reference(127), ref4 = reference(7);
    std::vector<int8_t> q8(values.size());
    std::vector<uint8_t> packed(values.size() / 2);
    std::vector<float> scales(values.size() / size_t(group));
    quantize_int8(values, group, q8, scales);
    for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(q8[i], ref8[i]) << "group " << group << " value " << i;
    quantize_int4(values, group, packed, scales);
    for (size_t i = 0; i < values.size(); ++i)
      ASSERT_EQ(int4_at(packed.data(), i), ref4[i]) << "group " << group << " value " << i;
    quantize_int4_values(values, group, q8, scales);
    for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(q8[i], ref4[i]) << "group " << group << " value " << i;
  }
}

TEST(GroupQuantisation, BadSizesAreErrors) {
  std::vector<float> values(64, 1.0f), scales(2), wrong_scales(3);
  std::vector<int8_t> q(64), short_q(63);
  std::vector<uint8_t> packed(32), short_packed(31);
  EXPECT_THROW(quantize_int8(values, 0, q, scales), Error);             // group 0
  EXPECT_THROW(quantize_int8(values, 48, q, scales), Error);            // 64 is no multiple of 48
  EXPECT_THROW(quantize_int8(values, 32, q, wrong_scales), Error);      // 3 scales for 2 groups
  EXPECT_THROW(quantize_int8(values, 32, short_q, scales), Error);      // output too short
  EXPECT_THROW(quantize_int4_values(values, 32, short_q, scales), Error);
  EXPECT_THROW(quantize_int4(values, 32, short_packed, scales), Error);
  EXPECT_THROW(quantize_int4(values, 32, packed, wrong_scales), Error);
  std::vector<float> odd(3, 1.0f), one_scale(1);
  std::vector<uint8_t> one_byte(1);
  EXPECT_THROW(quantize_int4(odd, 3, one_byte, one_scale), Error);      // two values per byte
  EXPECT_NO_THROW(quantize_int4(values, 32, packed, scales));
}

TEST(DType, SafetensorsNamesAndSizes) {
  EXPECT_EQ(parse_dtype("F8_E4M3"), DType::kF8E4M3);
  EXPECT_EQ(parse_dtype("BF16"), DType::kBF16);
  EXPECT_FALSE(parse_dtype("F8_E4M3FNUZ").has_value());
  EXPECT_EQ(dtype_bits(DType::kI4), 4);
  EXPECT_EQ(dtype_bytes(DType::kI4, 3), 2u);
  EXPECT_FALSE(dtype_bytes(DType::kF64, uint64_t(1) << 62).has_value());
}

}  // namespace
}  // namespace hetmoe
