#include "engine/model/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

using nlohmann::json;

const std::filesystem::path kConfigs = std::filesystem::path(HETMOE_TEST_DATA) / "configs";

// Parses `text` and returns the error message, or "" when it parsed.
std::string parse_error(const json& text) {
  try {
    parse_model_config(text.dump(), "test/config.json");
  } catch (const Error& error) {
    EXPECT_EQ(error.context().path, "test/config.json");
    return error.what();
  }
  return "";
}

TEST(ModelConfig, ParsesDeepseekV3R1) {
  const ModelConfig c = load_model_config(kConfigs / "deepseek-v3-r1.config.json");
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_EQ(c.topk_method, TopkMethod::kNoauxTc);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.factor, 40.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_TRUE(c.quantization.present);
  EXPECT_EQ(c.quantization.fmt, "e4m3");
  EXPECT_EQ(c.quantization.block_rows, 128);
  EXPECT_EQ(c.quantization.block_cols, 128);
  EXPECT_EQ(c.quantization.scale_fmt, "");
  // MODEL_SPEC §1.3: layers 0..2 dense, 3..60 MoE.
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(60));
}

TEST(ModelConfig, ParsesDeepseekV2Lite) {
  const ModelConfig c = load_model_config(kConfigs / "deepseek-v2-lite.config.json");
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(c.vocab_size, 102400);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 10944);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(c.topk_method, TopkMethod::kGreedy);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_EQ(c.num_hidden_layers, 27);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.q_lora_rank, 0);  // null in config.json
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.factor, 40.0);
  EXPECT_EQ(c.rope_scaling.mscale, 0.707);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, 100001);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_FALSE(c.quantization.present);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(ModelConfig, SoftmaxScaleMatchesAppendixB) {
  EXPECT_NEAR(load_model_config(kConfigs / "deepseek-v3-r1.config.json").softmax_scale(), 0.1352338, 5e-8);
  EXPECT_NEAR(load_model_config(kConfigs / "deepseek-v2-lite.config.json").softmax_scale(), 0.1147214, 5e-8);
  // Without yarn the scale is plain qk_head_dim^-1/2.
  json text = json::parse(std::ifstream(kConfigs / "deepseek-v3-r1.config.json"));
  text["rope_scaling"] = nullptr;
  EXPECT_DOUBLE_EQ(parse_model_config(text.dump()).softmax_scale(), 1.0 / std::sqrt(192.0));
}

TEST(ModelConfig, AcceptsRopeParametersSpelling) {
  const ModelConfig hub = load_model_config(kConfigs / "deepseek-v2-lite.config.json");
  const ModelConfig v5 = load_model_config(kConfigs / "deepseek-v2-lite.rope-parameters.config.json");
  EXPECT_EQ(v5.rope_scaling.type, "yarn");
  EXPECT_EQ(v5.rope_scaling.factor, hub.rope_scaling.factor);
  EXPECT_EQ(v5.rope_scaling.mscale_all_dim, hub.rope_scaling.mscale_all_dim);
  EXPECT_EQ(v5.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(v5.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(v5.softmax_scale(), hub.softmax_scale());
  // `rope_scaling` with `rope_type` works too.
  json text = json::parse(std::ifstream(kConfigs / "deepseek-v3-r1.config.json"));
  text["rope_scaling"].erase("type");
  text["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_EQ(parse_model_config(text.dump()).rope_scaling.type, "yarn");
}

TEST(ModelConfig, LoadsFromFolder) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hetmoe_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kConfigs / "deepseek-v3-r1.config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(load_model_config(dir).hidden_size, 7168);
  std::filesystem::remove_all(dir);
  try {
    load_model_config(dir);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("config.json"), std::string::npos) << error.what();
  }
}

TEST(ModelConfig, DefaultsFollowTransformers) {
  // Only model_type: every other key takes DeepseekV3Config's default (the V3 values).
  const ModelConfig v3 = parse_model_config(R"({"model_type": "deepseek_v3"})");
  EXPECT_EQ(v3.hidden_size, 7168);
  EXPECT_EQ(v3.n_routed_experts, 256);
  EXPECT_EQ(v3.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_EQ(v3.topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(v3.q_lora_rank, 1536);
  EXPECT_EQ(v3.rope_scaling.type, "none");
  // V2: topk_method defaults to greedy, scoring to softmax, groups to 1.
  const ModelConfig v2 = parse_model_config(R"({"model_type": "deepseek_v2", "num_experts_per_tok": 6})");
  EXPECT_EQ(v2.topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(v2.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(v2.n_group, 1);
  EXPECT_EQ(v2.topk_group, 1);
  // Absent q_lora_rank keeps the default; null means none.
  EXPECT_EQ(parse_model_config(R"({"model_type": "deepseek_v3", "q_lora_rank": null})").q_lora_rank, 0);
  // A dense model: n_routed_experts null.
  const ModelConfig dense = parse_model_config(R"({"model_type": "deepseek_v2", "n_routed_experts": null})");
  EXPECT_EQ(dense.n_routed_experts, 0);
  EXPECT_FALSE(dense.is_moe_layer(5));
}

TEST(ModelConfig, RejectsUnknownModelType) {
  std::string message = parse_error(json{{"model_type", "mixtral"}});
  EXPECT_NE(message.find("mixtral"), std::string::npos) << message;
  EXPECT_NE(message.find("deepseek_v3"), std::string::npos) << message;
  EXPECT_NE(message.find("deepseek_v2"), std::string::npos) << message;
  message = parse_error(json{{"hidden_size", 7168}});
  EXPECT_NE(message.find("model_type"), std::string::npos) << message;
}

TEST(ModelConfig, RejectsBadValuesNamingTheKey) {
  const json base = json::parse(std::ifstream(kConfigs / "deepseek-v3-r1.config.json"));
  struct Case {
    const char* key;
    json value;
    const char* expect;  // substring of the message besides the key
  };
  const Case cases[] = {
      {"hidden_size", 0, "hidden_size"},
      {"hidden_size", -7168, "hidden_size"},
      {"hidden_size", "7168", "must be an integer"},
      {"hidden_size", 7168.5, "must be an integer"},
      {"hidden_size", int64_t(1) << 40, "hidden_size"},
      {"vocab_size", nlohmann::json::array(), "vocab_size"},
      {"num_hidden_layers", 100000, "num_hidden_layers"},
      {"num_key_value_heads", 96, "must divide num_attention_heads"},
      {"num_experts_per_tok", 300, "exceeds n_routed_experts"},
      {"num_experts_per_tok", 0, "num_experts_per_tok"},
      {"n_group", 7, "must divide n_routed_experts"},
      {"topk_group", 9, "exceeds n_group"},
      {"scoring_func", "relu", "scoring_func"},
      {"topk_method", "random", "topk_method"},
      {"norm_topk_prob", "yes", "true or false"},
      {"rms_norm_eps", -1.0, "rms_norm_eps"},
      {"rope_theta", "big", "must be a number"},
      {"routed_scaling_factor", 0, "routed_scaling_factor"},
      {"qk_rope_head_dim", 63, "must be even"},
      {"first_k_dense_replace", 62, "exceeds num_hidden_layers"},
      {"hidden_act", "gelu", "silu"},
      {"rope_scaling", json{{"type", "linear"}, {"factor", 2}}, "linear"},
      {"rope_scaling", json{{"type", "yarn"}}, "rope_scaling.factor"},
      {"rope_scaling", 5, "rope_scaling"},
      {"quantization_config", json{{"quant_method", "gptq"}}, "quantization_config.quant_method"},
      {"quantization_config", json{{"quant_method", "fp8"}, {"weight_block_size", {128}}},
       "quantization_config.weight_block_size"},
      {"quantization_config", json{{"quant_method", "fp8"}, {"fmt", "e5m2"}}, "quantization_config.fmt"},
  };
  for (const Case& test : cases) {
    json text = base;
    text[test.key] = test.value;
    const std::string message = parse_error(text);
    EXPECT_NE(message.find(test.key), std::string::npos)
        << test.key << " = " << test.value << ": " << message;
    EXPECT_NE(message.find(test.expect), std::string::npos)
        << test.key << " = " << test.value << ": " << message;
  }
  EXPECT_NE(parse_error(json::array()).find("JSON object"), std::string::npos);
  try {
    parse_model_config("{\"model_type\": ", "broken.json");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("not valid JSON"), std::string::npos) << error.what();
    EXPECT_EQ(error.context().path, "broken.json");
  }
}

TEST(ModelConfig, ReadsV31ScaleFormat) {
  json text = json::parse(std::ifstream(kConfigs / "deepseek-v3-r1.config.json"));
  text["quantization_config"]["scale_fmt"] = "ue8m0";
  EXPECT_EQ(parse_model_config(text.dump()).quantization.scale_fmt, "ue8m0");
}

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.moe_intermediate_size, b.moe_intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.n_routed_experts, b.n_routed_experts);
  EXPECT_EQ(a.n_shared_experts, b.n_shared_experts);
  EXPECT_EQ(a.num_experts_per_tok, b.num_experts_per_tok);
  EXPECT_EQ(a.n_group, b.n_group);
  EXPECT_EQ(a.topk_group, b.topk_group);
  EXPECT_EQ(a.routed_scaling_factor, b.routed_scaling_factor);
  EXPECT_EQ(a.scoring_func, b.scoring_func);
  EXPECT_EQ(a.topk_method, b.topk_method);
  EXPECT_EQ(a.norm_topk_prob, b.norm_topk_prob);
  EXPECT_EQ(a.first_k_dense_replace, b.first_k_dense_replace);
  EXPECT_EQ(a.moe_layer_freq, b.moe_layer_freq);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(a.qk_nope_head_dim, b.qk_nope_head_dim);
  EXPECT_EQ(a.qk_rope_head_dim, b.qk_rope_head_dim);
  EXPECT_EQ(a.v_head_dim, b.v_head_dim);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings, b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.rope_scaling.beta_fast, b.rope_scaling.beta_fast);
  EXPECT_EQ(a.rope_scaling.beta_slow, b.rope_scaling.beta_slow);
  EXPECT_EQ(a.rope_scaling.mscale, b.rope_scaling.mscale);
  EXPECT_EQ(a.rope_scaling.mscale_all_dim, b.rope_scaling.mscale_all_dim);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.num_nextn_predict_layers, b.num_nextn_predict_layers);
  EXPECT_EQ(a.quantization.present, b.quantization.present);
  EXPECT_EQ(a.quantization.fmt, b.quantization.fmt);
  EXPECT_EQ(a.quantization.block_rows, b.quantization.block_rows);
  EXPECT_EQ(a.quantization.block_cols, b.quantization.block_cols);
  EXPECT_EQ(a.quantization.scale_fmt, b.quantization.scale_fmt);
}

TEST(ModelConfig, RoundTripsThroughHuggingFaceJson) {
  for (const char* name : {"deepseek-v3-r1.config.json", "deepseek-v2-lite.config.json",
                           "deepseek-v2-lite.rope-parameters.config.json"}) {
    SCOPED_TRACE(name);
    const ModelConfig original = load_model_config(kConfigs / name);
    const json written = model_config_to_json(original);
    expect_same(parse_model_config(written.dump(2)), original);
    // Every key of the published config is written, with the same value where it matters.
    const json published = json::parse(std::ifstream(kConfigs / name));
    for (const auto& [key, value] : published.items()) {
      if (key == "rope_parameters" || key == "head_dim" || key == "transformers_version") continue;
      ASSERT_TRUE(written.contains(key)) << key;
      if (value.is_number()) {
        EXPECT_DOUBLE_EQ(written[key].get<double>(), value.get<double>()) << key;
      } else if (key != "rope_scaling" && key != "quantization_config") {
        EXPECT_EQ(written[key], value) << key;
      }
    }
  }
  const json v2 = model_config_to_json(load_model_config(kConfigs / "deepseek-v2-lite.config.json"));
  EXPECT_TRUE(v2["q_lora_rank"].is_null());
  EXPECT_FALSE(v2.contains("quantization_config"));
  EXPECT_EQ(v2["architectures"], json::array({"DeepseekV2ForCausalLM"}));
  const json v3 = model_config_to_json(load_model_config(kConfigs / "deepseek-v3-r1.config.json"));
  EXPECT_EQ(v3["quantization_config"]["weight_block_size"], json::array({128, 128}));
  EXPECT_EQ(v3["quantization_config"]["quant_method"], "fp8");
  EXPECT_EQ(v3["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(architecture_name(Architecture::kDeepseekV3), "deepseek_v3");
  EXPECT_EQ(architecture_name(Architecture::kDeepseekV2), "deepseek_v2");
}

}  // namespace
}  // namespace hetmoe
