// `hetmoe make-model`: writes a random-weight checkpoint in the Hugging Face layout of a
// DeepSeek model (see engine/model/model_builder.h for what the values are).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "engine/model/config.h"
#include "engine/model/model_builder.h"
#include "tools/hetmoe/commands.h"

namespace hetmoe::cli {
namespace {

struct MakeModelFlags {
  std::string output;
  std::string preset;
  std::string config_file;
  std::optional<int64_t> layers, vocab, experts;
  uint64_t seed = 0;
  double zipf = 0.0;
  std::string max_shard_size;
  bool force = false;
};

void run_make_model(const MakeModelFlags& flags) {
  check(flags.preset.empty() != flags.config_file.empty(),
        flags.preset.empty() ? "make-model needs --preset or --config"
                             : "make-model takes --preset or --config, not both",
        {.hint = "e.g. hetmoe make-model -o DIR --preset tiny"});
  const ModelOverrides overrides{.layers = flags.layers, .vocab = flags.vocab, .experts = flags.experts};
  ModelConfig config;
  if (!flags.preset.empty()) {
    config = preset_model_config(flags.preset, overrides);
  } else {
    config = load_model_config(flags.config_file);
    apply_overrides(config, overrides);
  }

  RandomCheckpointOptions options{.seed = flags.seed, .zipf_alpha = flags.zipf, .force = flags.force};
  if (!flags.max_shard_size.empty()) {
    const auto bytes = parse_byte_size(flags.max_shard_size);
    check(bytes.has_value(), fmt::format("bad --max-shard-size '{}'", flags.max_shard_size),
          {.hint = "a byte count with an optional unit: 5GB, 500MB, 4GiB, 1048576"});
    options.max_shard_bytes = *bytes;
  }

  const RandomCheckpointSummary summary = write_random_checkpoint(config, flags.output, options);
  const double gb = double(summary.file_bytes) / 1e9;
  std::printf("wrote %s: %s, %lld layers, %llu tensors, %.3f GB in %lld file%s, %.1f s (%.2f GB/s)\n",
              flags.output.c_str(), std::string(architecture_name(config.architecture)).c_str(),
              static_cast<long long>(config.num_hidden_layers),
              static_cast<unsigned long long>(summary.tensor_count), gb,
              static_cast<long long>(summary.shard_count), summary.shard_count == 1 ? "" : "s",
              summary.seconds, summary.seconds > 0 ? gb / summary.seconds : 0.0);
}

}  // namespace

void register_make_model(CLI::App& app) {
  auto flags = std::make_shared<MakeModelFlags>();
  CLI::App* sub = app.add_subcommand(
      "make-model", "Write a random-weight checkpoint (Hugging Face layout, seeded, streamed to disk)");
  sub->add_option("-o,--output", flags->output, "Output directory (created; must be empty)")->required();
  sub->add_option("--preset", flags->preset, "Model shape: tiny | ds3-layers | v2-lite")
      ->check(CLI::IsMember({"tiny", "ds3-layers", "v2-lite"}));
  sub->add_option("--config", flags->config_file, "Use this config.json instead of a preset")
      ->check(CLI::ExistingFile);
  sub->add_option("--layers", flags->layers, "Number of layers (presets: first one dense)");
  sub->add_option("--vocab", flags->vocab, "Vocabulary size (presets default to 1024/2048)");
  sub->add_option("--experts", flags->experts, "Routed experts per MoE layer");
  sub->add_option("--seed", flags->seed, "Random seed (same seed, same bytes)");
  sub->add_option("--zipf", flags->zipf,
                  "Plant hot experts: Zipf exponent of routing skew via e_score_correction_bias");
  sub->add_option("--max-shard-size", flags->max_shard_size,
                  "Split into shards of at most this size (e.g. 5GB); default one file");
  sub->add_flag("--force", flags->force, "Replace a non-empty output directory");
  sub->callback([flags] { run_make_model(*flags); });
}

}  // namespace hetmoe::cli
