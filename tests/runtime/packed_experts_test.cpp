// PackedExperts against the reference expert source (CheckpointExperts) on a random tiny
// checkpoint: FP8 keeps the shipped values, so logits agree to FP32 rounding; the requantised
// formats stay close; thread count never changes a bit.
#include "engine/runtime/packed_experts.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/model/model_builder.h"
#include "engine/runtime/model.h"

namespace hetmoe {
namespace {

std::filesystem::path packed_tiny_dir() {
  static const std::filesystem::path dir = [] {
    auto path = std::filesystem::temp_directory_path() / ("hetmoe-packed-tiny-" + std::to_string(::getpid()));
    write_random_checkpoint(preset_model_config("tiny"), path, {.seed = 11, .force = true});
    return path;
  }();
  return dir;
}

const std::vector<int32_t> kIds = {0,   17, 42, 5,  999, 3,   3,  3,  128, 77,
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
  const std::vector<float> reference = logits_of(model, kIds);
  PackedExperts packed(model.weights(), {.format = cpu::PackedFormat::kFP8});
  model.set_expert_source(&packed);
  const std::vector<float> got = logits_of(model, kIds);
  ASSERT_EQ(got.size(), reference.size());
  EXPECT_LT(relative_difference(got, reference), 1e-4) << "same weights, FP32 summation order only";
  EXPECT_GT(packed.bytes(), 0u);
}

TEST(PackedExperts, RequantisedFormatsStayClose) {
  Model model(load_model_weights(packed_tiny_dir()));
  const std::vector<float> reference = logits_of(model, kIds);
  // Random weights have no structure to protect, so these bounds are loose; the quality of the
  // formats on a trained model is measured in docs/KERNELS.md.
  for (auto [format, bound] : {std::pair{cpu::PackedFormat::kBF16, 0.02},
                               {cpu::PackedFormat::kINT8, 0.05},
                               {cpu::PackedFormat::kINT4, 0.5}}) {
    PackedExperts packed(model.weights(), {.format = format});
    model.set_expert_source(&packed);
    EXPECT_LT(relative_difference(logits_of(model, kIds), reference), bound)
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
    const std::vector<float> a = logits_of(model, kIds);
    model.set_expert_source(&two);
    const std::vector<float> b = logits_of(model, kIds);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << cpu::packed_format_name(format);
    // Token by token (decode kernels, 1 token per expert) equals the whole prompt at once.
    KvCache cache(model.config(), int64_t(kIds.size()));
    std::vector<float> stepwise, logits;
    for (size_t t = 0; t < kIds.size(); ++t) {
      SequenceStep step{&cache, std::span(kIds).subspan(t, 1), false, &logits};
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
