// The bundled model (models/tiny-shakespeare) against the PyTorch reference's fixtures in
// tests/data/tiny_ref (tools/train/make_fixtures.py, float32 from the shipped FP8 weights):
// tokenizer ids, logits at fixed positions, 32-token greedy continuations, perplexity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model/safetensors.h"
#include "engine/model/tokenizer.h"
#include "engine/runtime/generate.h"
#include "engine/runtime/perplexity.h"

namespace hetmoe {
namespace {

const std::filesystem::path kModel = std::filesystem::path(HETMOE_SOURCE_DIR) / "models" / "tiny-shakespeare";
const std::filesystem::path kFixtures = std::filesystem::path(HETMOE_TEST_DATA) / "tiny_ref";

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class TinyModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(load_model_weights(kModel));
    tokenizer_ = new Tokenizer(Tokenizer::load(kModel));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static Model* model_;
  static Tokenizer* tokenizer_;
};
Model* TinyModel::model_ = nullptr;
Tokenizer* TinyModel::tokenizer_ = nullptr;

TEST_F(TinyModel, PromptIdsMatchTheReferenceTokenizer) {
  for (const auto& prompt : read_json(kFixtures / "prompts.json")) {
    const std::string text = prompt["text"];
    std::vector<int32_t> ids = tokenizer_->encode(text, false);
    if (ids.empty() || ids[0] != tokenizer_->bos_id()) ids.insert(ids.begin(), tokenizer_->bos_id());
    EXPECT_EQ(ids, prompt["ids"].get<std::vector<int32_t>>()) << text;
  }
}

TEST_F(TinyModel, LogitsMatchTheReferenceWithinTolerance) {
  const auto logits_file = SafetensorsFile::open(kFixtures / "logits.safetensors");
  const int64_t vocab = model_->config().vocab_size;
  int index = 0;
  double worst = 0;
  for (const auto& prompt : read_json(kFixtures / "prompts.json")) {
    const auto ids = prompt["ids"].get<std::vector<int32_t>>();
    const auto positions = prompt["logit_positions"].get<std::vector<int64_t>>();
    KvCache cache(model_->config(), int64_t(ids.size()));
    std::vector<float> logits;
    SequenceStep step{&cache, ids, true, &logits};
    model_->forward(std::span(&step, 1));
    const TensorInfo* expected = logits_file->find("prompt" + std::to_string(index++) + ".logits");
    ASSERT_NE(expected, nullptr);
    ASSERT_EQ(expected->shape, (Shape{int64_t(positions.size()), vocab}));
    const auto* reference = reinterpret_cast<const float*>(logits_file->data(*expected));
    for (size_t p = 0; p < positions.size(); ++p)
      for (int64_t v = 0; v < vocab; ++v)
        worst = std::max(worst, double(std::fabs(logits[size_t(positions[p] * vocab + v)] - reference[p * size_t(vocab) + size_t(v)])));
  }
  // Both sides compute in FP32 from the same dequantised weights; only summation order differs.
  EXPECT_LT(worst, 2e-3) << "max |logit difference|";
  RecordProperty("max_abs_logit_diff", std::to_string(worst));
}

TEST_F(TinyModel, GreedyContinuationsAreIdentical) {
  for (const auto& prompt : read_json(kFixtures / "prompts.json")) {
    const auto expected = prompt["greedy_ids"].get<std::vector<int32_t>>();
    const auto margins = prompt["greedy_margins"].get<std::vector<double>>();
    GenerationRequest request{.prompt = prompt["ids"].get<std::vector<int32_t>>(),
                              .max_new_tokens = int64_t(expected.size())};
    GenerationOptions options{.context_tokens = 512, .eos_ids = {tokenizer_->eos_id()}};
    const auto got = generate(*model_, {request}, options)[0].tokens;
    // Identical, except that a near-tie (reference top-1/top-2 margin < 1e-3, below the logit
    // tolerance) may legitimately break the other way; then only the prefix before it counts.
    size_t compare = expected.size();
    for (size_t i = 0; i < margins.size(); ++i)
      if (margins[i] < 1e-3) {
        compare = i;
        break;
      }
    ASSERT_GE(got.size(), compare);
    EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + long(compare)),
              std::vector<int32_t>(expected.begin(), expected.begin() + long(compare)))
        << prompt["text"].get<std::string>();
  }
}

std::vector<int32_t> held_out_ids(const Tokenizer& tokenizer) {
  std::ifstream in(kFixtures / "heldout.txt", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return tokenizer.encode(text, false);
}

void expect_perplexity(const Model& model, const Tokenizer& tokenizer, const nlohmann::json& expected,
                       int64_t context, int64_t max_tokens) {
  std::vector<int32_t> ids = held_out_ids(tokenizer);
  if (max_tokens > 0) ids.resize(size_t(max_tokens));
  const auto result = evaluate_perplexity(model, ids, context,
                                          [&](int32_t id) { return int64_t(tokenizer.token_bytes(id).size()); });
  EXPECT_EQ(result.tokens, expected["tokens"].get<int64_t>());
  EXPECT_NEAR(result.perplexity, expected["ppl"].get<double>(), 0.005 * expected["ppl"].get<double>());
  EXPECT_NEAR(result.bits_per_byte, expected["bpb"].get<double>(), 0.005 * expected["bpb"].get<double>());
}

TEST_F(TinyModel, PerplexityOfTheFirst2048HeldOutTokensWithinHalfAPercent) {
  const auto fixture = read_json(kFixtures / "perplexity.json");
  expect_perplexity(*model_, *tokenizer_, fixture["fast_ctx128_first2048"], 128, 2048);
}

TEST_F(TinyModel, PerplexityOfTheWholeHeldOutTextWithinHalfAPercent) {
  if (std::getenv("HETMOE_TEST_SANITIZED") != nullptr)
    GTEST_SKIP() << "the whole held-out text takes too long under the sanitizers; the 2048-token test covers them";
  const auto fixture = read_json(kFixtures / "perplexity.json");
  expect_perplexity(*model_, *tokenizer_, fixture["full_ctx256"], 256, 0);
}

}  // namespace
}  // namespace hetmoe
