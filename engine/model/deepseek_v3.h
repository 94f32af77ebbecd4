// DeepSeek-V3 / R1 and DeepSeek-V2 (incl. V2-Lite): the architecture file.
//
// From a ModelConfig alone (no weights) this file names every tensor a published Hugging Face
// checkpoint holds (MODEL_SPEC §4.2 / §4.3), with the dtype the checkpoint stores it in, its
// shape, the group it belongs to and its layer / expert index; it counts parameters (total and
// active per token), bytes per group and the KV cache per token; and it validates a
// checkpoint's tensor list against that inventory.
//
// Layer typing is ModelConfig::is_moe_layer (MODEL_SPEC §1.3). Layers >= num_hidden_layers are
// the MTP module (§2.10): never part of the main model, listed only when asked for.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/tensor.h"
#include "engine/model/config.h"

namespace hetmoe {

class Checkpoint;

enum class TensorGroup : uint8_t {
  kEmbedding,      // model.embed_tokens
  kAttention,      // MLA projections (and their scales)
  kDenseFfn,       // mlp.{gate,up,down}_proj of layers < first_k_dense_replace
  kSharedExperts,  // mlp.shared_experts.*
  kRoutedExperts,  // mlp.experts.E.*
  kRouter,         // mlp.gate.weight, mlp.gate.e_score_correction_bias
  kNorms,          // every RMSNorm weight
  kLmHead,         // lm_head
  kMtp,            // anything in a layer >= num_hidden_layers (multi-token prediction, skipped)
};
inline constexpr int kTensorGroupCount = 9;
std::string_view tensor_group_name(TensorGroup group);  // "routed_experts", ...

// What a tensor is, which decides how it counts (scales are not parameters) and how the model
// builder fills it.
enum class TensorRole : uint8_t {
  kLinear,      // a [out, in] projection (BF16 or F8_E4M3)
  kScale,       // F32 weight_scale_inv [ceil(out/block), ceil(in/block)] of the linear before it
  kNorm,        // RMSNorm weight [n]
  kEmbedding,   // [vocab, hidden] lookup table
  kRouterBias,  // F32 e_score_correction_bias [n_routed_experts] (noaux_tc only)
};

struct TensorSpec {
  std::string name;  // Hugging Face name
  DType dtype = DType::kBF16;
  Shape shape;
  TensorGroup group = TensorGroup::kAttention;
  TensorRole role = TensorRole::kLinear;
  int64_t layer = -1;   // -1: global tensor
  int64_t expert = -1;  // routed expert index, -1 otherwise

  uint64_t nbytes() const;
  uint64_t numel() const { return uint64_t(shape.numel()); }
  bool is_parameter() const { return role != TensorRole::kScale; }
};

struct InventoryOptions {
  bool include_mtp = false;  // also list layers num_hidden_layers .. + num_nextn_predict_layers
  // Only these decoder layers (the tensors outside layers always): a caller that needs one layer
  // of each kind skips building ~90k names for V3's experts. Empty: every layer.
  std::vector<int64_t> only_layers;
};

// Every tensor of the checkpoint in a fixed order: embed_tokens, then layer by layer (norms,
// attention, FFN; a weight's scale right after it; routed experts by index), then model.norm
// and lm_head, then (if asked) the MTP layers. Throws hetmoe::Error for a config the
// architecture cannot have (zero sizes, experts-per-token > experts, ...).
std::vector<TensorSpec> model_tensors(const ModelConfig& config, const InventoryOptions& options = {});

// True for names in a layer >= num_hidden_layers ("model.layers.61.*" for V3): MTP tensors,
// which a plain engine skips (MODEL_SPEC §2.10).
bool is_mtp_tensor_name(std::string_view name, const ModelConfig& config);

struct ParameterCounts {
  // Main model (layers < num_hidden_layers); scales are not parameters.
  uint64_t total = 0;
  // Per token: everything except routed experts and the embedding table, plus
  // num_experts_per_tok routed experts in each MoE layer. lm_head counts, the embedding table
  // (a row lookup, no compute) does not: that is the convention that reproduces both published
  // figures, V3 37B (36.6B here; 37.6B with embeddings) and V2-Lite 2.4B (2.45B; 2.66B with).
  uint64_t active = 0;
  uint64_t active_with_embedding = 0;  // active + embedding
  uint64_t embedding = 0;              // model.embed_tokens (included in total, not in active)
  uint64_t routed_experts = 0;         // all routed experts (included in total)
  uint64_t routed_expert_single = 0;   // one routed expert (gate + up + down)
  uint64_t mtp = 0;                    // MTP layers, NOT included in total
  std::array<uint64_t, kTensorGroupCount> by_group{};  // main-model parameters per group
};
ParameterCounts count_parameters(const ModelConfig& config);

struct ByteCounts {
  // Bytes in the checkpoint's own formats (F8_E4M3 weights + F32 scales, BF16, F32), main model.
  std::array<uint64_t, kTensorGroupCount> by_group{};  // kMtp slot holds the MTP layers' bytes
  uint64_t total = 0;                                  // main model (excludes kMtp)
  uint64_t routed_experts_per_moe_layer = 0;           // all routed experts of one MoE layer, with scales
  uint64_t routed_expert_single = 0;                   // one routed expert with its scales
  int64_t moe_layers = 0;
  int64_t dense_layers = 0;
};
ByteCounts count_bytes(const ModelConfig& config);

// MLA caches the normalised latent (kv_lora_rank) and the rotated k_pe (qk_rope_head_dim) per
// layer per token (MODEL_SPEC §2.5): V3 BF16 = 576 · 61 · 2 = 70,272 bytes.
uint64_t kv_cache_bytes_per_token(const ModelConfig& config, DType dtype = DType::kBF16);

// --- validation -------------------------------------------------------------------------------

struct FoundTensor {
  std::string name;
  DType dtype = DType::kBF16;
  Shape shape;
};

struct TensorValidation {
  std::vector<std::string> missing;     // in the inventory, not in the checkpoint
  std::vector<std::string> extra;       // in the checkpoint, not in the inventory (MTP excluded)
  std::vector<std::string> mismatched;  // "name: shape [a, b] F8_E4M3, expected [c, d] BF16"
  std::vector<std::string> skipped;     // MTP tensors that match the MTP inventory
  uint64_t checked = 0;                 // main-model tensors found with the right shape and dtype
  bool ok() const { return missing.empty() && extra.empty() && mismatched.empty(); }
  // One message listing every problem (each kind capped at `cap_per_kind` names plus a count).
  std::string describe(size_t cap_per_kind = 20) const;
};

// Compares a checkpoint's tensor list with the inventory. MTP tensors that match the MTP
// inventory are reported as skipped; a wrong MTP tensor is still a mismatch.
TensorValidation validate_tensors(const ModelConfig& config, std::span<const FoundTensor> found);
// The same for an opened checkpoint; throws ONE hetmoe::Error listing every problem.
TensorValidation validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint);

}  // namespace hetmoe
