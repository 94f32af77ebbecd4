#include "engine/model/footprint.h"

#include <algorithm>

namespace hetmoe {

uint64_t kv_cache_bytes(const ModelConfig& c, int64_t tokens) {
  return uint64_t(c.num_hidden_layers) * uint64_t(tokens) * uint64_t(c.kv_lora_rank + c.qk_rope_head_dim) *
         sizeof(float);
}

uint64_t forward_activation_bytes(const ModelConfig& c, int64_t n, int64_t context, int64_t logit_rows,
                                  int threads) {
  // Floats of each buffer model.cpp allocates (Model::forward, attention, attend_absorbed, moe,
  // ffn_forward), by phase: the residual stream lives throughout, attention and MoE
  // temporaries never coexist, logits come last.
  const uint64_t hidden = uint64_t(c.hidden_size), heads = uint64_t(c.num_attention_heads);
  const uint64_t k = uint64_t(std::max<int64_t>(c.num_experts_per_tok, 1)), tokens = uint64_t(n);
  const uint64_t residual = 3 * tokens * hidden;  // h, x, delta
  // Per worker: the absorbed attention's block (W_UK and W_UV in f32; per row q̃, context,
  // scores and rope scores); per linear call (one caller at a time): the FP8 plain linear's x in
  // its chunk order, up to min(tokens, 96) rows of the widest input.
  const uint64_t widest = uint64_t(std::max({c.hidden_size, c.intermediate_size, c.num_attention_heads * c.v_head_dim,
                                             c.moe_intermediate_size * std::max<int64_t>(c.n_shared_experts, 1)}));
  const uint64_t block_rows = std::min<uint64_t>(tokens, uint64_t(kAbsorbedAttentionRows));
  const uint64_t latent = uint64_t(c.kv_lora_rank);
  const uint64_t absorbed = uint64_t(c.qk_nope_head_dim + c.v_head_dim) * latent +
                            block_rows * (2 * uint64_t(context) + 2 * latent);
  const uint64_t per_thread =
      uint64_t(threads > 0 ? threads : 1) * (absorbed + uint64_t(c.intermediate_size)) +
      std::min<uint64_t>(tokens, 96) * widest;
  const uint64_t attention = tokens * heads * uint64_t(c.qk_head_dim()) + tokens * uint64_t(c.q_lora_rank) +
                             tokens * uint64_t(c.kv_lora_rank + c.qk_rope_head_dim) +
                             tokens * heads * uint64_t(c.v_head_dim) + tokens * hidden + per_thread;
  // FFN temporaries (gate and up): the routed experts' over all tokens × k rows (the expert
  // runner's per-task buffers), the shared expert's, or a dense layer's — never together.
  bool any_dense = false;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) any_dense |= !c.is_moe_layer(l);
  const uint64_t moe_inter = uint64_t(std::max<int64_t>(c.moe_intermediate_size, 1));
  const uint64_t ffn_rows = std::max(tokens * k * moe_inter, tokens * moe_inter * uint64_t(std::max<int64_t>(c.n_shared_experts, 1)));
  const uint64_t moe = 2 * tokens * k * hidden                  // gathered, slot_out
                       + tokens * k * 6                         // routes, slots, row_of_slot (in floats)
                       + tokens * uint64_t(c.n_routed_experts)  // router logits
                       + 2 * ffn_rows + tokens * hidden + per_thread;
  const uint64_t dense = any_dense ? 2 * tokens * uint64_t(c.intermediate_size) + tokens * hidden + per_thread : 0;
  const uint64_t logits = 2 * uint64_t(logit_rows) * uint64_t(c.vocab_size) + uint64_t(logit_rows) * hidden;
  const uint64_t floats = residual + std::max({attention, moe, dense}) + logits;
  return floats * sizeof(float) * 5 / 4 + (uint64_t(1) << 20);
}

}  // namespace hetmoe
