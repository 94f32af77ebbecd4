#include "engine/model/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

using nlohmann::json;

// Far above any published model (V3: hidden 7168, vocab 129280, 256 experts) yet small enough
// that products of two sizes cannot overflow int64 in the code that sizes tensors from them.
constexpr int64_t kMaxSize = int64_t(1) << 24;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxExperts = int64_t(1) << 16;
constexpr int64_t kMaxPositions = int64_t(1) << 30;
constexpr int64_t kMaxTokenId = int64_t(1) << 31;

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return fmt::format("{} {}", value.type_name(), text);
}

// Typed access to one JSON object of config.json; every failure names the key.
class Fields {
 public:
  Fields(const json& object, const std::string& source, std::string prefix = "")
      : object_(object), source_(source), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool has(const char* key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }
  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw Error(fmt::format("config key '{}{}' {}", prefix_, key, what),
                {.path = source_, .hint = "fix config.json or re-download it from the model's repository"});
  }

  int64_t integer(const char* key, int64_t fallback, int64_t min, int64_t max) const {
    const json* value = find(key);
    if (!value) return fallback;
    int64_t result = 0;
    if (value->is_number_unsigned()) {
      uint64_t raw = value->get<uint64_t>();
      if (raw > uint64_t(max)) fail(key, fmt::format("must be in [{}, {}], got {}", min, max, raw));
      result = int64_t(raw);
    } else if (value->is_number_integer()) {
      result = value->get<int64_t>();
    } else if (value->is_number_float()) {
      double raw = value->get<double>();
      if (!std::isfinite(raw) || raw != std::floor(raw) || raw < double(min) || raw > double(max))
        fail(key, fmt::format("must be an integer in [{}, {}], got {}", min, max, describe(*value)));
      result = int64_t(raw);
    } else {
      fail(key, fmt::format("must be an integer, got {}", describe(*value)));
    }
    if (result < min || result > max) fail(key, fmt::format("must be in [{}, {}], got {}", min, max, result));
    return result;
  }

  double number(const char* key, double fallback, double min, double max, bool min_exclusive) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_number()) fail(key, fmt::format("must be a number, got {}", describe(*value)));
    double result = value->get<double>();
    bool below = min_exclusive ? !(result > min) : !(result >= min);
    if (!std::isfinite(result) || below || result > max)
      fail(key, fmt::format("must be in {}{}, {}], got {}", min_exclusive ? "(" : "[", min, max, result));
    return result;
  }

  bool boolean(const char* key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_boolean()) fail(key, fmt::format("must be true or false, got {}", describe(*value)));
    return value->get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_string()) fail(key, fmt::format("must be a string, got {}", describe(*value)));
    return value->get<std::string>();
  }

  const json& object() const { return object_; }
  const std::string& source() const { return source_; }

 private:
  const json& object_;
  const std::string& source_;
  std::string prefix_;
};

ScoringFunc parse_scoring_func(const Fields& fields, ScoringFunc fallback) {
  if (!fields.has("scoring_func")) return fallback;
  std::string name = fields.string("scoring_func", "");
  if (name == "sigmoid") return ScoringFunc::kSigmoid;
  if (name == "softmax") return ScoringFunc::kSoftmax;
  fields.fail("scoring_func", fmt::format("must be \"sigmoid\" or \"softmax\", got \"{}\"", name));
}

TopkMethod parse_topk_method(const Fields& fields, TopkMethod fallback) {
  if (!fields.has("topk_method")) return fallback;
  std::string name = fields.string("topk_method", "");
  if (name == "noaux_tc") return TopkMethod::kNoauxTc;
  if (name == "greedy") return TopkMethod::kGreedy;
  if (name == "group_limited_greedy") return TopkMethod::kGroupLimitedGreedy;
  fields.fail("topk_method",
              fmt::format("must be \"noaux_tc\", \"greedy\" or \"group_limited_greedy\", got \"{}\"", name));
}

std::string_view scoring_func_name(ScoringFunc func) {
  return func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
}

std::string_view topk_method_name(TopkMethod method) {
  switch (method) {
    case TopkMethod::kNoauxTc:
      return "noaux_tc";
    case TopkMethod::kGreedy:
      return "greedy";
    case TopkMethod::kGroupLimitedGreedy:
      return "group_limited_greedy";
  }
  return "greedy";
}

// `rope_scaling` (hub configs) or `rope_parameters` (transformers >= 5, which also moves
// rope_theta inside it); the type is spelled `type` or `rope_type`.
void parse_rope(const Fields& top, ModelConfig& config) {
  const char* key = top.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  const json* block = top.find(key);
  if (!block) return;
  if (!block->is_object()) top.fail(key, fmt::format("must be an object or null, got {}", describe(*block)));
  Fields rope(*block, top.source(), std::string(key) + ".");

  if (!top.has("rope_theta") && rope.has("rope_theta"))
    config.rope_theta = rope.number("rope_theta", config.rope_theta, 0.0, 1e12, true);

  const char* type_key = rope.has("type") ? "type" : "rope_type";
  std::string type = rope.string(type_key, "default");
  if (type == "default" || type == "none") {
    config.rope_scaling = RopeScaling{};
    return;
  }
  if (type != "yarn")
    rope.fail(type_key, fmt::format("is \"{}\"; hetmoe supports \"yarn\" and \"default\"", type));

  RopeScaling& scaling = config.rope_scaling;
  scaling.type = "yarn";
  if (!rope.has("factor")) rope.fail("factor", "is required for yarn rope scaling");
  scaling.factor = rope.number("factor", 1.0, 0.0, 1e6, true);
  scaling.original_max_position_embeddings =
      rope.integer("original_max_position_embeddings", config.max_position_embeddings, 1, kMaxPositions);
  scaling.beta_fast = rope.number("beta_fast", 32.0, 0.0, 1e6, true);
  scaling.beta_slow = rope.number("beta_slow", 1.0, 0.0, 1e6, true);
  scaling.mscale = rope.number("mscale", 1.0, 0.0, 1e3, false);
  scaling.mscale_all_dim = rope.number("mscale_all_dim", 0.0, 0.0, 1e3, false);
}

void parse_quantization(const Fields& top, ModelConfig& config) {
  const json* block = top.find("quantization_config");
  if (!block) return;
  if (!block->is_object())
    top.fail("quantization_config", fmt::format("must be an object, got {}", describe(*block)));
  Fields quant(*block, top.source(), "quantization_config.");
  std::string method = quant.string("quant_method", "fp8");
  if (method != "fp8")
    quant.fail("quant_method", fmt::format("is \"{}\"; hetmoe reads only \"fp8\" (block-scaled "
                                           "DeepSeek FP8) or unquantised checkpoints",
                                           method));
  FP8Quantization& q = config.quantization;
  q.present = true;
  q.fmt = quant.string("fmt", "e4m3");
  if (q.fmt != "e4m3") quant.fail("fmt", fmt::format("is \"{}\"; hetmoe supports \"e4m3\"", q.fmt));
  if (const json* block_size = quant.find("weight_block_size")) {
    if (!block_size->is_array() || block_size->size() != 2)
      quant.fail("weight_block_size",
                 fmt::format("must be an array of two integers, got {}", describe(*block_size)));
    for (size_t axis = 0; axis < 2; ++axis) {
      const json& value = (*block_size)[axis];
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 65536)
        quant.fail("weight_block_size",
                   fmt::format("must hold two integers in [1, 65536], got {}", describe(*block_size)));
    }
    q.block_rows = (*block_size)[0].get<int64_t>();
    q.block_cols = (*block_size)[1].get<int64_t>();
  }
  q.scale_fmt = quant.string("scale_fmt", "");
  if (!q.scale_fmt.empty() && q.scale_fmt != "ue8m0")
    quant.fail("scale_fmt", fmt::format("is \"{}\"; hetmoe supports \"ue8m0\" or none", q.scale_fmt));
}

// Defaults of transformers' DeepseekV3Config / DeepseekV2Config for keys a config.json omits.
ModelConfig defaults_for(Architecture architecture) {
  ModelConfig c;
  c.architecture = architecture;
  if (architecture == Architecture::kDeepseekV3) {
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 61;
    c.num_attention_heads = 128;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 8;
    c.n_group = 8;
    c.topk_group = 4;
    c.routed_scaling_factor = 2.5;
    c.scoring_func = ScoringFunc::kSigmoid;
    c.topk_method = TopkMethod::kNoauxTc;
    c.norm_topk_prob = true;
    c.first_k_dense_replace = 3;
    c.q_lora_rank = 1536;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 0;
    c.eos_token_id = 1;
  } else {
    c.vocab_size = 32000;
    c.hidden_size = 4096;
    c.intermediate_size = 11008;
    c.moe_intermediate_size = 1407;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.n_routed_experts = 64;
    c.n_shared_experts = 2;
    c.num_experts_per_tok = 0;  // HF default None: required with experts
    c.n_group = 1;
    c.topk_group = 1;
    c.routed_scaling_factor = 1.0;
    c.scoring_func = ScoringFunc::kSoftmax;
    c.topk_method = TopkMethod::kGreedy;
    c.norm_topk_prob = false;
    c.first_k_dense_replace = 0;
    c.q_lora_rank = 1536;
    c.max_position_embeddings = 2048;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
  }
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.moe_layer_freq = 1;
  return c;
}

// A token id may be an integer or (in some configs) a list whose first entry is the main one.
int64_t token_id(const Fields& fields, const char* key, int64_t fallback) {
  const json* value = fields.find(key);
  if (value && value->is_array()) {
    if (value->empty()) fields.fail(key, "must not be an empty list");
    json first = json::object({{key, (*value)[0]}});
    return Fields(first, fields.source()).integer(key, fallback, 0, kMaxTokenId);
  }
  return fields.integer(key, fallback, 0, kMaxTokenId);
}

void validate(const Fields& f, const ModelConfig& c) {
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    f.fail("num_key_value_heads", fmt::format("({}) must divide num_attention_heads ({})",
                                              c.num_key_value_heads, c.num_attention_heads));
  if (c.qk_rope_head_dim % 2 != 0)
    f.fail("qk_rope_head_dim", fmt::format("must be even (RoPE rotates pairs), got {}", c.qk_rope_head_dim));
  if (c.first_k_dense_replace > c.num_hidden_layers)
    f.fail("first_k_dense_replace",
           fmt::format("({}) exceeds num_hidden_layers ({})", c.first_k_dense_replace, c.num_hidden_layers));
  if (c.n_routed_experts == 0) return;
  if (c.num_experts_per_tok < 1)
    f.fail("num_experts_per_tok", "must be at least 1 when n_routed_experts is set");
  if (c.num_experts_per_tok > c.n_routed_experts)
    f.fail("num_experts_per_tok",
           fmt::format("({}) exceeds n_routed_experts ({})", c.num_experts_per_tok, c.n_routed_experts));
  if (c.n_routed_experts % c.n_group != 0)
    f.fail("n_group", fmt::format("({}) must divide n_routed_experts ({})", c.n_group, c.n_routed_experts));
  if (c.topk_group > c.n_group)
    f.fail("topk_group", fmt::format("({}) exceeds n_group ({})", c.topk_group, c.n_group));
  if (c.topk_method != TopkMethod::kGreedy &&
      c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group))
    f.fail("num_experts_per_tok",
           fmt::format("({}) exceeds the experts in topk_group ({}) groups of {}", c.num_experts_per_tok,
                       c.topk_group, c.n_routed_experts / c.n_group));
}

}  // namespace

std::string_view architecture_name(Architecture architecture) {
  return architecture == Architecture::kDeepseekV3 ? "deepseek_v3" : "deepseek_v2";
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && moe_layer_freq > 0 &&
         layer % moe_layer_freq == 0;
}

double ModelConfig::softmax_scale() const {
  double m = 1.0;
  if (rope_scaling.type == "yarn" && rope_scaling.factor > 1.0 && rope_scaling.mscale_all_dim != 0.0)
    m = 0.1 * rope_scaling.mscale_all_dim * std::log(rope_scaling.factor) + 1.0;
  return m * m / std::sqrt(double(qk_head_dim()));
}

ModelConfig parse_model_config(std::string_view json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& error) {
    throw Error(fmt::format("config is not valid JSON: {}", error.what()), {.path = source});
  }
  if (!root.is_object())
    throw Error(fmt::format("config must be a JSON object, got {}", root.type_name()), {.path = source});
  Fields f(root, source);

  if (!f.has("model_type")) f.fail("model_type", "is missing (expected \"deepseek_v3\" or \"deepseek_v2\")");
  const std::string model_type = f.string("model_type", "");
  Architecture architecture;
  if (model_type == "deepseek_v3") {
    architecture = Architecture::kDeepseekV3;
  } else if (model_type == "deepseek_v2") {
    architecture = Architecture::kDeepseekV2;
  } else {
    throw Error(
        fmt::format("unsupported model_type \"{}\"; hetmoe supports \"deepseek_v3\" and \"deepseek_v2\"",
                    model_type),
        {.path = source});
  }

  ModelConfig c = defaults_for(architecture);
  c.model_type = model_type;

  c.vocab_size = f.integer("vocab_size", c.vocab_size, 1, kMaxSize);
  c.hidden_size = f.integer("hidden_size", c.hidden_size, 1, kMaxSize);
  c.intermediate_size = f.integer("intermediate_size", c.intermediate_size, 1, kMaxSize);
  c.moe_intermediate_size = f.integer("moe_intermediate_size", c.moe_intermediate_size, 1, kMaxSize);
  c.num_hidden_layers = f.integer("num_hidden_layers", c.num_hidden_layers, 1, kMaxLayers);
  c.num_attention_heads = f.integer("num_attention_heads", c.num_attention_heads, 1, kMaxExperts);
  c.num_key_value_heads = f.integer("num_key_value_heads", c.num_attention_heads, 1, kMaxExperts);

  // null means "no MoE" / "no shared experts" (HF's None); absent means the class default.
  auto nullable = [&](const char* key, int64_t fallback, int64_t min, int64_t max) {
    auto it = root.find(key);
    if (it != root.end() && it->is_null()) return int64_t(0);
    return f.integer(key, fallback, min, max);
  };
  c.n_routed_experts = nullable("n_routed_experts", c.n_routed_experts, 0, kMaxExperts);
  c.n_shared_experts = nullable("n_shared_experts", c.n_shared_experts, 0, kMaxExperts);
  c.num_experts_per_tok = nullable("num_experts_per_tok", c.num_experts_per_tok, 0, kMaxExperts);
  c.n_group = f.integer("n_group", c.n_group, 1, kMaxExperts);  // null: 1
  c.topk_group = f.integer("topk_group", c.topk_group, 1, kMaxExperts);
  c.routed_scaling_factor = f.number("routed_scaling_factor", c.routed_scaling_factor, 0.0, 1e6, true);
  c.scoring_func = parse_scoring_func(f, c.scoring_func);
  c.topk_method = parse_topk_method(f, c.topk_method);
  c.norm_topk_prob = f.boolean("norm_topk_prob", c.norm_topk_prob);
  c.first_k_dense_replace = f.integer("first_k_dense_replace", c.first_k_dense_replace, 0, kMaxLayers);
  c.moe_layer_freq = f.integer("moe_layer_freq", c.moe_layer_freq, 1, kMaxLayers);

  c.q_lora_rank = nullable("q_lora_rank", c.q_lora_rank, 0, kMaxSize);
  c.kv_lora_rank = f.integer("kv_lora_rank", c.kv_lora_rank, 1, kMaxSize);
  c.qk_nope_head_dim = f.integer("qk_nope_head_dim", c.qk_nope_head_dim, 0, kMaxSize);
  c.qk_rope_head_dim = f.integer("qk_rope_head_dim", c.qk_rope_head_dim, 2, kMaxSize);
  c.v_head_dim = f.integer("v_head_dim", c.v_head_dim, 1, kMaxSize);

  c.rms_norm_eps = f.number("rms_norm_eps", c.rms_norm_eps, 0.0, 1.0, true);
  c.rope_theta = f.number("rope_theta", c.rope_theta, 0.0, 1e12, true);
  c.max_position_embeddings =
      f.integer("max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions);
  parse_rope(f, c);

  c.tie_word_embeddings = f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  c.bos_token_id = token_id(f, "bos_token_id", c.bos_token_id);
  c.eos_token_id = token_id(f, "eos_token_id", c.eos_token_id);
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", 0, 0, kMaxLayers);
  parse_quantization(f, c);

  // Keys the engine does not implement: refuse them rather than compute something else.
  if (std::string act = f.string("hidden_act", "silu"); act != "silu")
    f.fail("hidden_act", fmt::format("is \"{}\"; hetmoe implements \"silu\" (SwiGLU) only", act));
  if (f.boolean("attention_bias", false))
    f.fail("attention_bias", "is true; hetmoe implements MLA without biases");

  validate(f, c);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = path / "config.json";
  std::ifstream stream(file, std::ios::binary);
  if (!stream)
    throw Error("cannot open config file",
                {.path = file.string(), .hint = "pass a Hugging Face model folder or its config.json"});
  std::ostringstream text;
  text << stream.rdbuf();
  if (stream.bad()) throw Error("cannot read config file", {.path = file.string()});
  return parse_model_config(text.str(), file.string());
}

json model_config_to_json(const ModelConfig& c) {
  const bool v3 = c.architecture == Architecture::kDeepseekV3;
  json out = json::object();
  out["architectures"] = json::array({v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"});
  out["model_type"] = std::string(architecture_name(c.architecture));
  out["vocab_size"] = c.vocab_size;
  out["hidden_size"] = c.hidden_size;
  out["intermediate_size"] = c.intermediate_size;
  out["moe_intermediate_size"] = c.moe_intermediate_size;
  auto or_null = [](int64_t value) { return value == 0 ? json(nullptr) : json(value); };
  out["n_routed_experts"] = or_null(c.n_routed_experts);
  out["n_shared_experts"] = or_null(c.n_shared_experts);
  out["num_experts_per_tok"] = or_null(c.num_experts_per_tok);
  out["n_group"] = c.n_group;
  out["topk_group"] = c.topk_group;
  out["routed_scaling_factor"] = c.routed_scaling_factor;
  out["scoring_func"] = std::string(scoring_func_name(c.scoring_func));
  out["topk_method"] = std::string(topk_method_name(c.topk_method));
  out["norm_topk_prob"] = c.norm_topk_prob;
  out["first_k_dense_replace"] = c.first_k_dense_replace;
  out["moe_layer_freq"] = c.moe_layer_freq;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["num_key_value_heads"] = c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads;
  out["q_lora_rank"] = or_null(c.q_lora_rank);
  out["kv_lora_rank"] = c.kv_lora_rank;
  out["qk_nope_head_dim"] = c.qk_nope_head_dim;
  out["qk_rope_head_dim"] = c.qk_rope_head_dim;
  out["v_head_dim"] = c.v_head_dim;
  out["hidden_act"] = "silu";
  out["rms_norm_eps"] = c.rms_norm_eps;
  out["rope_theta"] = c.rope_theta;
  out["max_position_embeddings"] = c.max_position_embeddings;
  if (c.rope_scaling.type == "yarn") {
    const RopeScaling& r = c.rope_scaling;
    out["rope_scaling"] = {{"type", "yarn"},
                           {"factor", r.factor},
                           {"original_max_position_embeddings", r.original_max_position_embeddings},
                           {"beta_fast", r.beta_fast},
                           {"beta_slow", r.beta_slow},
                           {"mscale", r.mscale},
                           {"mscale_all_dim", r.mscale_all_dim}};
  } else {
    out["rope_scaling"] = nullptr;
  }
  out["attention_bias"] = false;
  out["attention_dropout"] = 0.0;
  out["tie_word_embeddings"] = c.tie_word_embeddings;
  out["bos_token_id"] = c.bos_token_id;
  out["eos_token_id"] = c.eos_token_id;
  if (v3 || c.num_nextn_predict_layers > 0) out["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  if (c.quantization.present) {
    const FP8Quantization& q = c.quantization;
    out["quantization_config"] = {{"activation_scheme", "dynamic"},
                                  {"fmt", q.fmt},
                                  {"quant_method", "fp8"},
                                  {"weight_block_size", {q.block_rows, q.block_cols}}};
    if (!q.scale_fmt.empty()) out["quantization_config"]["scale_fmt"] = q.scale_fmt;
  }
  // Keys the published configs carry that inference ignores (training / parallelism settings).
  out["aux_loss_alpha"] = 0.001;
  out["ep_size"] = 1;
  out["initializer_range"] = 0.02;
  out["pretraining_tp"] = 1;
  out["seq_aux"] = true;
  out["use_cache"] = true;
  out["torch_dtype"] = "bfloat16";
  return out;
}

}  // namespace hetmoe
