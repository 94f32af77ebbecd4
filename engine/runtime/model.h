// The DeepSeek-V2/V3 forward pass on the CPU (MODEL_SPEC §2), over a batch of sequences.
//
// Each call appends the given tokens of every sequence to that sequence's KV cache and
// returns logits. Linear layers run over all tokens of the batch at once; attention runs per
// sequence; MoE groups tokens by expert and combines expert outputs in expert-index order,
// so a sequence gets the same logits whether it runs alone or in a batch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/runtime/expert_source.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/rope.h"
#include "engine/runtime/weights.h"

namespace hetmoe {

enum class AttentionForm {
  kNaive,     // expand k_nope and v per head from the cached latent (MODEL_SPEC §2.4)
  kAbsorbed,  // fold W_UK into q and W_UV after attention (§2.5), as the reference decodes
};

struct SequenceStep {
  KvCache* cache = nullptr;
  std::span<const int32_t> tokens;  // appended at positions cache->size() ...
  bool all_logits = false;          // logits for every token, or only for the last
  std::vector<float>* logits = nullptr;  // out: f32 [n, vocab] (n = tokens or 1)
};

// Per-layer routing observed during forward passes (for statistics and tests).
struct RoutingObserver {
  virtual ~RoutingObserver() = default;
  virtual void on_route(int64_t layer, std::span<const int32_t> experts) = 0;
};

class Model {
 public:
  explicit Model(ModelWeights weights);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return weights_.config; }
  const ModelWeights& weights() const { return weights_; }
  void set_attention_form(AttentionForm form) { attention_form_ = form; }
  void set_routing_observer(RoutingObserver* observer) { observer_ = observer; }
  // Routed experts come from `source` (not owned) instead of the checkpoint mapping; nullptr
  // restores the default.
  void set_expert_source(ExpertSource* source) { expert_source_ = source ? source : &checkpoint_experts_; }

  void forward(std::span<SequenceStep> steps) const;

 private:
  struct Rows;  // the batch flattened to rows (tokens) with their sequence and position
  void attention(const LayerWeights& layer, int64_t layer_index, const Rows& rows, const float* x,
                 float* out) const;
  void attend_naive(const AttentionWeights& a, int64_t layer_index, const Rows& rows, const float* q,
                    float* context) const;
  void attend_absorbed(const AttentionWeights& a, int64_t layer_index, const Rows& rows, const float* q,
                       float* context) const;
  // Routed + shared experts of x (normed) into out. `residual` (the stream x was normed from)
  // serves only the next layer's prediction when the source's drive goes idle before the
  // layer is done; returns true when that prediction was made.
  bool moe(const MoeWeights& moe, int64_t layer_index, const float* x, const float* residual, int64_t tokens,
           float* out) const;

  ModelWeights weights_;
  Rope rope_;
  AttentionForm attention_form_ = AttentionForm::kAbsorbed;
  RoutingObserver* observer_ = nullptr;
  CheckpointExperts checkpoint_experts_{weights_};
  ExpertSource* expert_source_ = &checkpoint_experts_;
};

}  // namespace hetmoe
