// hetmoe logits -m DIR --ids 0,17,42 -o FILE.npy: float32 logits [n_ids, vocab] for the ids
// processed as one prompt from position 0. Needs only config.json and the safetensors, so
// outside tools can compare any checkpoint folder.
#include <cstdio>

#include "engine/runtime/model.h"
#include "engine/runtime/streaming_experts.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct LogitsOptions {
  std::string model_dir;
  std::string ids;
  std::string output;
  int threads = 0;
  std::string attention = "absorbed";
  std::string store, dram_budget;  // stream routed experts from a packed store (docs/STREAMING.md)
};

void run_logits(const LogitsOptions& options) {
  ThreadLimit limit(options.threads);
  const std::vector<int32_t> ids = parse_id_list(options.ids);
  Model model(load_model_weights(options.model_dir));
  model.set_attention_form(options.attention == "naive" ? AttentionForm::kNaive : AttentionForm::kAbsorbed);
  const int64_t n = int64_t(ids.size());
  const auto streaming = open_streaming_session(model, options.store, options.dram_budget,
                                                {.context = n, .batch_tokens = n, .logit_rows = n, .threads = options.threads});
  KvCache cache(model.config(), int64_t(ids.size()));
  std::vector<float> logits;
  SequenceStep step{&cache, ids, true, &logits};
  model.forward(std::span(&step, 1));
  write_npy(options.output, logits, {int64_t(ids.size()), model.config().vocab_size});
  std::fprintf(stderr, "hetmoe: wrote logits [%zu, %lld] to %s\n", ids.size(),
               static_cast<long long>(model.config().vocab_size), options.output.c_str());
  if (streaming) std::fprintf(stderr, "hetmoe: %s\n", streaming->summary().c_str());
}

}  // namespace

void register_logits(CLI::App& app) {
  auto options = std::make_shared<LogitsOptions>();
  CLI::App* cmd = app.add_subcommand("logits", "Write float32 logits [n_ids, vocab] for a token id sequence to .npy");
  cmd->add_option("-m,--model", options->model_dir, "Checkpoint folder (config.json + safetensors)")->required();
  cmd->add_option("--ids", options->ids, "Comma-separated token ids, processed as one prompt from position 0")
      ->required();
  cmd->add_option("-o,--output", options->output, "Output .npy file")->required();
  cmd->add_option("-t,--threads", options->threads, "Worker threads (0: all cores)");
  cmd->add_option("--attention", options->attention, "MLA form: absorbed (default) or naive")
      ->check(CLI::IsMember({"absorbed", "naive"}));
  cmd->add_option("--store", options->store,
                  "Stream routed experts from this packed store (hetmoe pack); its format picks the expert kernels "
                  "(pack --format ref: the checkpoint's weights, the same logits as without --store)");
  cmd->add_option("--dram-budget", options->dram_budget, "With --store: DRAM hetmoe may use, e.g. 16GiB");
  cmd->callback([options] { run_logits(*options); });
}

}  // namespace hetmoe::cli
