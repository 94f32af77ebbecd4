#include "engine/plan/expert_stats.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace hetmoe::plan {
namespace {

using nlohmann::json;

constexpr std::string_view kSchema = "hetmoe-expert-stats/1";

std::vector<int64_t> moe_layers(const ModelConfig& config) {
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    if (config.is_moe_layer(l)) layers.push_back(l);
  return layers;
}

void check_moe(const ModelConfig& config) {
  check(config.n_routed_experts > 0 && config.num_experts_per_tok > 0 &&
            config.num_experts_per_tok <= config.n_routed_experts,
        "the model has no routed experts to take statistics of",
        {.hint = "expert statistics need n_routed_experts > 0 and 0 < num_experts_per_tok <= n_routed_experts"});
}

// Scales `weights` to sum to k with every entry <= 1 (water-filling: capped entries stay at 1,
// the remainder is spread over the others in proportion).
std::vector<double> scale_capped(std::vector<double> weights, double k) {
  const size_t n = weights.size();
  std::vector<bool> capped(n, false);
  for (int round = 0; round < 64; ++round) {
    double free_sum = 0, capped_count = 0;
    for (size_t i = 0; i < n; ++i) capped[i] ? capped_count += 1 : free_sum += weights[i];
    const double factor = free_sum > 0 ? (k - capped_count) / free_sum : 0;
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      if (capped[i]) continue;
      if (weights[i] * factor > 1.0) {
        capped[i] = true;
        changed = true;
      }
    }
    if (!changed) {
      for (size_t i = 0; i < n; ++i) weights[i] = capped[i] ? 1.0 : weights[i] * factor;
      return weights;
    }
  }
  for (size_t i = 0; i < n; ++i) weights[i] = capped[i] ? 1.0 : weights[i];
  return weights;
}

}  // namespace

ExpertStats uniform_expert_stats(const ModelConfig& config) {
  check_moe(config);
  ExpertStats stats;
  stats.source = "uniform";
  stats.n_routed_experts = config.n_routed_experts;
  stats.experts_per_token = config.num_experts_per_tok;
  stats.tokens = config.n_routed_experts;  // counts = k each: k·E choices over E tokens
  stats.layers = moe_layers(config);
  stats.counts.assign(stats.layers.size(), std::vector<double>(size_t(config.n_routed_experts), double(config.num_experts_per_tok)));
  return stats;
}

ExpertStats zipf_expert_stats(const ModelConfig& config, double alpha, uint64_t seed) {
  check_moe(config);
  check(std::isfinite(alpha) && alpha >= 0 && alpha <= 10, "Zipf exponent must be between 0 and 10",
        {.hint = "e.g. --synthetic zipf:1.0"});
  ExpertStats stats;
  stats.source = "zipf:" + std::to_string(alpha);
  stats.n_routed_experts = config.n_routed_experts;
  stats.experts_per_token = config.num_experts_per_tok;
  stats.tokens = 1000000;
  stats.layers = moe_layers(config);
  std::mt19937_64 random(seed);
  const size_t n = size_t(config.n_routed_experts);
  for (size_t i = 0; i < stats.layers.size(); ++i) {
    std::vector<double> by_rank(n);
    for (size_t r = 0; r < n; ++r) by_rank[r] = std::pow(double(r + 1), -alpha);
    by_rank = scale_capped(by_rank, double(config.num_experts_per_tok));
    std::vector<size_t> expert_of_rank(n);
    std::iota(expert_of_rank.begin(), expert_of_rank.end(), 0);
    std::shuffle(expert_of_rank.begin(), expert_of_rank.end(), random);
    std::vector<double> counts(n);
    for (size_t r = 0; r < n; ++r) counts[expert_of_rank[r]] = by_rank[r] * double(stats.tokens);
    stats.counts.push_back(std::move(counts));
  }
  return stats;
}

ExpertStats synthetic_expert_stats(const ModelConfig& config, const std::string& spec) {
  if (spec == "uniform") return uniform_expert_stats(config);
  if (spec.rfind("zipf:", 0) == 0) {
    double alpha = 0;
    try {
      size_t used = 0;
      alpha = std::stod(spec.substr(5), &used);
      check(used == spec.size() - 5, "trailing characters");
    } catch (const std::exception&) {
      throw Error("bad synthetic statistics '" + spec + "'", {.hint = "write zipf:ALPHA with a number, e.g. zipf:1.1"});
    }
    return zipf_expert_stats(config, alpha);
  }
  throw Error("unknown synthetic statistics '" + spec + "'", {.hint = "use uniform or zipf:ALPHA (e.g. zipf:1.1)"});
}

std::vector<std::vector<double>> activation_probabilities(const ModelConfig& config, const ExpertStats* stats,
                                                          int64_t experts_per_token) {
  const std::vector<int64_t> layers = moe_layers(config);
  const size_t n = size_t(config.n_routed_experts);
  check(experts_per_token >= 1 && experts_per_token <= config.n_routed_experts,
        "experts per token " + std::to_string(experts_per_token) + " is outside 1.." + std::to_string(config.n_routed_experts));
  std::vector<std::vector<double>> p(layers.size(), std::vector<double>(n, double(experts_per_token) / double(n)));
  if (stats == nullptr) return p;
  check(stats->n_routed_experts == config.n_routed_experts,
        "the statistics are for " + std::to_string(stats->n_routed_experts) + " routed experts, the model has " +
            std::to_string(config.n_routed_experts),
        {.hint = "record statistics for this model with `hetmoe profile`"});
  for (size_t row = 0; row < stats->layers.size(); ++row) {
    const auto it = std::find(layers.begin(), layers.end(), stats->layers[row]);
    if (it == layers.end()) continue;  // a layer this config does not have (e.g. fewer layers)
    const std::vector<double>& counts = stats->counts[row];
    const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
    if (!(total > 0)) continue;
    // Rescale to the requested k: the order of experts is what the counts say, the mass is k.
    p[size_t(it - layers.begin())] = scale_capped(counts, double(experts_per_token));
  }
  return p;
}

ExpertStats parse_expert_stats(const json& value, const std::string& origin) {
  check(value.is_object(), "expert statistics must be a JSON object", {.path = origin});
  check(value.value("schema", std::string()) == kSchema,
        "expert statistics schema is not '" + std::string(kSchema) + "'",
        {.path = origin, .hint = "write statistics with `hetmoe profile`"});
  ExpertStats stats;
  try {
    stats.model = value.value("model", std::string());
    stats.source = value.value("source", std::string());
    stats.n_routed_experts = value.at("n_routed_experts").get<int64_t>();
    stats.experts_per_token = value.at("experts_per_token").get<int64_t>();
    stats.tokens = value.at("tokens").get<int64_t>();
    for (const json& layer : value.at("layers")) {
      stats.layers.push_back(layer.at("layer").get<int64_t>());
      stats.counts.push_back(layer.at("counts").get<std::vector<double>>());
    }
  } catch (const json::exception& error) {
    throw Error(std::string("malformed expert statistics: ") + error.what(), {.path = origin});
  }
  check(stats.n_routed_experts > 0 && stats.experts_per_token > 0 && stats.experts_per_token <= stats.n_routed_experts,
        "expert statistics need n_routed_experts > 0 and 0 < experts_per_token <= n_routed_experts", {.path = origin});
  check(stats.tokens > 0, "expert statistics record no tokens", {.path = origin});
  for (size_t i = 0; i < stats.counts.size(); ++i) {
    check(int64_t(stats.counts[i].size()) == stats.n_routed_experts,
          "layer " + std::to_string(stats.layers[i]) + " has " + std::to_string(stats.counts[i].size()) +
              " counts, expected " + std::to_string(stats.n_routed_experts),
          {.path = origin});
    for (double c : stats.counts[i])
      check(std::isfinite(c) && c >= 0 && c <= double(stats.tokens) * 1.000001,
            "layer " + std::to_string(stats.layers[i]) + " has a count outside 0..tokens", {.path = origin});
  }
  return stats;
}

ExpertStats load_expert_stats(const std::filesystem::path& path) {
  std::ifstream in(path);
  check(bool(in), "cannot open expert statistics", {.path = path.string(), .hint = "write them with `hetmoe profile`"});
  json value;
  try {
    value = json::parse(in);
  } catch (const json::parse_error& error) {
    throw Error(std::string("expert statistics are not valid JSON: ") + error.what(), {.path = path.string()});
  }
  return parse_expert_stats(value, path.string());
}

json expert_stats_to_json(const ExpertStats& stats) {
  json layers = json::array();
  for (size_t i = 0; i < stats.layers.size(); ++i) layers.push_back({{"layer", stats.layers[i]}, {"counts", stats.counts[i]}});
  return {{"schema", kSchema},
          {"model", stats.model},
          {"source", stats.source},
          {"n_routed_experts", stats.n_routed_experts},
          {"experts_per_token", stats.experts_per_token},
          {"tokens", stats.tokens},
          {"layers", layers}};
}

void save_expert_stats(const ExpertStats& stats, const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::trunc);
  check(bool(out), "cannot create file", {.path = path.string(), .hint = "check the folder exists and is writable"});
  out << expert_stats_to_json(stats).dump() << "\n";
  out.close();
  check(bool(out), "write failed", {.path = path.string(), .hint = "is the disk full?"});
}

}  // namespace hetmoe::plan
