// PackedExperts against the reference expert source (CheckpointExperts) on a random tiny
// checkpoint: FP8 keeps the shipped values, so logits agree to FP32 rounding; the requantised
// formats stay close; thread count never changes a bit.
#include "engine/runtime/packed_experts.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/model/model_builder.h"
#include "engine/runtime/model.h"
#include "tests/scratch_dir.h"

namespace hetmoe {
namespace {

std::filesystem::path packed_tiny_dir() {
  static const testing::ScratchDir scratch("packed-tiny");  // removed when the test binary exits
  static const std::filesystem::path dir = [] {
    write_random_checkpoint(preset_model_config("tiny"), scratch / "model", {.seed = 11, .force = true});
    return scratch / "model";
  }();
  return dir;
}

const std::vector<int32_t> kPackedPrompt = {0,   17, 42, 5,  999, 3,   3,  3,  128, 77,
                                            500, 1,  64, 65, 66,  900, 12, 13, 14,  15};

std::vector<float> logits_of(const Model& model, std::span<const int32_t> ids) {
  KvCache cache(model.config(), int64_t(ids.size()));
  std::vector<float> logits;
  SequenceStep step{&cache, ids, true, &logits};
  model.forward(std::span(&step, 1));
  return logits;
}

// max |a - b| relative to max |b|
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return worst / scale;
}

TEST(PackedExperts, Fp8MatchesCheckpointExperts) {
  Model model(load_model_weights(packed_tiny_dir()));
  const std::vector<float> reference = logits_of(model, kPackedPrompt);
  PackedExperts packed(model.weights(), {.format = cpu::PackedFormat::kFP8});
  model.set_expert_source(&packed);
  const std::vector<float> got = logits_of(model, kPackedPrompt);
  ASSERT_EQ(got.size(), reference.size());
  EXPECT_LT(relative_difference(got, reference), 1e-4) << "same weights, FP32 summation order only";
  EXPECT_GT(packed.bytes(), 0u);
}

TEST(PackedExperts, RequantisedFormatsStayClose) {
  Model model(load_model_weights(packed_tiny_dir()));
  const std::vector<float> reference = logits_of(model, kPackedPrompt);
  // Random weights have no structure to protect, so these bounds are loose; the quality of the
  // formats on a trained model is measured in docs/KERNELS.md.
  for (auto [format, bound] : {std::pair{cpu::PackedFormat::kBF16, 0.02},
                               {cpu::PackedFormat::kINT8, 0.05},
                               {cpu::PackedFormat::kINT4, 0.5}}) {
    PackedExperts packed(model.weights(), {.format = format});
    model.set_expert_source(&packed);
    EXPECT_LT(relative_difference(logits_of(model, kPackedPrompt), reference), bound)
        << cpu::packed_format_name(format);
    model.set_expert_source(nullptr);
  }
}

TEST(PackedExperts, ThreadCountAndDecodeVsPrefillGiveIdenticalBits) {
  Model model(load_model_weights(packed_tiny_dir()));
  for (cpu::PackedFormat format : {cpu::PackedFormat::kFP8, cpu::PackedFormat::kINT4}) {
    PackedExperts one(model.weights(), {.format = format, .threads = {.threads = 1}});
    PackedExperts two(model.weights(), {.format = format, .threads = {.threads = 2}});
    model.set_expert_source(&one);
    const std::vector<float> a = logits_of(model, kPackedPrompt);
    model.set_expert_source(&two);
    const std::vector<float> b = logits_of(model, kPackedPrompt);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << cpu::packed_format_name(format);
    // Token by token (decode kernels, 1 token per expert) equals the whole prompt at once.
    KvCache cache(model.config(), int64_t(kPackedPrompt.size()));
    std::vector<float> stepwise, logits;
    for (size_t t = 0; t < kPackedPrompt.size(); ++t) {
      SequenceStep step{&cache, std::span(kPackedPrompt).subspan(t, 1), false, &logits};
      model.forward(std::span(&step, 1));
      stepwise.insert(stepwise.end(), logits.begin(), logits.end());
    }
    ASSERT_EQ(0, std::memcmp(a.data(), stepwise.data(), a.size() * sizeof(float)))
        << cpu::packed_format_name(format);
    model.set_expert_source(nullptr);
  }
}

}  // namespace
}  // namespace hetmoe
