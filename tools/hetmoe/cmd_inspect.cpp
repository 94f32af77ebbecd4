// `hetmoe inspect DIR|config.json [--json]`: what a model is and what it costs — architecture,
// parameter counts, bytes per group, KV cache per token — and, when weights are present,
// whether every tensor matches the architecture's inventory (one error listing all problems).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/config.h"
#include "engine/model/deepseek_v3.h"
#include "engine/model/safetensors.h"
#include "tools/hetmoe/commands.h"

namespace hetmoe::cli {
namespace {

namespace fs = std::filesystem;

struct InspectFlags {
  std::string path;
  bool json = false;
};

std::string params_text(uint64_t count) {
  if (count >= 10'000'000'000) return fmt::format("{:.1f}B", double(count) / 1e9);
  if (count >= 1'000'000'000) return fmt::format("{:.2f}B", double(count) / 1e9);
  if (count >= 1'000'000) return fmt::format("{:.1f}M", double(count) / 1e6);
  return fmt::format("{:.1f}K", double(count) / 1e3);
}

std::string bytes_text(uint64_t bytes) {
  if (bytes >= 1'000'000'000) return fmt::format("{:.2f} GB", double(bytes) / 1e9);
  if (bytes >= 1'000'000) return fmt::format("{:.2f} MB", double(bytes) / 1e6);
  return fmt::format("{:.1f} KB", double(bytes) / 1e3);
}

std::string grouped(uint64_t value) {  // 70272 -> "70,272"
  std::string digits = std::to_string(value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string routing_text(const ModelConfig& c) {
  const char* scoring = c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  const char* method = c.topk_method == TopkMethod::kNoauxTc  ? "noaux_tc"
                       : c.topk_method == TopkMethod::kGreedy ? "greedy"
                                                              : "group_limited_greedy";
  std::string text = fmt::format("top-{} {} {}", c.num_experts_per_tok, scoring, method);
  if (c.n_group > 1) text += fmt::format(", {} groups keep {}", c.n_group, c.topk_group);
  text += fmt::format(", scale {:g}", c.routed_scaling_factor);
  if (c.norm_topk_prob) text += ", normalised";
  return text;
}

struct CheckpointReport {
  bool present = false;
  size_t files = 0;
  size_t tensors = 0;
  double open_seconds = 0.0;
  TensorValidation validation;
};

bool has_weights(const fs::path& directory) {
  return fs::exists(directory / "model.safetensors") ||
         fs::exists(directory / "model.safetensors.index.json");
}

void run_inspect(const InspectFlags& flags) {
  const fs::path path(flags.path);
  check(fs::exists(path), "no such file or directory", {.path = flags.path});
  const ModelConfig config = load_model_config(path);
  const ParameterCounts params = count_parameters(config);
  const ByteCounts bytes = count_bytes(config);
  const uint64_t kv_bytes = kv_cache_bytes_per_token(config);
  const size_t tensor_count = model_tensors(config).size();
  const size_t tensor_count_mtp = model_tensors(config, {.include_mtp = true}).size();

  CheckpointReport checkpoint;
  if (fs::is_directory(path) && has_weights(path)) {
    const auto start = std::chrono::steady_clock::now();
    const std::unique_ptr<Checkpoint> opened = Checkpoint::open(path);
    checkpoint.present = true;
    checkpoint.files = opened->files().size();
    checkpoint.tensors = opened->tensors().size();
    checkpoint.validation = validate_checkpoint(config, *opened);  // throws on any mismatch
    checkpoint.open_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  if (flags.json) {
    nlohmann::json out;
    out["path"] = flags.path;
    out["architecture"] = std::string(architecture_name(config.architecture));
    out["num_hidden_layers"] = config.num_hidden_layers;
    out["dense_layers"] = bytes.dense_layers;
    out["moe_layers"] = bytes.moe_layers;
    out["mtp_layers"] = config.num_nextn_predict_layers;
    out["hidden_size"] = config.hidden_size;
    out["vocab_size"] = config.vocab_size;
    out["num_attention_heads"] = config.num_attention_heads;
    out["n_routed_experts"] = config.n_routed_experts;
    out["n_shared_experts"] = config.n_shared_experts;
    out["num_experts_per_tok"] = config.num_experts_per_tok;
    out["fp8"] = config.quantization.present;
    out["total_params"] = params.total;
    out["active_params"] = params.active;
    out["active_params_with_embedding"] = params.active_with_embedding;
    out["embedding_params"] = params.embedding;
    out["mtp_params"] = params.mtp;
    nlohmann::json by_group = nlohmann::json::object();
    for (int g = 0; g < kTensorGroupCount; ++g)
      by_group[std::string(tensor_group_name(TensorGroup(g)))] = bytes.by_group[size_t(g)];
    out["bytes_by_group"] = by_group;
    out["total_bytes"] = bytes.total;
    out["routed_expert_bytes_per_moe_layer"] = bytes.routed_experts_per_moe_layer;
    out["routed_expert_bytes"] = bytes.routed_expert_single;
    out["kv_cache_bytes_per_token"] = kv_bytes;
    out["tensor_count"] = tensor_count;
    out["tensor_count_with_mtp"] = tensor_count_mtp;
    out["validated"] = checkpoint.present;
    if (checkpoint.present) {
      out["checkpoint"] = {{"files", checkpoint.files},
                           {"tensors", checkpoint.tensors},
                           {"checked", checkpoint.validation.checked},
                           {"skipped_mtp", checkpoint.validation.skipped.size()},
                           {"open_validate_seconds", checkpoint.open_seconds}};
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }

  const ModelConfig& c = config;
  std::string text = fmt::format("model        {}\n", flags.path);
  text += fmt::format("architecture {} ({} layers: {} dense + {} MoE", architecture_name(c.architecture),
                      c.num_hidden_layers, bytes.dense_layers, bytes.moe_layers);
  if (c.num_nextn_predict_layers > 0)
    text += fmt::format("; +{} MTP layer not loaded", c.num_nextn_predict_layers);
  text += ")\n";
  text += fmt::format("dimensions   hidden {}, vocab {}, dense FFN {}\n", c.hidden_size, c.vocab_size,
                      c.intermediate_size);
  text += fmt::format("attention    MLA, {} heads, q_lora {}, kv_lora {}, qk {} nope + {} rope, v {}\n",
                      c.num_attention_heads, c.q_lora_rank > 0 ? std::to_string(c.q_lora_rank) : "none",
                      c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim);
  if (c.n_routed_experts > 0)
    text += fmt::format("experts      {} routed x {} + {} shared, {}\n", c.n_routed_experts,
                        c.moe_intermediate_size, c.n_shared_experts, routing_text(c));
  text += fmt::format("weights      {}\n",
                      c.quantization.present
                          ? fmt::format("FP8 {} with F32 scales per {}x{} block", c.quantization.fmt,
                                        c.quantization.block_rows, c.quantization.block_cols)
                          : std::string("BF16"));
  text += fmt::format("parameters   {} total, {} active per token ({} with the embedding table)",
                      params_text(params.total), params_text(params.active),
                      params_text(params.active_with_embedding));
  if (params.mtp > 0) text += fmt::format("; MTP adds {} (not in total)", params_text(params.mtp));
  text += "\nbytes        by group, in the checkpoint's formats:\n";
  for (int g = 0; g < kTensorGroupCount; ++g) {
    const uint64_t group_bytes = bytes.by_group[size_t(g)];
    if (group_bytes == 0) continue;
    text += fmt::format("  {:<16}{:>12}{}\n", tensor_group_name(TensorGroup(g)), bytes_text(group_bytes),
                        TensorGroup(g) == TensorGroup::kMtp ? "  (skipped)" : "");
  }
  text += fmt::format("  {:<16}{:>12}\n", "total", bytes_text(bytes.total));
  if (bytes.moe_layers > 0)
    text +=
        fmt::format("routed       {} per MoE layer ({} per expert)\n",
                    bytes_text(bytes.routed_experts_per_moe_layer), bytes_text(bytes.routed_expert_single));
  text += fmt::format("KV cache     {} bytes per token (BF16, {} layers x {})\n", grouped(kv_bytes),
                      c.num_hidden_layers, c.kv_lora_rank + c.qk_rope_head_dim);
  text += fmt::format("tensors      {} in the main model ({} with MTP)\n", grouped(tensor_count),
                      grouped(tensor_count_mtp));
  if (checkpoint.present) {
    text += fmt::format("checkpoint   {} file{}, {} tensors: all {} main-model tensors valid",
                        checkpoint.files, checkpoint.files == 1 ? "" : "s", grouped(checkpoint.tensors),
                        grouped(checkpoint.validation.checked));
    if (!checkpoint.validation.skipped.empty())
      text += fmt::format(", {} MTP tensors skipped", grouped(checkpoint.validation.skipped.size()));
    text += fmt::format(" ({:.3f} s)\n", checkpoint.open_seconds);
  } else {
    text += "checkpoint   no weights (config only)\n";
  }
  std::fputs(text.c_str(), stdout);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* sub =
      app.add_subcommand("inspect",
                         "Describe a model (DIR or config.json): architecture, parameters, bytes, and "
                         "validate its tensors when weights are present");
  sub->add_option("path", flags->path, "Model directory or config.json")->required();
  sub->add_flag("--json", flags->json, "Print one JSON object");
  sub->callback([flags] { run_inspect(*flags); });
}

}  // namespace hetmoe::cli
