// Per-layer routed-expert activation statistics: how many of the recorded tokens each expert
// of each MoE layer was chosen for. `hetmoe profile` records them while running text through
// a model (RoutingObserver) or writes synthetic ones (uniform, Zipf); the planner turns them
// into per-token activation probabilities p[l][e] (sum over e = experts per token).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/model/config.h"

namespace hetmoe::plan {

struct ExpertStats {
  std::string model;               // model folder or config the stats belong to
  std::string source;              // "measured: FILE", "uniform", "zipf:1.2"
  int64_t n_routed_experts = 0;
  int64_t experts_per_token = 0;   // top-k the counts were recorded with
  int64_t tokens = 0;              // tokens recorded (per layer)
  std::vector<int64_t> layers;     // MoE layer index of each row of `counts`
  std::vector<std::vector<double>> counts;  // [moe layers][n_routed_experts]
};

// Every MoE layer of `config`, each expert chosen with the same probability.
ExpertStats uniform_expert_stats(const ModelConfig& config);
// Zipf skew per layer: the expert of rank r (1-based) has weight r^-alpha; which expert holds
// which rank is a seeded permutation per layer (hot experts differ between layers, as measured
// on DeepSeek-V3). Weights are scaled to k per token and capped at 1 (an expert is chosen at
// most once per token), the excess spread over the rest.
ExpertStats zipf_expert_stats(const ModelConfig& config, double alpha, uint64_t seed = 1);
// "uniform" or "zipf:ALPHA"; throws hetmoe::Error for anything else.
ExpertStats synthetic_expert_stats(const ModelConfig& config, const std::string& spec);

// Per-token activation probability of every expert of every MoE layer of `config`, for top-k
// `experts_per_token` (stats recorded with another k are rescaled by k'/k and capped at 1).
// Layers the stats lack (or no stats at all) are uniform. Throws hetmoe::Error when the stats
// were recorded for a different expert count.
std::vector<std::vector<double>> activation_probabilities(const ModelConfig& config, const ExpertStats* stats,
                                                          int64_t experts_per_token);

ExpertStats parse_expert_stats(const nlohmann::json& json, const std::string& origin = "stats");
ExpertStats load_expert_stats(const std::filesystem::path& path);
nlohmann::json expert_stats_to_json(const ExpertStats& stats);
void save_expert_stats(const ExpertStats& stats, const std::filesystem::path& path);

}  // namespace hetmoe::plan
