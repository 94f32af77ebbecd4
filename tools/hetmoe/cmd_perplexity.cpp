// hetmoe perplexity -m DIR -f FILE [--ctx N] [--json]: perplexity and bits per byte of a text,
// protocol in docs/TINY_MODEL.md (non-overlapping windows, no BOS).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "engine/model/tokenizer.h"
#include "engine/runtime/perplexity.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct PerplexityOptions {
  std::string model_dir;
  std::string file;
  int64_t context = 256;
  int64_t max_tokens = 0;
  bool json = false;
  int threads = 0;
};

void run_perplexity(const PerplexityOptions& options) {
  ThreadLimit limit(options.threads);
  Model model(load_model_weights(options.model_dir));
  const Tokenizer tokenizer = load_tokenizer_for(options.model_dir, model.config());
  std::vector<int32_t> ids = tokenizer.encode(read_text_file(options.file), false);
  if (options.max_tokens > 0 && int64_t(ids.size()) > options.max_tokens) ids.resize(size_t(options.max_tokens));
  const auto result = evaluate_perplexity(
      model, ids, options.context, [&](int32_t id) { return int64_t(tokenizer.token_bytes(id).size()); },
      [&](int64_t done, int64_t total) {
        if (!options.json) std::fprintf(stderr, "\rhetmoe: %lld / %lld tokens", static_cast<long long>(done),
                                        static_cast<long long>(total));
      });
  if (options.json) {
    const nlohmann::json out = {{"ppl", result.perplexity}, {"bpb", result.bits_per_byte}, {"tokens", result.tokens},
                                {"bytes", result.bytes}, {"ctx", options.context}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("\nperplexity %.4f, bits per byte %.4f over %lld tokens (%lld bytes), ctx %lld\n", result.perplexity,
                result.bits_per_byte, static_cast<long long>(result.tokens), static_cast<long long>(result.bytes),
                static_cast<long long>(options.context));
  }
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity and bits per byte of a text file");
  cmd->add_option("-m,--model", o->model_dir, "Model folder")->required();
  cmd->add_option("-f,--file", o->file, "Text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx", o->context, "Window size in tokens (default 256)");
  cmd->add_option("--max-tokens", o->max_tokens, "Score only the first N tokens of the file");
  cmd->add_flag("--json", o->json, "Print one JSON object {ppl, bpb, tokens, bytes, ctx}");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all cores)");
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace hetmoe::cli
