// make-model's checkpoint writer: round trip through the real reader, the FP8 block rule,
// determinism, sharding, planted routing skew, and refusing to clobber a directory.
#include "engine/model/model_builder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/deepseek_v3.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

class ModelBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("hetmoe_model_builder_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path write_tiny(const std::string& name, RandomCheckpointOptions options = {}) {
    const fs::path dir = root_ / name;
    write_random_checkpoint(preset_model_config("tiny"), dir, options);
    return dir;
  }

  fs::path root_;
};

std::string read_file(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<uint8_t> raw_bytes(const Checkpoint& checkpoint, const std::string& name) {
  const Checkpoint::Entry& entry = checkpoint.at(name);
  const uint8_t* data = entry.file->data(*entry.info);
  return {data, data + entry.info->nbytes()};
}

std::string shard_name(size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index, count);
  return name;
}

double mean(const std::vector<float>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}
double stddev(const std::vector<float>& v) {
  const double m = mean(v);
  double sum = 0.0;
  for (float x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / double(v.size()));
}

TEST_F(ModelBuilderTest, TinyRoundTripValidatesAndHasSaneValues) {
  const ModelConfig config = preset_model_config("tiny");
  const fs::path dir = root_ / "tiny";
  const RandomCheckpointSummary summary = write_random_checkpoint(config, dir, {.seed = 7});
  EXPECT_EQ(summary.shard_count, 1);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "generation_config.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_EQ(summary.file_bytes, fs::file_size(dir / "model.safetensors"));
  for (const auto& item : fs::directory_iterator(root_))  // no temporary left behind
    EXPECT_EQ(item.path().filename(), "tiny");

  const ModelConfig reread = load_model_config(dir);
  EXPECT_EQ(reread.num_hidden_layers, 3);
  EXPECT_EQ(reread.n_routed_experts, 16);
  EXPECT_TRUE(reread.quantization.present);

  const auto checkpoint = Checkpoint::open(dir);
  const TensorValidation validation = validate_checkpoint(reread, *checkpoint);
  EXPECT_EQ(validation.checked, model_tensors(config).size());
  EXPECT_EQ(checkpoint->tensors().size(), summary.tensor_count);

  // Norms ≈ 1, BF16 linears ~ N(0, 1/in), embeddings ~ N(0, 1).
  const auto norm = checkpoint->load_float("model.layers.1.post_attention_layernorm.weight");
  EXPECT_NEAR(mean(norm), 1.0, 0.01);
  EXPECT_NEAR(stddev(norm), 0.02, 0.005);
  const auto router = checkpoint->load_float("model.layers.1.mlp.gate.weight");
  EXPECT_NEAR(stddev(router), 1.0 / 16.0, 0.003);
  EXPECT_NEAR(mean(router), 0.0, 0.002);
  EXPECT_NEAR(stddev(checkpoint->load_float("model.embed_tokens.weight")), 1.0, 0.01);
  // FP8: std = sigma · sqrt(E[U(0.5,1.5)²]) = 1.041 sigma for the jittered block scales.
  const auto down = checkpoint->load_float("model.layers.0.mlp.down_proj.weight");  // [256, 704]
  EXPECT_NEAR(stddev(down) * std::sqrt(704.0), 1.041, 0.06);
}

// Every 128×128 block (partial ones too) holds a ±448 code, so scale = amax/448 exactly, and
// the reader's dequantisation is code · scale.
TEST_F(ModelBuilderTest, Fp8BlocksHaveAmaxEqualTo448TimesScale) {
  const fs::path dir = write_tiny("tiny", {.seed = 3});
  const auto checkpoint = Checkpoint::open(dir);
  for (const std::string name : {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight",  // [144, 256]
                                 "model.layers.0.self_attn.q_b_proj.weight",            // [192, 192]
                                 "model.layers.0.mlp.down_proj.weight",                 // [256, 704]
                                 "model.layers.2.mlp.experts.15.up_proj.weight"}) {
    const Checkpoint::Entry& entry = checkpoint->at(name);
    const int64_t rows = entry.info->shape[0], cols = entry.info->shape[1];
    const std::vector<uint8_t> codes = raw_bytes(*checkpoint, name);
    const std::vector<float> scales = checkpoint->load_float(name + "_scale_inv");
    const std::vector<float> weights = checkpoint->load_float(name);
    const int64_t block_cols = (cols + 127) / 128;
    for (int64_t br = 0; br * 128 < rows; ++br) {
      for (int64_t bc = 0; bc * 128 < cols; ++bc) {
        float amax = 0.0f;
        for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r)
          for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c) {
            const uint8_t code = codes[size_t(r * cols + c)];
            ASSERT_NE(code & 0x7F, 0x7F) << name << ": NaN code";
            amax = std::max(amax, std::fabs(weights[size_t(r * cols + c)]));
            ASSERT_EQ(weights[size_t(r * cols + c)],
                      fp8_e4m3_to_float(code) * scales[size_t(br * block_cols + bc)]);
          }
        const float scale = scales[size_t(br * block_cols + bc)];
        EXPECT_GT(scale, 0.0f);
        EXPECT_EQ(amax, 448.0f * scale) << name << " block " << br << "," << bc;
      }
    }
  }
}

TEST_F(ModelBuilderTest, SameSeedSameBytesOtherSeedOtherBytes) {
  const fs::path a = write_tiny("a", {.seed = 11});
  const fs::path b = write_tiny("b", {.seed = 11});
  const fs::path c = write_tiny("c", {.seed = 12});
  for (const char* file : {"model.safetensors", "config.json", "generation_config.json"})
    EXPECT_EQ(read_file(a / file), read_file(b / file)) << file;
  EXPECT_NE(read_file(a / "model.safetensors"), read_file(c / "model.safetensors"));
}

TEST_F(ModelBuilderTest, ShardedOutputHoldsTheSameTensors) {
  const fs::path single = write_tiny("single", {.seed = 5});
  const fs::path sharded = write_tiny("sharded", {.seed = 5, .max_shard_bytes = 1'000'000});
  EXPECT_FALSE(fs::exists(sharded / "model.safetensors"));
  const nlohmann::json index = nlohmann::json::parse(read_file(sharded / "model.safetensors.index.json"));
  const auto one = Checkpoint::open(single);
  const auto many = Checkpoint::open(sharded);
  EXPECT_GE(many->files().size(), 4u);
  ASSERT_EQ(one->tensors().size(), many->tensors().size());
  uint64_t total = 0;
  for (const auto& [name, entry] : one->tensors()) {
    ASSERT_NE(many->find(name), nullptr) << name;
    EXPECT_EQ(raw_bytes(*one, name), raw_bytes(*many, name)) << name;
    total += entry.info->nbytes();
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), one->tensors().size());
  for (const auto& file : many->files()) {
    const std::string name = file->path().filename().string();
    EXPECT_TRUE(name.starts_with("model-0000") && name.ends_with(".safetensors")) << name;
    uint64_t bytes = 0;
    for (const TensorInfo& info : file->tensors()) bytes += info.nbytes();
    // A shard exceeds the limit only when a single tensor does.
    EXPECT_TRUE(bytes <= 1'000'000 || file->tensors().size() == 1) << name;
  }
  EXPECT_EQ(many->files().back()->path().filename().string(),
            shard_name(many->files().size(), many->files().size()));
}

// Reference router (MODEL_SPEC §2.7, noaux_tc): sigmoid scores, bias for selection only,
// groups scored by their top-2 sum, keep topk_group groups, then top-k.
std::vector<int64_t> route_counts(const ModelConfig& c, const std::vector<float>& gate,
                                  const std::vector<float>& bias, int tokens, uint32_t seed) {
  const int64_t experts = c.n_routed_experts, hidden = c.hidden_size;
  const int64_t per_group = experts / c.n_group;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<int64_t> counts(static_cast<size_t>(experts), 0);
  std::vector<float> x(static_cast<size_t>(hidden)), s(static_cast<size_t>(experts));
  for (int t = 0; t < tokens; ++t) {
    for (float& v : x) v = normal(rng);  // unit RMS, as after RMSNorm
    for (int64_t e = 0; e < experts; ++e) {
      double z = 0.0;
      for (int64_t j = 0; j < hidden; ++j) z += double(gate[size_t(e * hidden + j)]) * x[size_t(j)];
      s[size_t(e)] = float(1.0 / (1.0 + std::exp(-z))) + bias[size_t(e)];
    }
    std::vector<std::pair<float, int64_t>> groups;
    for (int64_t g = 0; g < c.n_group; ++g) {
      std::vector<float> members(s.begin() + g * per_group, s.begin() + (g + 1) * per_group);
      std::partial_sort(members.begin(), members.begin() + 2, members.end(), std::greater<>());
      groups.push_back({members[0] + members[1], g});
    }
    std::sort(groups.begin(), groups.end(), std::greater<>());
    std::vector<std::pair<float, int64_t>> candidates;
    for (int64_t k = 0; k < c.topk_group; ++k)
      for (int64_t e = groups[size_t(k)].second * per_group; e < (groups[size_t(k)].second + 1) * per_group;
           ++e)
        candidates.push_back({s[size_t(e)], e});
    std::partial_sort(candidates.begin(), candidates.begin() + c.num_experts_per_tok, candidates.end(),
                      std::greater<>());
    for (int64_t k = 0; k < c.num_experts_per_tok; ++k) ++counts[size_t(candidates[size_t(k)].second)];
  }
  return counts;
}

// Share of all selections that go to the most-chosen quarter of the experts.
double hottest_quarter_share(std::vector<int64_t> counts) {
  std::sort(counts.begin(), counts.end(), std::greater<>());
  const double all = double(std::accumulate(counts.begin(), counts.end(), int64_t(0)));
  return double(std::accumulate(counts.begin(), counts.begin() + counts.size() / 4, int64_t(0))) / all;
}

TEST_F(ModelBuilderTest, PlantedZipfSkewMakesHotExperts) {
  ModelConfig config = preset_model_config("tiny", {.experts = 64});  // 64 experts, 4 groups
  const fs::path flat_dir = root_ / "flat";
  const fs::path skew_dir = root_ / "skew";
  write_random_checkpoint(config, flat_dir, {.seed = 1});
  write_random_checkpoint(config, skew_dir, {.seed = 1, .zipf_alpha = 1.0});
  const auto flat = Checkpoint::open(flat_dir);
  const auto skew = Checkpoint::open(skew_dir);

  const std::string layer1 = "model.layers.1.mlp.gate.";
  const auto flat_bias = flat->load_float(layer1 + "e_score_correction_bias");
  EXPECT_TRUE(std::all_of(flat_bias.begin(), flat_bias.end(), [](float b) { return b == 0.0f; }));
  const auto bias1 = skew->load_float(layer1 + "e_score_correction_bias");
  const auto bias2 = skew->load_float("model.layers.2.mlp.gate.e_score_correction_bias");
  // bias = α·τ·(mean ln r − ln r): spread α·τ·ln 64, zero mean, a different permutation per layer.
  const auto [lo, hi] = std::minmax_element(bias1.begin(), bias1.end());
  EXPECT_NEAR(*hi - *lo, 0.08 * std::log(64.0), 1e-5);
  EXPECT_NEAR(mean(bias1), 0.0, 1e-6);
  EXPECT_NE(std::max_element(bias1.begin(), bias1.end()) - bias1.begin(),
            std::max_element(bias2.begin(), bias2.end()) - bias2.begin());

  // Route random unit-RMS tokens through the checkpoint's router: uniform bias gives the hottest
  // quarter of the experts about a quarter of the traffic; Zipf α = 1 gives it most of it.
  const auto gate = skew->load_float(layer1 + "weight");
  const auto flat_counts = route_counts(config, gate, flat_bias, 3000, 42);
  const auto skew_counts = route_counts(config, gate, bias1, 3000, 42);
  const double flat_share = hottest_quarter_share(flat_counts);
  const double skew_share = hottest_quarter_share(skew_counts);
  std::printf("hottest quarter of 64 experts: %.1f%% of selections uniform, %.1f%% with zipf 1.0\n",
              100 * flat_share, 100 * skew_share);
  EXPECT_LT(flat_share, 0.35);
  EXPECT_GT(skew_share, 0.55);
  // The hottest expert is the rank-1 (largest-bias) one.
  EXPECT_EQ(std::max_element(skew_counts.begin(), skew_counts.end()) - skew_counts.begin(),
            std::max_element(bias1.begin(), bias1.end()) - bias1.begin());
}

TEST_F(ModelBuilderTest, RefusesNonEmptyDirectoryUnlessForced) {
  const fs::path dir = root_ / "out";
  fs::create_directories(dir);
  write_random_checkpoint(preset_model_config("tiny"), dir, {});  // empty directory is fine
  std::ofstream(dir / "keep.txt") << "user data";
  try {
    write_random_checkpoint(preset_model_config("tiny"), dir, {});
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("not empty"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(fs::exists(dir / "keep.txt"));
  write_random_checkpoint(preset_model_config("tiny"), dir, {.force = true});
  EXPECT_FALSE(fs::exists(dir / "keep.txt"));
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  size_t entries = 0;
  for ([[maybe_unused]] const auto& item : fs::directory_iterator(root_)) ++entries;
  EXPECT_EQ(entries, 1u);  // no .tmp / .old left behind
}

TEST_F(ModelBuilderTest, ZipfNeedsANoauxTcRouter) {
  EXPECT_THROW(write_random_checkpoint(preset_model_config("v2-lite", {.layers = 2}), root_ / "v2",
                                       {.zipf_alpha = 1.0}),
               Error);
  EXPECT_FALSE(fs::exists(root_ / "v2"));
}

TEST(ModelPresets, Dimensions) {
  const ModelConfig ds3 = preset_model_config("ds3-layers");
  EXPECT_EQ(ds3.hidden_size, 7168);
  EXPECT_EQ(ds3.num_hidden_layers, 4);
  EXPECT_EQ(ds3.first_k_dense_replace, 1);
  EXPECT_EQ(ds3.vocab_size, 2048);
  EXPECT_EQ(ds3.n_routed_experts, 256);
  EXPECT_TRUE(ds3.quantization.present);
  const ModelConfig one = preset_model_config("ds3-layers", {.layers = 1});
  EXPECT_EQ(one.first_k_dense_replace, 0);
  EXPECT_TRUE(one.is_moe_layer(0));
  const ModelConfig lite = preset_model_config("v2-lite", {.layers = 6, .vocab = 4096});
  EXPECT_EQ(lite.hidden_size, 2048);
  EXPECT_EQ(lite.q_lora_rank, 0);
  EXPECT_EQ(lite.n_shared_experts, 2);
  EXPECT_EQ(lite.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(lite.quantization.present);
  EXPECT_EQ(lite.vocab_size, 4096);
  EXPECT_LT(lite.bos_token_id, lite.vocab_size);
  EXPECT_EQ(model_tensors(preset_model_config("tiny")).size(), 3u + 20 + 2 * (14 + 2 + 6 + 16 * 6));
  EXPECT_THROW(preset_model_config("huge"), Error);
  EXPECT_THROW(preset_model_config("tiny", {.experts = 6}), Error);  // not a multiple of 4 groups
  EXPECT_THROW(preset_model_config("tiny", {.layers = 0}), Error);
  EXPECT_THROW(preset_model_config("ds3-layers", {.experts = 8}), Error);  // top-8 from 4 groups of 1
  EXPECT_EQ(preset_model_config("ds3-layers", {.experts = 16}).n_routed_experts, 16);
}

TEST(ModelPresets, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500MB"), 500'000'000u);
  EXPECT_EQ(parse_byte_size("4GiB"), uint64_t(4) << 30);
  EXPECT_EQ(parse_byte_size("1048576"), 1'048'576u);
  EXPECT_EQ(parse_byte_size("1.5 kb"), 1500u);
  EXPECT_FALSE(parse_byte_size("0").has_value());
  EXPECT_FALSE(parse_byte_size("GB").has_value());
  EXPECT_FALSE(parse_byte_size("5XB").has_value());
  EXPECT_FALSE(parse_byte_size("").has_value());
}

}  // namespace
}  // namespace hetmoe
