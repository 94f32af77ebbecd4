// hetmoe run -m DIR -p PROMPT [-n N] [--chat] [--temp T --top-k K --top-p P --min-p M --seed S]
//            [--format fp8|int8|int4|bf16|ref] [--store STORE --dram-budget N] [--plan PLAN]
// Streams generated text to stdout; prompt and generation tokens/s go to stderr at the end.
// Several -p run as one batch (printed when all finish).
#include <cstdio>
#include <map>
#include <optional>

#include "engine/core/error.h"
#include "engine/model/chat_template.h"
#include "engine/model/tokenizer.h"
#include "engine/runtime/generate.h"
#include "engine/runtime/packed_experts.h"
#include "engine/runtime/streaming_experts.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"
#include "tools/hetmoe/run_plan.h"

namespace hetmoe::cli {
namespace {

struct RunOptions {
  std::string model_dir;
  std::vector<std::string> prompts;
  std::string prompt_file;
  int64_t tokens = 128;
  bool chat = false;
  bool no_bos = false;
  int64_t context = 4096;
  int threads = 0;
  SamplingParams sampling{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 42};
  std::vector<std::string> stops;
  bool ignore_eos = false;
  std::string format;               // empty: the plan's, else fp8
  std::string store, dram_budget;  // stream routed experts from a packed store (docs/STREAMING.md)
  std::string prefetch = "auto";   // with --store: next-layer prefetch on, off or auto
  std::string plan;                // follow a `hetmoe plan -o` file
};

// --plan: the plan's expert format (unless --format was given) and, with --store, its resident
// experts and DRAM budget (unless --dram-budget was given). Returns the experts to pin.
std::vector<ExpertKey> apply_plan(RunOptions& options, const ModelConfig& config) {
  if (options.plan.empty()) {
    if (options.format.empty()) options.format = "fp8";
    return {};
  }
  RunPlan plan = load_run_plan(options.plan, config);
  if (options.format.empty()) options.format = plan.expert_format;
  std::vector<ExpertKey> hot;
  std::string budget_note;
  if (!options.store.empty()) {
    hot = std::move(plan.resident);
    if (options.dram_budget.empty() && plan.dram_budget_bytes > 0) {
      options.dram_budget = std::to_string(plan.dram_budget_bytes);
      budget_note = ", DRAM budget " + format_bytes(plan.dram_budget_bytes) + " (the plan's)";
    }
  }
  std::fprintf(stderr, "hetmoe: following %s: experts %s, %lld GPU + %lld DRAM + %lld NVMe%s%s\n",
               options.plan.c_str(), options.store.empty() ? options.format.c_str() : "from the store",
               static_cast<long long>(plan.gpu_experts), static_cast<long long>(plan.dram_experts),
               static_cast<long long>(plan.nvme_experts),
               options.store.empty() ? " (no --store: every expert is loaded into DRAM)"
                                     : (", " + std::to_string(hot.size()) + " kept resident").c_str(),
               budget_note.c_str());
  if (plan.gpu_experts > 0)
    std::fprintf(stderr, "hetmoe: no GPU backend yet: the plan's GPU experts stay in DRAM\n");
  return hot;
}

std::vector<int32_t> prompt_ids(const RunOptions& options, const Tokenizer& tokenizer, const std::string& prompt) {
  if (options.chat) {
    const ChatTemplate chat = ChatTemplate::for_tokenizer(tokenizer);
    const std::vector<ChatMessage> messages = {{.role = "user", .content = prompt}};
    return tokenizer.encode(chat.render(messages), false);  // the template starts with BOS
  }
  const bool add_bos = !options.no_bos && tokenizer.bos_id() != kNoToken;
  return tokenizer.encode(prompt, add_bos);
}

void run_generate(RunOptions options) {
  ThreadLimit limit(options.threads);
  if (!options.prompt_file.empty()) options.prompts.push_back(read_text_file(options.prompt_file));
  check(!options.prompts.empty(), "no prompt", {.hint = "give -p TEXT or -f FILE"});
  check(options.tokens >= 0, "-n must be >= 0");
  Model model(load_model_weights(options.model_dir));
  const Tokenizer tokenizer = load_tokenizer_for(options.model_dir, model.config());
  std::vector<ExpertKey> hot = apply_plan(options, model.config());
  std::optional<PackedExperts> experts;  // --format ref keeps the checkpoint mapping (the reference)
  if (options.format != "ref" && options.store.empty()) {
    experts.emplace(model.weights(), PackedExpertsOptions{.format = *cpu::parse_packed_format(options.format),
                                                          .threads = {.threads = options.threads}});
    model.set_expert_source(&*experts);
  }

  std::vector<GenerationRequest> requests;
  for (const auto& prompt : options.prompts)
    requests.push_back({.prompt = prompt_ids(options, tokenizer, prompt),
                        .max_new_tokens = options.tokens,
                        .sampling = options.sampling,
                        .stop_strings = options.stops});
  int64_t prompt_tokens = 0;
  for (const auto& request : requests) prompt_tokens += int64_t(request.prompt.size());
  const auto expert_stream = open_streaming_session(model, options.store, options.dram_budget,
                                                    {.sequences = int64_t(requests.size()),
                                                     .context = options.context,
                                                     .batch_tokens = prompt_tokens,
                                                     .logit_rows = int64_t(requests.size()),
                                                     .threads = options.threads},
                                                    std::move(hot), options.prefetch);
  GenerationOptions generation{.context_tokens = options.context, .vocab_limit = tokenizer.vocab_size()};
  if (!options.ignore_eos && tokenizer.eos_id() != kNoToken) generation.eos_ids.push_back(tokenizer.eos_id());
  generation.token_bytes = [&](int32_t id) { return std::string(tokenizer.token_bytes(id)); };
  const bool streaming = requests.size() == 1;
  StreamDecoder decoder(tokenizer, true);
  if (streaming) {
    std::fputs(options.chat ? "" : options.prompts[0].c_str(), stdout);
    std::fflush(stdout);
    generation.on_token = [&](size_t, int32_t token) {
      std::fputs(decoder.push(token).c_str(), stdout);
      std::fflush(stdout);
    };
  }
  GenerationStats stats;
  const auto results = generate(model, requests, generation, &stats);
  if (streaming) {
    std::fputs((decoder.flush() + "\n").c_str(), stdout);
  } else {
    for (size_t i = 0; i < results.size(); ++i)
      std::printf("[%zu] %s%s\n", i, options.chat ? "" : options.prompts[i].c_str(),
                  tokenizer.decode(results[i].tokens, true).c_str());
  }
  const int64_t decode_tokens = stats.generated_tokens - int64_t(results.size());  // first token comes from prefill
  std::fprintf(stderr, "\nhetmoe: prompt %lld tokens in %.3f s (%.1f tokens/s); generation %lld tokens in %.3f s (%.1f tokens/s)\n",
               static_cast<long long>(stats.prompt_tokens), stats.prefill_seconds,
               stats.prefill_seconds > 0 ? double(stats.prompt_tokens) / stats.prefill_seconds : 0.0,
               static_cast<long long>(decode_tokens), stats.decode_seconds,
               stats.decode_seconds > 0 ? double(decode_tokens) / stats.decode_seconds : 0.0);
  if (expert_stream) std::fprintf(stderr, "hetmoe: %s\n", expert_stream->summary().c_str());
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt, streaming to stdout");
  cmd->add_option("-m,--model", o->model_dir, "Model folder (config.json, safetensors, tokenizer.json)")->required();
  cmd->add_option("-p,--prompt", o->prompts, "Prompt text; repeat for a batch of sequences");
  cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->tokens, "Tokens to generate (default 128)");
  cmd->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template (one user turn)");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token");
  cmd->add_option("-c,--ctx", o->context, "Context size in tokens (prompt + generation; default 4096)");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all cores)");
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy; default 0.8)");
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off; default 40)");
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off; default 0.95)");
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off; default 0.05)");
  cmd->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (1: off)");
  cmd->add_option("--repeat-last-n", o->sampling.repetition_window, "Tokens the penalty looks back over (64)");
  cmd->add_option("-s,--seed", o->sampling.seed, "Sampling seed (default 42)");
  cmd->add_option("--stop", o->stops, "Stop when the generated text contains this string (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->add_option("--format", o->format,
                  "Routed-expert weights in DRAM: fp8 (as shipped), int8, int4, bf16 (requantised at load), "
                  "ref (the checkpoint mapping, plain linear)")
      ->check(CLI::IsMember({"fp8", "int8", "int4", "bf16", "ref"}));
  cmd->add_option("--store", o->store,
                  "Stream routed experts from this packed store (hetmoe pack); its format wins");
  cmd->add_option("--dram-budget", o->dram_budget, "With --store: DRAM hetmoe may use, e.g. 16GiB");
  cmd->add_option("--prefetch", o->prefetch,
                  "With --store: next-layer prefetch on, off, or auto (default: measures both while decoding "
                  "and keeps the faster)")
      ->check(CLI::IsMember({"on", "off", "auto", "0", "1"}));
  cmd->add_option("--plan", o->plan,
                  "Follow a plan file (hetmoe plan -o): its expert format; with --store its resident experts "
                  "and DRAM budget. Explicit --format / --dram-budget win");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace hetmoe::cli
