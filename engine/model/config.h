// config.json of a Hugging Face DeepSeek-V3 / V2 checkpoint as a typed struct.
//
// Field names follow the Hugging Face keys (MODEL_SPEC.md §1). Parsing accepts both
// `rope_scaling` and `rope_parameters`, a null or absent `q_lora_rank`, and rejects an
// unknown `model_type` with the list of supported ones.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace hetmoe {

enum class Architecture { kDeepseekV3, kDeepseekV2 };

enum class ScoringFunc { kSigmoid, kSoftmax };
enum class TopkMethod { kNoauxTc, kGreedy, kGroupLimitedGreedy };

struct RopeScaling {
  std::string type = "none";  // "yarn" or "none"
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct FP8Quantization {
  bool present = false;          // quantization_config exists
  std::string fmt = "e4m3";
  int64_t block_rows = 128;      // weight_block_size[0]
  int64_t block_cols = 128;      // weight_block_size[1]
  std::string scale_fmt;         // "" or "ue8m0" (V3.1)
};

struct ModelConfig {
  Architecture architecture = Architecture::kDeepseekV3;
  std::string model_type;  // as written in config.json

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense FFN
  int64_t moe_intermediate_size = 0;  // per routed expert
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // unused by MLA; kept for the round trip (absent: = heads)
  int64_t n_routed_experts = 0;  // 0: no MoE layers
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  TopkMethod topk_method = TopkMethod::kGreedy;
  bool norm_topk_prob = false;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;

  int64_t q_lora_rank = 0;  // 0: no q compression (config has null)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 0;
  RopeScaling rope_scaling;

  bool tie_word_embeddings = false;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  int64_t num_nextn_predict_layers = 0;
  FP8Quantization quantization;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // MODEL_SPEC §1.3: MoE iff experts exist, l >= first_k_dense_replace and l % moe_layer_freq == 0.
  bool is_moe_layer(int64_t layer) const;
  // softmax scale qk_head_dim^-1/2 · m², m = yarn mscale(factor, mscale_all_dim) (MODEL_SPEC §2.4).
  double softmax_scale() const;
};

// Parses config.json text; `source` names the file in errors. Throws hetmoe::Error.
ModelConfig parse_model_config(std::string_view json_text, const std::string& source = "config.json");
// Reads DIR/config.json, or the file itself when `path` is a .json file.
ModelConfig load_model_config(const std::filesystem::path& path);
// The config as Hugging Face JSON (what the checkpoint writer puts in config.json).
nlohmann::json model_config_to_json(const ModelConfig& config);

std::string_view architecture_name(Architecture architecture);  // "deepseek_v3"

}  // namespace hetmoe
