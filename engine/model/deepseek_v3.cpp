#include "engine/model/deepseek_v3.h"

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

std::string dims_error(const std::string& what) {
  return "config.json cannot describe a DeepSeek model: " + what;
}

void check_config(const ModelConfig& c) {
  const Error::Context context{.hint = "check config.json against MODEL_SPEC.md §1"};
  auto positive = [&](int64_t value, const char* key) {
    check(value > 0, dims_error(fmt::format("{} must be > 0 (is {})", key, value)), context);
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.kv_lora_rank, "kv_lora_rank");
  positive(c.qk_nope_head_dim, "qk_nope_head_dim");
  positive(c.qk_rope_head_dim, "qk_rope_head_dim");
  positive(c.v_head_dim, "v_head_dim");
  check(c.q_lora_rank >= 0, dims_error("q_lora_rank must be >= 0 or null"), context);
  check(c.n_routed_experts >= 0 && c.n_shared_experts >= 0, dims_error("expert counts must be >= 0"),
        context);
  check(c.num_nextn_predict_layers >= 0, dims_error("num_nextn_predict_layers must be >= 0"), context);
  bool any_dense = false, any_moe = false;
  for (int64_t layer = 0; layer < c.num_hidden_layers + c.num_nextn_predict_layers; ++layer)
    (c.is_moe_layer(layer) ? any_moe : any_dense) = true;
  if (any_dense) positive(c.intermediate_size, "intermediate_size (a dense layer exists)");
  if (any_moe) {
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    check(c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts,
          dims_error(fmt::format("num_experts_per_tok {} must be in 1..n_routed_experts ({})",
                                 c.num_experts_per_tok, c.n_routed_experts)),
          context);
    check(
        c.n_group >= 1 && c.n_routed_experts % c.n_group == 0,
        dims_error(fmt::format("n_group {} must divide n_routed_experts {}", c.n_group, c.n_routed_experts)),
        context);
    check(c.topk_group >= 1 && c.topk_group <= c.n_group,
          dims_error(fmt::format("topk_group {} must be in 1..n_group ({})", c.topk_group, c.n_group)),
          context);
    check(c.num_experts_per_tok <= c.topk_group * (c.n_routed_experts / c.n_group),
          dims_error(fmt::format("num_experts_per_tok {} exceeds the {} experts in the topk_group "
                                 "{} groups kept of {} experts each",
                                 c.num_experts_per_tok, c.topk_group * (c.n_routed_experts / c.n_group),
                                 c.topk_group, c.n_routed_experts / c.n_group)),
          context);
  }
  if (c.quantization.present) {
    check(c.quantization.block_rows > 0 && c.quantization.block_cols > 0,
          dims_error("quantization_config.weight_block_size must be positive"), context);
  }
}

// Appends tensors in checkpoint order; every 2-D projection inside a layer goes through
// linear(), which makes it F8_E4M3 + F32 scale when the config is quantised.
class InventoryWriter {
 public:
  InventoryWriter(const ModelConfig& config, std::vector<TensorSpec>& out) : c_(config), out_(out) {}

  void add(std::string name, DType dtype, Shape shape, TensorGroup group, TensorRole role, int64_t layer = -1,
           int64_t expert = -1) {
    if (layer >= c_.num_hidden_layers) group = TensorGroup::kMtp;
    out_.push_back(TensorSpec{std::move(name), dtype, shape, group, role, layer, expert});
  }

  // A projection [out, in] inside a layer: FP8 with a block scale when quantised.
  void linear(const std::string& name, int64_t rows, int64_t cols, TensorGroup group, int64_t layer,
              int64_t expert = -1) {
    if (!c_.quantization.present) {
      add(name, DType::kBF16, {rows, cols}, group, TensorRole::kLinear, layer, expert);
      return;
    }
    add(name, DType::kF8E4M3, {rows, cols}, group, TensorRole::kLinear, layer, expert);
    add(name + "_scale_inv", DType::kF32,
        {ceil_div(rows, c_.quantization.block_rows), ceil_div(cols, c_.quantization.block_cols)}, group,
        TensorRole::kScale, layer, expert);
  }

  void norm(const std::string& name, int64_t size, int64_t layer) {
    add(name, DType::kBF16, {size}, TensorGroup::kNorms, TensorRole::kNorm, layer);
  }

  void swiglu(const std::string& prefix, int64_t inter, TensorGroup group, int64_t layer,
              int64_t expert = -1) {
    const int64_t hidden = c_.hidden_size;
    linear(prefix + "gate_proj.weight", inter, hidden, group, layer, expert);
    linear(prefix + "up_proj.weight", inter, hidden, group, layer, expert);
    linear(prefix + "down_proj.weight", hidden, inter, group, layer, expert);
  }

  void layer(int64_t l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const int64_t hidden = c_.hidden_size, heads = c_.num_attention_heads;
    const auto attention = TensorGroup::kAttention;
    norm(p + "input_layernorm.weight", hidden, l);
    if (c_.q_lora_rank > 0) {
      linear(p + "self_attn.q_a_proj.weight", c_.q_lora_rank, hidden, attention, l);
      norm(p + "self_attn.q_a_layernorm.weight", c_.q_lora_rank, l);
      linear(p + "self_attn.q_b_proj.weight", heads * c_.qk_head_dim(), c_.q_lora_rank, attention, l);
    } else {
      linear(p + "self_attn.q_proj.weight", heads * c_.qk_head_dim(), hidden, attention, l);
    }
    linear(p + "self_attn.kv_a_proj_with_mqa.weight", c_.kv_lora_rank + c_.qk_rope_head_dim, hidden,
           attention, l);
    norm(p + "self_attn.kv_a_layernorm.weight", c_.kv_lora_rank, l);
    linear(p + "self_attn.kv_b_proj.weight", heads * (c_.qk_nope_head_dim + c_.v_head_dim), c_.kv_lora_rank,
           attention, l);
    linear(p + "self_attn.o_proj.weight", hidden, heads * c_.v_head_dim, attention, l);
    norm(p + "post_attention_layernorm.weight", hidden, l);

    if (!c_.is_moe_layer(l)) {
      swiglu(p + "mlp.", c_.intermediate_size, TensorGroup::kDenseFfn, l);
      return;
    }
    const int64_t experts = c_.n_routed_experts;
    // The router stays BF16 (and its bias F32) in the FP8 checkpoint (MODEL_SPEC §4.2).
    add(p + "mlp.gate.weight", DType::kBF16, {experts, hidden}, TensorGroup::kRouter, TensorRole::kLinear, l);
    if (c_.topk_method == TopkMethod::kNoauxTc)
      add(p + "mlp.gate.e_score_correction_bias", DType::kF32, {experts}, TensorGroup::kRouter,
          TensorRole::kRouterBias, l);
    if (c_.n_shared_experts > 0)
      swiglu(p + "mlp.shared_experts.", c_.moe_intermediate_size * c_.n_shared_experts,
             TensorGroup::kSharedExperts, l);
    for (int64_t e = 0; e < experts; ++e)
      swiglu(fmt::format("{}mlp.experts.{}.", p, e), c_.moe_intermediate_size, TensorGroup::kRoutedExperts, l,
             e);
  }

  // MODEL_SPEC §2.10: a full decoder layer plus these, all BF16.
  void mtp_extras(int64_t l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const int64_t hidden = c_.hidden_size;
    norm(p + "enorm.weight", hidden, l);
    norm(p + "hnorm.weight", hidden, l);
    add(p + "eh_proj.weight", DType::kBF16, {hidden, 2 * hidden}, TensorGroup::kMtp, TensorRole::kLinear, l);
    add(p + "embed_tokens.weight", DType::kBF16, {c_.vocab_size, hidden}, TensorGroup::kMtp,
        TensorRole::kEmbedding, l);
    norm(p + "shared_head.norm.weight", hidden, l);
    add(p + "shared_head.head.weight", DType::kBF16, {c_.vocab_size, hidden}, TensorGroup::kMtp,
        TensorRole::kLinear, l);
  }

 private:
  const ModelConfig& c_;
  std::vector<TensorSpec>& out_;
};

// Layer index of "model.layers.N.…", or -1.
int64_t layer_of(std::string_view name) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!name.starts_with(kPrefix)) return -1;
  name.remove_prefix(kPrefix.size());
  int64_t layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc() || end == name.data() || end == name.data() + name.size() || *end != '.') return -1;
  return layer;
}

std::string describe_tensor(DType dtype, const Shape& shape) {
  return fmt::format("{} {}", shape.to_string(), dtype_name(dtype));
}

}  // namespace

std::string_view tensor_group_name(TensorGroup group) {
  switch (group) {
    case TensorGroup::kEmbedding:
      return "embedding";
    case TensorGroup::kAttention:
      return "attention";
    case TensorGroup::kDenseFfn:
      return "dense_ffn";
    case TensorGroup::kSharedExperts:
      return "shared_experts";
    case TensorGroup::kRoutedExperts:
      return "routed_experts";
    case TensorGroup::kRouter:
      return "router";
    case TensorGroup::kNorms:
      return "norms";
    case TensorGroup::kLmHead:
      return "lm_head";
    case TensorGroup::kMtp:
      return "mtp";
  }
  return "?";
}

uint64_t TensorSpec::nbytes() const {
  return dtype_bytes(dtype, numel()).value_or(0);
}

std::vector<TensorSpec> model_tensors(const ModelConfig& config, const InventoryOptions& options) {
  check_config(config);
  std::vector<TensorSpec> out;
  InventoryWriter writer(config, out);
  const int64_t hidden = config.hidden_size;
  writer.add("model.embed_tokens.weight", DType::kBF16, {config.vocab_size, hidden}, TensorGroup::kEmbedding,
             TensorRole::kEmbedding);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    if (options.only_layers.empty() || std::ranges::find(options.only_layers, l) != options.only_layers.end())
      writer.layer(l);
  writer.norm("model.norm.weight", hidden, -1);
  writer.add("lm_head.weight", DType::kBF16, {config.vocab_size, hidden}, TensorGroup::kLmHead,
             TensorRole::kLinear);
  if (options.include_mtp) {
    for (int64_t l = config.num_hidden_layers; l < config.num_hidden_layers + config.num_nextn_predict_layers;
         ++l) {
      writer.layer(l);
      writer.mtp_extras(l);
    }
  }
  return out;
}

bool is_mtp_tensor_name(std::string_view name, const ModelConfig& config) {
  return layer_of(name) >= config.num_hidden_layers;
}

ParameterCounts count_parameters(const ModelConfig& config) {
  ParameterCounts counts;
  for (const TensorSpec& spec : model_tensors(config, {.include_mtp = true})) {
    if (!spec.is_parameter()) continue;
    const uint64_t n = spec.numel();
    if (spec.group == TensorGroup::kMtp) {
      counts.mtp += n;
      continue;
    }
    counts.total += n;
    counts.by_group[size_t(spec.group)] += n;
    if (spec.group == TensorGroup::kRoutedExperts)
      counts.routed_experts += n;
    else if (spec.group != TensorGroup::kEmbedding)
      counts.active += n;
  }
  counts.embedding = counts.by_group[size_t(TensorGroup::kEmbedding)];
  // Every MoE layer runs num_experts_per_tok routed experts for each token.
  counts.routed_expert_single = uint64_t(3 * config.moe_intermediate_size * config.hidden_size);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    if (config.is_moe_layer(l))
      counts.active += uint64_t(config.num_experts_per_tok) * counts.routed_expert_single;
  counts.active_with_embedding = counts.active + counts.embedding;
  return counts;
}

ByteCounts count_bytes(const ModelConfig& config) {
  ByteCounts bytes;
  for (const TensorSpec& spec : model_tensors(config, {.include_mtp = true})) {
    const uint64_t n = spec.nbytes();
    bytes.by_group[size_t(spec.group)] += n;
    if (spec.group != TensorGroup::kMtp) bytes.total += n;
  }
  int64_t first_moe = -1;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    if (config.is_moe_layer(l)) {
      ++bytes.moe_layers;
      if (first_moe < 0) first_moe = l;
    } else {
      ++bytes.dense_layers;
    }
  }
  if (first_moe >= 0) {
    // Every MoE layer holds the same expert tensors; measure one expert of the first layer.
    ModelConfig one_layer = config;
    one_layer.num_hidden_layers = first_moe + 1;
    one_layer.num_nextn_predict_layers = 0;
    for (const TensorSpec& spec : model_tensors(one_layer))
      if (spec.group == TensorGroup::kRoutedExperts && spec.expert == 0)
        bytes.routed_expert_single += spec.nbytes();
    bytes.routed_experts_per_moe_layer = bytes.routed_expert_single * uint64_t(config.n_routed_experts);
  }
  return bytes;
}

uint64_t kv_cache_bytes_per_token(const ModelConfig& config, DType dtype) {
  const uint64_t values =
      uint64_t(config.kv_lora_rank + config.qk_rope_head_dim) * uint64_t(config.num_hidden_layers);
  return dtype_bytes(dtype, values).value_or(0);
}

std::string TensorValidation::describe(size_t cap_per_kind) const {
  std::string text = fmt::format(
      "checkpoint tensors do not match the architecture: {} missing, {} unexpected, {} with the "
      "wrong shape or dtype",
      missing.size(), extra.size(), mismatched.size());
  auto list = [&](const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return;
    text += fmt::format("\n  {} ({}):", title, names.size());
    for (size_t i = 0; i < names.size() && i < cap_per_kind; ++i) text += "\n    " + names[i];
    if (names.size() > cap_per_kind)
      text += fmt::format("\n    ... and {} more", names.size() - cap_per_kind);
  };
  list("missing", missing);
  list("unexpected", extra);
  list("wrong shape or dtype", mismatched);
  return text;
}

TensorValidation validate_tensors(const ModelConfig& config, std::span<const FoundTensor> found) {
  const std::vector<TensorSpec> inventory = model_tensors(config, {.include_mtp = true});
  std::unordered_map<std::string_view, const TensorSpec*> expected;
  expected.reserve(inventory.size());
  for (const TensorSpec& spec : inventory) expected.emplace(spec.name, &spec);

  TensorValidation result;
  std::unordered_map<std::string_view, bool> seen;
  seen.reserve(found.size());
  for (const FoundTensor& tensor : found) {
    seen.emplace(tensor.name, true);
    const bool mtp = is_mtp_tensor_name(tensor.name, config);
    const auto it = expected.find(tensor.name);
    if (it == expected.end()) {
      // MTP layers may hold more than we list (other num_nextn_predict_layers); skip them.
      (mtp ? result.skipped : result.extra).push_back(tensor.name);
      continue;
    }
    const TensorSpec& spec = *it->second;
    if (spec.dtype != tensor.dtype || !(spec.shape == tensor.shape)) {
      result.mismatched.push_back(fmt::format("{}: {}, expected {}", tensor.name,
                                              describe_tensor(tensor.dtype, tensor.shape),
                                              describe_tensor(spec.dtype, spec.shape)));
      continue;
    }
    if (mtp)
      result.skipped.push_back(tensor.name);
    else
      ++result.checked;
  }
  for (const TensorSpec& spec : inventory)
    if (spec.group != TensorGroup::kMtp && !seen.contains(spec.name)) result.missing.push_back(spec.name);
  return result;
}

TensorValidation validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint) {
  std::vector<FoundTensor> found;
  found.reserve(checkpoint.tensors().size());
  for (const auto& [name, entry] : checkpoint.tensors())
    found.push_back(FoundTensor{name, entry.info->dtype, entry.info->shape});
  TensorValidation result = validate_tensors(config, found);
  check(result.ok(), result.describe(),
        Error::Context{.path = checkpoint.directory().string(),
                       .hint = "the checkpoint does not match its config.json; re-download or "
                               "re-convert it, or fix config.json"});
  return result;
}

}  // namespace hetmoe
