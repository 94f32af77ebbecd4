// hetmoe perplexity -m DIR -f FILE [--ctx N] [--json] [--format F] [--kl-base F]: perplexity and
// bits per byte of a text, protocol in docs/TINY_MODEL.md (non-overlapping windows, no BOS);
// --kl-base adds the mean KL divergence of --format's next-token distribution from the base
// format's over the same scored positions (the quality table of docs/KERNELS.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/tokenizer.h"
#include "engine/runtime/packed_experts.h"
#include "engine/runtime/perplexity.h"
#include "engine/runtime/streaming_experts.h"
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
  std::string format = "fp8";
  std::string kl_base;
  std::string store, dram_budget;  // stream routed experts from a packed store (docs/STREAMING.md)
};

// The routed-expert source for a --format value; nullptr for "ref" (the checkpoint mapping).
std::unique_ptr<PackedExperts> expert_source(const Model& model, const std::string& format, int threads) {
  if (format == "ref") return nullptr;
  return std::make_unique<PackedExperts>(
      model.weights(),
      PackedExpertsOptions{.format = *cpu::parse_packed_format(format), .threads = {.threads = threads}});
}

// log-softmax of one logits row, in double.
void log_softmax(const float* row, int64_t vocab, std::vector<double>& out) {
  const double max_logit = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max_logit);
  const double log_sum = std::log(sum) + max_logit;
  out.resize(size_t(vocab));
  for (int64_t v = 0; v < vocab; ++v) out[size_t(v)] = double(row[v]) - log_sum;
}

// Mean KL(base || test) of the next-token distributions at every scored position of the
// perplexity windows (same windows as evaluate_perplexity).
double mean_kl(Model& model, ExpertSource* base, ExpertSource* test, std::span<const int32_t> ids,
               int64_t context) {
  const int64_t vocab = model.config().vocab_size, total = int64_t(ids.size());
  KvCache cache(model.config(), context);
  std::vector<float> base_logits, test_logits;
  std::vector<double> log_p, log_q;
  double kl_sum = 0.0;
  int64_t positions = 0;
  for (int64_t begin = 0; begin + 1 < total; begin += context) {
    const int64_t count = std::min(context, total - begin);
    if (count < 2) break;
    for (auto [source, logits] : {std::pair{base, &base_logits}, std::pair{test, &test_logits}}) {
      model.set_expert_source(source);
      cache.clear();
      SequenceStep step{&cache, ids.subspan(size_t(begin), size_t(count)), true, logits};
      model.forward(std::span(&step, 1));
    }
    for (int64_t t = 0; t + 1 < count; ++t) {
      log_softmax(&base_logits[size_t(t * vocab)], vocab, log_p);
      log_softmax(&test_logits[size_t(t * vocab)], vocab, log_q);
      double kl = 0.0;
      for (int64_t v = 0; v < vocab; ++v)
        kl += std::exp(log_p[size_t(v)]) * (log_p[size_t(v)] - log_q[size_t(v)]);
      kl_sum += kl;
      ++positions;
    }
  }
  return positions > 0 ? kl_sum / double(positions) : 0.0;
}

void run_perplexity(const PerplexityOptions& options) {
  ThreadLimit limit(options.threads);
  Model model(load_model_weights(options.model_dir));
  const Tokenizer tokenizer = load_tokenizer_for(options.model_dir, model.config());
  std::vector<int32_t> ids = tokenizer.encode(read_text_file(options.file), false);
  if (options.max_tokens > 0 && int64_t(ids.size()) > options.max_tokens) ids.resize(size_t(options.max_tokens));
  check(options.store.empty() || options.kl_base.empty(),
        "--kl-base compares resident formats; drop --store");
  const std::unique_ptr<PackedExperts> experts =
      expert_source(model, options.store.empty() ? options.format : "ref", options.threads);
  model.set_expert_source(experts.get());
  const auto expert_stream = open_streaming_session(model, options.store, options.dram_budget,
                                                    {.context = options.context,
                                                     .batch_tokens = options.context,
                                                     .logit_rows = options.context,
                                                     .threads = options.threads});
  const auto result = evaluate_perplexity(
      model, ids, options.context, [&](int32_t id) { return int64_t(tokenizer.token_bytes(id).size()); },
      [&](int64_t done, int64_t total) {
        if (!options.json) std::fprintf(stderr, "\rhetmoe: %lld / %lld tokens", static_cast<long long>(done),
                                        static_cast<long long>(total));
      });
  if (expert_stream && !options.json) std::fprintf(stderr, "\nhetmoe: %s", expert_stream->summary().c_str());
  double kl = 0.0;
  if (!options.kl_base.empty()) {
    const std::unique_ptr<PackedExperts> base = expert_source(model, options.kl_base, options.threads);
    kl = mean_kl(model, base.get(), experts.get(), ids, options.context);
  }
  if (options.json) {
    nlohmann::json out = {{"ppl", result.perplexity}, {"bpb", result.bits_per_byte},
                          {"tokens", result.tokens},  {"bytes", result.bytes},
                          {"ctx", options.context},
                          {"format", expert_stream ? std::string(io::record_format_name(
                                                         expert_stream->source().store().header().format))
                                                   : options.format}};
    if (!options.kl_base.empty()) {
      out["kl"] = kl;
      out["kl_base"] = options.kl_base;
    }
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("\nperplexity %.4f, bits per byte %.4f over %lld tokens (%lld bytes), ctx %lld\n", result.perplexity,
                result.bits_per_byte, static_cast<long long>(result.tokens), static_cast<long long>(result.bytes),
                static_cast<long long>(options.context));
    if (!options.kl_base.empty())
      std::printf("KL(%s || %s) %.6f nats per token (mean over the scored positions)\n",
                  options.kl_base.c_str(), options.format.c_str(), kl);
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
  const auto formats = CLI::IsMember({"fp8", "int8", "int4", "bf16", "ref"});
  cmd->add_option(
         "--format", o->format,
         "Routed-expert weights: fp8 (as shipped), int8, int4, bf16 (requantised at load), ref (checkpoint "
         "mapping, plain linear)")
      ->check(formats);
  cmd->add_option("--kl-base", o->kl_base,
                  "Also print the mean KL divergence from this format's distribution")
      ->check(formats);
  cmd->add_option("--store", o->store,
                  "Stream routed experts from this packed store (hetmoe pack); its format wins");
  cmd->add_option("--dram-budget", o->dram_budget, "With --store: DRAM hetmoe may use, e.g. 16GiB");
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace hetmoe::cli
