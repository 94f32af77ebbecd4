#include "engine/runtime/weights.h"

#include <string>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

class Binder {
 public:
  Binder(const Checkpoint& checkpoint, const ModelConfig& config) : checkpoint_(checkpoint), config_(config) {}

  cpu::WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const auto& entry = checkpoint_.at(name);
    const TensorInfo& info = *entry.info;
    const Error::Context context{.path = entry.file->path().string(), .tensor = name};
    check(info.shape == Shape{rows, cols},
          "shape " + info.shape.to_string() + " but the config needs " + Shape{rows, cols}.to_string(), context);
    cpu::WeightMatrix w{.data = entry.file->data(info), .rows = rows, .cols = cols};
    switch (info.dtype) {
      case DType::kF32:
        w.format = cpu::WeightFormat::kF32;
        return w;
      case DType::kBF16:
        w.format = cpu::WeightFormat::kBF16;
        return w;
      case DType::kF8E4M3: {
        const int64_t block = config_.quantization.block_rows;
        check(config_.quantization.block_rows == config_.quantization.block_cols,
              "only square FP8 weight blocks are supported", context);
        const std::string scale_name = name + "_scale_inv";
        const auto& scale = checkpoint_.at(scale_name);
        const Shape expected{(rows + block - 1) / block, (cols + block - 1) / block};
        check(scale.info->dtype == DType::kF32 && scale.info->shape == expected,
              "scale must be F32 " + expected.to_string() + ", found " +
                  std::string(dtype_name(scale.info->dtype)) + " " + scale.info->shape.to_string(),
              {.path = scale.file->path().string(), .tensor = scale_name});
        w.format = cpu::WeightFormat::kFP8Block;
        w.scale_inv = reinterpret_cast<const float*>(scale.file->data(*scale.info));
        w.block = block;
        return w;
      }
      default:
        throw Error("dtype " + std::string(dtype_name(info.dtype)) + " is not supported for a weight matrix",
                    context);
    }
  }

  std::vector<float> vector(const std::string& name, int64_t size) const {
    const auto& entry = checkpoint_.at(name);
    check(entry.info->shape == Shape{size},
          "shape " + entry.info->shape.to_string() + " but the config needs [" + std::to_string(size) + "]",
          {.path = entry.file->path().string(), .tensor = name});
    return checkpoint_.load_float(name);
  }

  std::vector<float> dense_f32(const std::string& name, int64_t rows, int64_t cols) const {
    matrix(name, rows, cols);  // checks shape and scales
    return checkpoint_.load_float(name);
  }

  FfnWeights ffn(const std::string& prefix, int64_t inter) const {
    const int64_t hidden = config_.hidden_size;
    return {matrix(prefix + "gate_proj.weight", inter, hidden), matrix(prefix + "up_proj.weight", inter, hidden),
            matrix(prefix + "down_proj.weight", hidden, inter)};
  }

 private:
  const Checkpoint& checkpoint_;
  const ModelConfig& config_;
};

AttentionWeights bind_attention(const Binder& bind, const ModelConfig& c, const std::string& prefix) {
  AttentionWeights a;
  const int64_t q_out = c.num_attention_heads * c.qk_head_dim();
  if (c.q_lora_rank > 0) {
    a.q_a = bind.matrix(prefix + "q_a_proj.weight", c.q_lora_rank, c.hidden_size);
    a.q_a_norm = bind.vector(prefix + "q_a_layernorm.weight", c.q_lora_rank);
    a.q_b = bind.matrix(prefix + "q_b_proj.weight", q_out, c.q_lora_rank);
  } else {
    a.q_b = bind.matrix(prefix + "q_proj.weight", q_out, c.hidden_size);
  }
  a.kv_a = bind.matrix(prefix + "kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size);
  a.kv_a_norm = bind.vector(prefix + "kv_a_layernorm.weight", c.kv_lora_rank);
  const int64_t kv_out = c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim);
  a.kv_b = bind.matrix(prefix + "kv_b_proj.weight", kv_out, c.kv_lora_rank);
  a.o = bind.matrix(prefix + "o_proj.weight", c.hidden_size, c.num_attention_heads * c.v_head_dim);
  return a;
}

MoeWeights bind_moe(const Binder& bind, const ModelConfig& c, const std::string& prefix) {
  MoeWeights moe;
  moe.router = bind.dense_f32(prefix + "gate.weight", c.n_routed_experts, c.hidden_size);
  if (c.topk_method == TopkMethod::kNoauxTc)
    moe.score_bias = bind.vector(prefix + "gate.e_score_correction_bias", c.n_routed_experts);
  if (c.n_shared_experts > 0)
    moe.shared = bind.ffn(prefix + "shared_experts.", c.moe_intermediate_size * c.n_shared_experts);
  moe.experts.reserve(size_t(c.n_routed_experts));
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    moe.experts.push_back(bind.ffn(prefix + "experts." + std::to_string(e) + ".", c.moe_intermediate_size));
  return moe;
}

}  // namespace

ModelWeights load_model_weights(const std::filesystem::path& directory) {
  ModelWeights weights;
  weights.config = load_model_config(directory);
  weights.checkpoint = Checkpoint::open(directory);
  const ModelConfig& c = weights.config;
  const Binder bind(*weights.checkpoint, c);
  weights.embed = bind.matrix("model.embed_tokens.weight", c.vocab_size, c.hidden_size);
  weights.final_norm = bind.vector("model.norm.weight", c.hidden_size);
  weights.lm_head = bind.matrix(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                                c.vocab_size, c.hidden_size);
  weights.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    LayerWeights& layer = weights.layers[size_t(l)];
    layer.input_norm = bind.vector(prefix + "input_layernorm.weight", c.hidden_size);
    layer.post_norm = bind.vector(prefix + "post_attention_layernorm.weight", c.hidden_size);
    layer.attention = bind_attention(bind, c, prefix + "self_attn.");
    layer.is_moe = c.is_moe_layer(l);
    if (layer.is_moe) {
      layer.moe = bind_moe(bind, c, prefix + "mlp.");
    } else {
      layer.dense = bind.ffn(prefix + "mlp.", c.intermediate_size);
    }
  }
  return weights;
}

}  // namespace hetmoe
