// The C++ forward pass against the independent PyTorch reference (tools/train/reference.py,
// float32 from the dequantised weights) on random checkpoints that make-model's builder writes
// deterministically: the DeepSeek-V3 path (q_lora, FP8, sigmoid/noaux_tc with planted skew) and
// two V2 paths (no q_lora, BF16, softmax greedy with two shared experts; group_limited_greedy).
// Fixtures: tools/fixtures/make_reference_fixtures.sh.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/model/model_builder.h"
#include "engine/runtime/model.h"
#include "tests/runtime/npy_reader.h"

namespace hetmoe {
namespace {

const std::string kReference = std::string(HETMOE_TEST_DATA) + "/reference/";

struct ReferenceCase {
  std::string name;
  std::string preset;       // or
  std::string config_file;  // relative to tests/data/reference
  double zipf = 0.0;
};

void PrintTo(const ReferenceCase& reference_case, std::ostream* os) { *os << reference_case.name; }

class ReferenceLogits : public ::testing::TestWithParam<ReferenceCase> {};

TEST_P(ReferenceLogits, MatchPyTorchWithinTolerance) {
  const ReferenceCase& param = GetParam();
  const ModelConfig config = param.preset.empty() ? load_model_config(kReference + param.config_file)
                                                  : preset_model_config(param.preset);
  const auto dir = std::filesystem::temp_directory_path() / ("hetmoe-ref-" + param.name + "-" + std::to_string(getpid()));
  write_random_checkpoint(config, dir, {.seed = 7, .zipf_alpha = param.zipf, .force = true});

  std::ifstream ids_file(kReference + "ids.txt");
  std::string ids_text;
  std::getline(ids_file, ids_text);
  std::vector<int32_t> ids;
  for (size_t at = 0; at < ids_text.size();) {
    size_t used = 0;
    ids.push_back(std::stoi(ids_text.substr(at), &used));
    at += used + 1;
  }
  Model model(load_model_weights(dir));
  KvCache cache(model.config(), int64_t(ids.size()));
  std::vector<float> logits;
  SequenceStep step{&cache, ids, true, &logits};
  model.forward(std::span(&step, 1));
  std::filesystem::remove_all(dir);

  const auto expected = testing::read_npy_f32(kReference + param.name + ".logits.npy");
  ASSERT_EQ(expected.shape, (std::vector<int64_t>{int64_t(ids.size()), config.vocab_size}));
  // Tolerance: both sides are FP32 from identical dequantised weights and differ only in the
  // order of sums (BLAS vs per-row dots, MoE combine order): 1e-4 relative to the logit scale
  // (measured: 5.4e-6 on v3-tiny, logits up to 3.9).
  double worst = 0, scale = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    worst = std::max(worst, double(std::fabs(logits[i] - expected.values[i])));
    scale = std::max(scale, double(std::fabs(expected.values[i])));
  }
  EXPECT_LT(worst, 1e-4 * std::max(1.0, scale)) << "max |logit| " << scale;
  // Same argmax at every position.
  const int64_t vocab = config.vocab_size;
  for (size_t t = 0; t < ids.size(); ++t) {
    auto row = logits.begin() + long(t * size_t(vocab));
    auto ref = expected.values.begin() + long(t * size_t(vocab));
    EXPECT_EQ(std::max_element(row, row + vocab) - row, std::max_element(ref, ref + vocab) - ref) << "position " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    RandomCheckpoints, ReferenceLogits,
    ::testing::Values(ReferenceCase{"v3-tiny", "tiny", "", 1.2}, ReferenceCase{"v2-tiny", "", "tiny-v2.config.json"},
                      ReferenceCase{"v2-glg-tiny", "", "tiny-v2-glg.config.json"}),
    [](const auto& param_info) {
      std::string name = param_info.param.name;
      for (char& ch : name)
        if (ch == '-') ch = '_';
      return name;
    });

}  // namespace
}  // namespace hetmoe
