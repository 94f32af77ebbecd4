#include "engine/runtime/kv_cache.h"

#include "engine/core/error.h"

namespace hetmoe {

KvCache::KvCache(const ModelConfig& config, int64_t max_tokens)
    : max_tokens_(max_tokens), latent_dim_(config.kv_lora_rank), rope_dim_(config.qk_rope_head_dim) {
  check(max_tokens > 0, "KV cache needs room for at least one token");
  latent_.resize(size_t(config.num_hidden_layers * max_tokens * latent_dim_));
  rope_.resize(size_t(config.num_hidden_layers * max_tokens * rope_dim_));
}

}  // namespace hetmoe
