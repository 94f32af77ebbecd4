// Random-weight checkpoints in the exact Hugging Face layout of a DeepSeek model
// (`hetmoe make-model`): config.json, generation_config.json, model.safetensors or shards
// model-0000K-of-0000N.safetensors + model.safetensors.index.json.
//
// What the values are:
// * Every tensor's values come from its own xoshiro256** stream seeded by (seed, tensor name),
//   so the output is deterministic and does not depend on sharding or on other tensors.
// * Linear weights are ~N(0, 1/in_features) (activations keep their scale through a layer),
//   embeddings ~N(0, 1), RMSNorm weights ~N(1, 0.02²). Normal draws come from a 65,536-entry
//   inverse-CDF table indexed by 16 random bits (a per-element std::normal_distribution would
//   be the bottleneck).
// * FP8 weights are block-quantised as DeepSeek ships them: the codes are drawn directly as
//   RNE(112·z) (z from the same table, saturated at ±448) and each 128×128 block gets one
//   planted ±448 code, so the block's amax is exactly 448·scale, i.e. scale = amax/448 and the
//   codes are exactly the RNE quantisation of the dequantised weights. Block scales are
//   (sigma/112)·U[0.5, 1.5), so they differ from block to block as in real checkpoints.
// * e_score_correction_bias (noaux_tc) is 0 unless a Zipf exponent α > 0 is asked for; then
//   each MoE layer draws a random permutation rank(e) ∈ 1..E of its experts and sets
//       bias_e = α · τ · (mean_r ln r − ln rank(e)),   τ = 0.08,
//   so exp(bias/τ) ∝ rank^−α: a Zipf law in the selection scores. The router scores σ(w_e·x)
//   of unit-RMS inputs spread by ~0.2, so the bias dominates for hot experts. Measured with the
//   reference noaux_tc router on random tokens (rank-frequency exponent fitted over the hotter
//   half of the experts; share of selections that go to the hottest quarter of the experts):
//       α = 0.5: exponent 0.45 / 0.60, hottest quarter 49% / 59%  (64 experts top-4 / 256 top-8)
//       α = 1.0: exponent 0.74 / 1.06, hottest quarter 68% / 83%
//       α = 1.5: exponent 1.05 / 1.79, hottest quarter 81% / 96%
//   (uniform routing: 25%). Top-k saturation and Gaussian score tails bend the curve, so α
//   sets the strength of the skew rather than an exact routing exponent.
//
// The writer streams: it generates one row-block (128 rows) at a time into a few reusable
// chunks that a writer thread hands to SafetensorsWriter while the next chunk is generated, so
// memory stays at a few tens of MB for any model size. Everything is written into a temporary
// sibling directory, fsync'ed and renamed onto the output directory at the end.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/model/config.h"

namespace hetmoe {

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  double zipf_alpha = 0.0;       // > 0 plants hot experts through e_score_correction_bias
  uint64_t max_shard_bytes = 0;  // 0: one model.safetensors; else shards of at most this many
                                 // tensor bytes (a single larger tensor gets its own shard)
  bool force = false;            // replace a non-empty output directory
};

struct RandomCheckpointSummary {
  uint64_t tensor_count = 0;
  uint64_t data_bytes = 0;  // tensor bytes (metadata.total_size)
  uint64_t file_bytes = 0;  // safetensors files incl. headers
  int64_t shard_count = 0;
  double seconds = 0.0;  // generation + write + fsync
};

// Writes a random checkpoint of `config` (main model only, no MTP layers: the written
// config.json gets num_nextn_predict_layers = 0 so it matches its tensors).
// Throws hetmoe::Error for an invalid config, a non-empty `directory` without `force`, a Zipf
// skew on a config without e_score_correction_bias, or any I/O failure (leaving nothing behind).
RandomCheckpointSummary write_random_checkpoint(const ModelConfig& config,
                                                const std::filesystem::path& directory,
                                                const RandomCheckpointOptions& options);

// --- presets ------------------------------------------------------------------------------------

struct ModelOverrides {
  std::optional<int64_t> layers;   // num_hidden_layers
  std::optional<int64_t> vocab;    // vocab_size
  std::optional<int64_t> experts;  // n_routed_experts
};

// "tiny": test-sized V3 (hidden 256, 3 layers: 1 dense + 2 MoE, 16 experts of 128, top-4,
//         4 groups / 2 kept, FP8 with partial edge blocks in q_a/q_b/kv_a and the dense FFN).
// "ds3-layers": DeepSeek-V3's real per-layer dimensions, 4 layers (first dense), vocab 2048.
// "v2-lite": DeepSeek-V2-Lite's dimensions (BF16, softmax greedy), 4 layers, vocab 2048.
// --layers N on a preset keeps one dense layer first when N > 1 and makes it MoE when N = 1.
ModelConfig preset_model_config(std::string_view preset, const ModelOverrides& overrides = {});
std::span<const std::string_view> preset_names();
// Applies --layers/--vocab/--experts to any config (num_nextn_predict_layers is dropped when
// the layer count changes); throws hetmoe::Error when the result is not a valid model.
void apply_overrides(ModelConfig& config, const ModelOverrides& overrides);

// "5GB" (10^9), "500MiB" (2^20), "1048576"; Hugging Face's max_shard_size spelling.
// nullopt if malformed or zero.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// The planted router bias of one MoE layer (see the top of this file); exposed for tests.
std::vector<float> zipf_router_bias(std::span<const int64_t> rank_of_expert, double alpha);

}  // namespace hetmoe
