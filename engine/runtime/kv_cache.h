// The compressed MLA KV cache of one sequence (MODEL_SPEC §2.5): per layer and position the
// RMS-normalised latent ĉ (kv_lora_rank values) and the rotated rope key k_pe (rope dim).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace hetmoe {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t max_tokens);

  int64_t size() const { return size_; }  // positions filled
  int64_t capacity() const { return max_tokens_; }
  void set_size(int64_t size) { size_ = size; }
  void clear() { size_ = 0; }

  float* latent(int64_t layer, int64_t position) { return latent_.data() + offset(layer, position) * latent_dim_; }
  const float* latent(int64_t layer, int64_t position) const {
    return latent_.data() + offset(layer, position) * latent_dim_;
  }
  float* rope_key(int64_t layer, int64_t position) { return rope_.data() + offset(layer, position) * rope_dim_; }
  const float* rope_key(int64_t layer, int64_t position) const {
    return rope_.data() + offset(layer, position) * rope_dim_;
  }
  uint64_t bytes() const { return (latent_.size() + rope_.size()) * sizeof(float); }

 private:
  int64_t offset(int64_t layer, int64_t position) const { return layer * max_tokens_ + position; }
  int64_t max_tokens_;
  int64_t latent_dim_;
  int64_t rope_dim_;
  int64_t size_ = 0;
  std::vector<float> latent_;  // f32 [layers, max_tokens, kv_lora_rank]
  std::vector<float> rope_;    // f32 [layers, max_tokens, rope_dim]
};

}  // namespace hetmoe
