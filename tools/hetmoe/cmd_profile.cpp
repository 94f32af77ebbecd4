// hetmoe profile -m DIR -f FILE -o STATS [--ctx N] [--max-tokens N] [-t T]
//   records per-layer routed-expert activation counts while running the text through the model
//   (non-overlapping windows of --ctx tokens, prefill only: routing needs no sampling).
// hetmoe profile --synthetic uniform|zipf:ALPHA -m DIR|config.json -o STATS
//   writes synthetic statistics for the config (no weights needed).
#include <cstdio>
#include <map>

#include "engine/core/error.h"
#include "engine/model/tokenizer.h"
#include "engine/plan/expert_stats.h"
#include "engine/runtime/model.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct ProfileOptions {
  std::string model;
  std::string file;
  std::string output;
  std::string synthetic;
  int64_t context = 512;
  int64_t max_tokens = 0;
  uint64_t seed = 1;
  int threads = 0;
};

// Counts, per MoE layer, how often each expert is chosen.
class RoutingCounter final : public RoutingObserver {
 public:
  explicit RoutingCounter(const ModelConfig& config) : stats_() {
    stats_.n_routed_experts = config.n_routed_experts;
    stats_.experts_per_token = config.num_experts_per_tok;
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      if (!config.is_moe_layer(l)) continue;
      row_of_layer_[l] = stats_.layers.size();
      stats_.layers.push_back(l);
      stats_.counts.emplace_back(size_t(config.n_routed_experts), 0.0);
    }
  }
  void on_route(int64_t layer, std::span<const int32_t> experts) override {
    const auto it = row_of_layer_.find(layer);
    if (it == row_of_layer_.end()) return;
    std::vector<double>& counts = stats_.counts[it->second];
    for (int32_t e : experts)
      if (e >= 0 && size_t(e) < counts.size()) counts[size_t(e)] += 1;
    if (it->second == 0) stats_.tokens += int64_t(experts.size()) / stats_.experts_per_token;
  }
  plan::ExpertStats take() { return std::move(stats_); }

 private:
  plan::ExpertStats stats_;
  std::map<int64_t, size_t> row_of_layer_;
};

void run_profile(const ProfileOptions& o) {
  ThreadLimit limit(o.threads);
  plan::ExpertStats stats;
  if (!o.synthetic.empty()) {
    check(o.file.empty(), "--synthetic takes no text file", {.hint = "drop -f, or drop --synthetic to record from text"});
    const ModelConfig config = load_model_config(o.model);
    stats = plan::synthetic_expert_stats(config, o.synthetic);
    stats.model = o.model;
  } else {
    check(!o.file.empty(), "profile needs a text file to run (-f FILE) or --synthetic uniform|zipf:ALPHA");
    check(o.context >= 1, "--ctx must be >= 1");
    Model model(load_model_weights(o.model));
    check(model.config().n_routed_experts > 0, "the model has no routed experts to profile");
    const Tokenizer tokenizer = load_tokenizer_for(o.model, model.config());
    std::vector<int32_t> ids = tokenizer.encode(read_text_file(o.file), false);
    if (o.max_tokens > 0 && int64_t(ids.size()) > o.max_tokens) ids.resize(size_t(o.max_tokens));
    check(!ids.empty(), "the text file has no tokens", {.path = o.file});
    RoutingCounter counter(model.config());
    model.set_routing_observer(&counter);
    for (size_t begin = 0; begin < ids.size(); begin += size_t(o.context)) {
      const size_t end = std::min(ids.size(), begin + size_t(o.context));
      KvCache cache(model.config(), int64_t(end - begin));
      std::vector<float> logits;
      SequenceStep step{.cache = &cache, .tokens = std::span(ids).subspan(begin, end - begin), .logits = &logits};
      model.forward(std::span(&step, 1));
      std::fprintf(stderr, "\rhetmoe: %zu / %zu tokens", end, ids.size());
    }
    std::fprintf(stderr, "\n");
    model.set_routing_observer(nullptr);
    stats = counter.take();
    stats.model = o.model;
    stats.source = "measured: " + o.file;
  }
  plan::save_expert_stats(stats, o.output);
  std::printf("wrote %s: %zu MoE layers x %lld experts, %lld tokens (%s)\n", o.output.c_str(), stats.layers.size(),
              static_cast<long long>(stats.n_routed_experts), static_cast<long long>(stats.tokens), stats.source.c_str());
}

}  // namespace

void register_profile(CLI::App& app) {
  auto o = std::make_shared<ProfileOptions>();
  CLI::App* cmd = app.add_subcommand("profile", "Record per-layer expert activation statistics (or write synthetic ones)");
  cmd->add_option("-m,--model", o->model, "Model folder (with -f), or a folder / config.json (with --synthetic)")->required();
  cmd->add_option("-f,--file", o->file, "Text to run through the model")->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->output, "Statistics file to write (JSON)")->required();
  cmd->add_option("--synthetic", o->synthetic, "uniform or zipf:ALPHA instead of running text");
  cmd->add_option("-c,--ctx", o->context, "Window size in tokens (default 512)");
  cmd->add_option("--max-tokens", o->max_tokens, "Run only the first N tokens of the file");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all cores)");
  cmd->callback([o] { run_profile(*o); });
}

}  // namespace hetmoe::cli
