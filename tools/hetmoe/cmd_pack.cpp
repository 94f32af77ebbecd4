// hetmoe pack -m DIR -o STORE [--format fp8|int8|int4|bf16|ref]: the packed expert store that
// `run/perplexity/logits/bench --store` stream from (docs/STREAMING.md).
#include <unistd.h>

#include <cstdio>

#include "engine/core/error.h"
#include "engine/runtime/expert_store.h"
#include "engine/runtime/memory_budget.h"
#include "tools/hetmoe/commands.h"

namespace hetmoe::cli {
namespace {

struct PackFlags {
  std::string model_dir;
  std::string output;
  std::string format = "fp8";
  bool no_sync = false;
  bool quiet = false;
};

void run_pack(const PackFlags& flags) {
  const auto format = io::parse_record_format(flags.format);
  check(format.has_value(), "unknown --format " + flags.format, {.hint = "fp8, int8, int4, bf16 or ref"});
  PackOptions options{
      .model_dir = flags.model_dir, .output = flags.output, .format = *format, .durable = !flags.no_sync};
  int last_percent = -1;
  // One line rewritten in place on a terminal; into a log, a line every 10%.
  const bool terminal = ::isatty(STDERR_FILENO) != 0;
  if (!flags.quiet)
    options.progress = [&, terminal](int64_t done, int64_t total) {
      const int percent = int(100 * done / total);
      if (percent == last_percent || (!terminal && percent % 10 != 0 && done != total)) return;
      last_percent = percent;
      std::fprintf(stderr, terminal ? "\rhetmoe: packing %lld / %lld experts (%d%%)" : "hetmoe: packing %lld / %lld experts (%d%%)\n",
                   static_cast<long long>(done), static_cast<long long>(total), percent);
    };
  const PackSummary summary = pack_expert_store(options);
  if (!flags.quiet && terminal) std::fprintf(stderr, "\n");
  std::printf("wrote %s: %llu experts (%s) x %s = %s in %.1f s (%.2f GB/s)\n", flags.output.c_str(),
              static_cast<unsigned long long>(summary.records), flags.format.c_str(),
              format_bytes(summary.record_bytes).c_str(), format_bytes(summary.file_bytes).c_str(),
              summary.seconds,
              summary.seconds > 0 ? double(summary.file_bytes) / 1e9 / summary.seconds : 0.0);
}

}  // namespace

void register_pack(CLI::App& app) {
  auto flags = std::make_shared<PackFlags>();
  CLI::App* cmd =
      app.add_subcommand("pack", "Pack a model's routed experts into a store for streaming (--store)");
  cmd->add_option("-m,--model", flags->model_dir, "Model folder (config.json + safetensors)")->required();
  cmd->add_option("-o,--output", flags->output, "Store file to write (atomically: OUTPUT.tmp, then renamed)")
      ->required();
  cmd->add_option("--format", flags->format, "Record format: fp8 (as shipped, default), int8 / int4 (requantised, group 128), bf16, ref (the checkpoint's bytes for the reference path)");
  cmd->add_flag("--no-sync", flags->no_sync, "Skip the fsync before the rename (scratch stores)");
  cmd->add_flag("-q,--quiet", flags->quiet, "No progress on stderr");
  cmd->callback([flags] { run_pack(*flags); });
}

}  // namespace hetmoe::cli
