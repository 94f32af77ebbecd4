// Self-consistency of the forward pass on a random tiny checkpoint written by make-model's
// builder: absorbed vs naive MLA, prefill + decode vs one prefill, batch vs alone.
// (Agreement with independent references is in reference_test.cpp.)
#include "engine/runtime/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/runtime/generate.h"
#include "tests/scratch_dir.h"

namespace hetmoe {
namespace {

std::filesystem::path tiny_model_dir() {
  static const testing::ScratchDir scratch("runtime-tiny");  // removed when the test binary exits
  static const std::filesystem::path dir = [] {
    write_random_checkpoint(preset_model_config("tiny"), scratch / "model",
                            {.seed = 5, .zipf_alpha = 1.0, .force = true});
    return scratch / "model";
  }();
  return dir;
}

const Model& tiny_model() {
  static Model model(load_model_weights(tiny_model_dir()));
  return model;
}

std::vector<float> prefill_logits(const Model& model, const std::vector<int32_t>& ids) {
  KvCache cache(model.config(), int64_t(ids.size()));
  std::vector<float> logits;
  SequenceStep step{&cache, ids, true, &logits};
  model.forward(std::span(&step, 1));
  return logits;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

const std::vector<int32_t> kIds = {0, 17, 42, 5, 999, 3, 3, 3, 128, 77, 500, 1};

TEST(Model, AbsorbedAndNaiveAttentionAgree) {
  Model model(load_model_weights(tiny_model_dir()));
  model.set_attention_form(AttentionForm::kAbsorbed);
  const auto absorbed = prefill_logits(model, kIds);
  model.set_attention_form(AttentionForm::kNaive);
  const auto naive = prefill_logits(model, kIds);
  // Same math in a different association order: FP32 rounding only.
  EXPECT_LT(max_abs_diff(absorbed, naive), 1e-4);
  EXPECT_GT(std::inner_product(absorbed.begin(), absorbed.end(), absorbed.begin(), 0.0),
            1.0);  // not all zero
}

// The logits of a prefill of ids[0, split) followed by decoding the rest one token at a time.
std::vector<float> prefill_then_decode_logits(const Model& model, const std::vector<int32_t>& ids,
                                              size_t split) {
  KvCache cache(model.config(), int64_t(ids.size()));
  std::vector<float> logits, stepwise;
  SequenceStep first{&cache, std::span(ids).first(split), true, &logits};
  model.forward(std::span(&first, 1));
  stepwise = logits;
  for (size_t t = split; t < ids.size(); ++t) {
    SequenceStep step{&cache, std::span(ids).subspan(t, 1), false, &logits};
    model.forward(std::span(&step, 1));
    stepwise.insert(stepwise.end(), logits.begin(), logits.end());
  }
  return stepwise;
}

TEST(Model, PrefillThenDecodeEqualsOnePrefill) {
  const Model& model = tiny_model();
  EXPECT_EQ(max_abs_diff(prefill_logits(model, kIds), prefill_then_decode_logits(model, kIds, 5)), 0.0)
      << "rows are computed independently of how they are batched";
}

// A prompt long enough for several row blocks and latent blocks of the absorbed attention
// (16 rows, 64 positions): the same bits as decoding its tail token by token.
TEST(Model, LongPrefillEqualsDecodingTokenByToken) {
  const Model& model = tiny_model();
  std::vector<int32_t> ids(150);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % 1000);
  EXPECT_EQ(max_abs_diff(prefill_logits(model, ids), prefill_then_decode_logits(model, ids, 70)), 0.0);
}

TEST(Model, BatchGivesTheSameTokensAsSequencesAlone) {
  const Model& model = tiny_model();
  std::vector<GenerationRequest> requests = {
      {.prompt = {0, 5, 6, 7}, .max_new_tokens = 12},
      {.prompt = {0, 100, 200, 300, 400, 500, 600}, .max_new_tokens = 9},
      {.prompt = {0, 9}, .max_new_tokens = 15, .sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = 11}},
  };
  GenerationOptions options{.context_tokens = 64};
  const auto together = generate(model, requests, options);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto alone = generate(model, {requests[i]}, options);
    EXPECT_EQ(together[i].tokens, alone[0].tokens) << "sequence " << i;
    EXPECT_EQ(int64_t(alone[0].tokens.size()), requests[i].max_new_tokens);
  }
}

TEST(Model, GenerationStopsAtEosAndRejectsPromptsLongerThanTheContext) {
  const Model& model = tiny_model();
  GenerationRequest request{.prompt = {0, 5, 6}, .max_new_tokens = 8};
  const auto first = generate(model, {request}, {.context_tokens = 32});
  GenerationOptions with_eos{.context_tokens = 32, .eos_ids = {first[0].tokens[2]}};
  const auto stopped = generate(model, {request}, with_eos);
  EXPECT_LE(stopped[0].tokens.size(), 3u);
  EXPECT_EQ(stopped[0].stop_reason, StopReason::kEos);
  request.prompt.assign(40, 7);
  EXPECT_THROW(generate(model, {request}, {.context_tokens = 32}), Error);
}

TEST(Model, RejectsTokenIdsOutsideTheVocabulary) {
  const Model& model = tiny_model();
  EXPECT_THROW(prefill_logits(model, {0, int32_t(model.config().vocab_size)}), Error);
}

}  // namespace
}  // namespace hetmoe
