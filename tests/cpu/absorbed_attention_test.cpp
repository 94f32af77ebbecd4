// cpu::absorbed_attention_head on every ISA path against a double reference of MLA attention in
// its naive form on the checkpoint's exact kv_b values (tolerance 1e-5 · (1 + Σ|terms|): f32
// sums of ≤ 150 products, a softmax), and the invariances the forward pass relies on: a row's
// output is the same bits computed alone (kv_b read in place) or in a block of rows (kv_b
// dequantised once), and on every path the same bits as the portable one.
#include "cpu/absorbed_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/core/dtype.h"

namespace hetmoe::cpu {
namespace {

constexpr AbsorbedShape kShape{.nope = 16, .rope = 8, .latent = 40, .v = 24, .scale = 0.17f};
constexpr int64_t kHeads = 2, kPositions = 150;  // more than two blocks of kAbsorbedPositions

struct Inputs {
  std::vector<uint8_t> kv_b_bytes;
  std::vector<float> kv_b_scales;
  std::vector<double> kv_b;  // exact values [heads * (nope + v), latent]
  WeightMatrix w;
  std::vector<float> latents, rope_keys, q;  // q: [kPositions, heads, nope + rope]
};

Inputs make_inputs(WeightFormat format, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Inputs in;
  const int64_t rows = kHeads * (kShape.nope + kShape.v), cols = kShape.latent;
  in.kv_b.resize(size_t(rows * cols));
  in.kv_b_bytes.resize(size_t(rows * cols * (format == WeightFormat::kFP8Block ? 1 : 2)));
  in.kv_b_scales = {0.004f};  // one 128x128 block
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = 0.3f * normal(rng);
    if (format == WeightFormat::kFP8Block) {
      const uint8_t code = fp8_e4m3_from_float(v / 0.004f);
      in.kv_b_bytes[size_t(i)] = code;
      in.kv_b[size_t(i)] = double(fp8_e4m3_to_float(code)) * 0.004;
    } else {
      const uint16_t bits = bf16_from_float(v);
      std::memcpy(&in.kv_b_bytes[size_t(2 * i)], &bits, 2);
      in.kv_b[size_t(i)] = bf16_to_float(bits);
    }
  }
  in.w = {.format = format,
          .data = in.kv_b_bytes.data(),
          .scale_inv = format == WeightFormat::kFP8Block ? in.kv_b_scales.data() : nullptr,
          .rows = rows,
          .cols = cols};
  for (auto* v : {&in.latents, &in.rope_keys, &in.q}) {
    const int64_t width = v == &in.latents ? kShape.latent : v == &in.rope_keys ? kShape.rope
                                                                                 : kHeads * (kShape.nope + kShape.rope);
    v->resize(size_t(kPositions * width));
    for (float& x : *v) x = normal(rng);
  }
  return in;
}

// The naive form in double: k_nope = W_UK·latent, v = W_UV·latent per position.
std::vector<double> reference(const Inputs& in, int64_t head, int64_t position, double* magnitude) {
  const int64_t nope = kShape.nope, rope = kShape.rope, latent = kShape.latent, vd = kShape.v;
  const int64_t uk = head * (nope + vd), uv = uk + nope, qk = nope + rope;
  const float* q = &in.q[size_t((position * kHeads + head) * qk)];
  std::vector<double> scores(size_t(position + 1));
  double top = -1e300;
  for (int64_t u = 0; u <= position; ++u) {
    double s = 0;
    for (int64_t d = 0; d < nope; ++d) {
      double k = 0;
      for (int64_t c = 0; c < latent; ++c) k += in.kv_b[size_t((uk + d) * latent + c)] * in.latents[size_t(u * latent + c)];
      s += double(q[d]) * k;
    }
    for (int64_t d = 0; d < rope; ++d) s += double(q[nope + d]) * in.rope_keys[size_t(u * rope + d)];
    scores[size_t(u)] = kShape.scale * s;
    top = std::max(top, scores[size_t(u)]);
  }
  double sum = 0;
  for (double& s : scores) sum += (s = std::exp(s - top));
  std::vector<double> out(size_t(vd), 0.0);
  *magnitude = 0;
  for (int64_t j = 0; j < vd; ++j)
    for (int64_t u = 0; u <= position; ++u) {
      double v = 0, abs_v = 0;
      for (int64_t c = 0; c < latent; ++c) {
        const double term = in.kv_b[size_t((uv + j) * latent + c)] * in.latents[size_t(u * latent + c)];
        v += term;
        abs_v += std::fabs(term);
      }
      out[size_t(j)] += scores[size_t(u)] / sum * v;
      *magnitude = std::max(*magnitude, abs_v);
    }
  return out;
}

// Rows [first, first + rows) of head `head` as one task.
std::vector<float> run(const Inputs& in, int64_t head, int64_t first, int64_t rows, Isa isa) {
  std::vector<int64_t> positions(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) positions[size_t(i)] = first + i;
  const int64_t qk = kShape.nope + kShape.rope;
  const AbsorbedHead task{.shape = kShape, .kv_b = &in.w, .head = head, .latents = in.latents.data(),
                          .rope_keys = in.rope_keys.data(), .positions = positions.data(), .rows = rows,
                          .q = &in.q[size_t((first * kHeads + head) * qk)], .q_stride = kHeads * qk};
  std::vector<float> out(size_t(rows * kShape.v) + 1, -7.0f);  // + 1: a sentinel past the last row
  AbsorbedScratch scratch;
  absorbed_attention_head(task, out.data(), kShape.v, scratch, isa);
  EXPECT_EQ(out.back(), -7.0f) << "wrote past the last row";
  out.pop_back();
  return out;
}

class AbsorbedAttentionPaths : public ::testing::TestWithParam<Isa> {};

TEST_P(AbsorbedAttentionPaths, MatchesTheNaiveFormAndIsBlockInvariant) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " not supported by this CPU";
  for (WeightFormat format : {WeightFormat::kFP8Block, WeightFormat::kBF16}) {
    const Inputs in = make_inputs(format, 7);
    for (auto [first, rows] : {std::pair<int64_t, int64_t>{0, 64}, {60, 30}, {86, 64}, {149, 1}, {0, 1}}) {
      for (int64_t head = 0; head < kHeads; ++head) {
        SCOPED_TRACE(testing::Message() << isa_name(isa) << " format " << int(format) << " rows " << first << "+"
                                        << rows << " head " << head);
        const std::vector<float> block = run(in, head, first, rows, isa);
        const std::vector<float> portable = run(in, head, first, rows, Isa::kScalar);
        EXPECT_EQ(0, std::memcmp(block.data(), portable.data(), block.size() * sizeof(float)));
        for (int64_t i = 0; i < rows; ++i) {
          const std::vector<float> alone = run(in, head, first + i, 1, isa);
          ASSERT_EQ(0, std::memcmp(alone.data(), &block[size_t(i * kShape.v)], alone.size() * sizeof(float)))
              << "row " << first + i << " alone differs from the block";
          double magnitude = 0;
          const std::vector<double> expected = reference(in, head, first + i, &magnitude);
          for (int64_t j = 0; j < kShape.v; ++j)
            ASSERT_NEAR(block[size_t(i * kShape.v + j)], expected[size_t(j)], 1e-5 * (1 + magnitude))
                << "row " << first + i << " output " << j;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, AbsorbedAttentionPaths,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

}  // namespace
}  // namespace hetmoe::cpu
