// hetmoe bench -m DIR [--store STORE --dram-budget N] [-p 512] [-n 128] [-r 3] [-o md|json|csv]
//
// llama-bench-style throughput: a prompt-processing test ppP (one forward of P random tokens)
// per -p value and a generation test tgN (N one-token steps) per -n value, from an empty
// context or, per -d value D, after D tokens filled untimed ("tg32 @ d512"), each repeated -r
// times after a warm-up, for every combination of the list flags (-t, --dram-budget,
// --cache-policy, --prefetch). With --store the routed experts stream
// from the packed store under the budget; without it they come from the checkpoint's mmap
// (the page cache: how llama.cpp runs models larger than RAM).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/model/tokenizer.h"
#include "engine/runtime/model.h"
#include "engine/runtime/oracle_prefetch.h"
#include "engine/runtime/packed_experts.h"
#include "engine/runtime/streaming_experts.h"
#include "io/store_reads.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct BenchFlags {
  std::string model_dir;
  std::string store;
  std::vector<std::string> prompts{"512"}, generations{"128"}, depths{"0"}, threads{"0"}, budgets, policies{"next-use"},
      prefetch{"auto"};
  int reps = 3;
  std::string output = "md";
  std::string io = "auto";
  uint32_t queue_depth = 256;  // StreamingRequest's default
  uint32_t speculative_depth = 64;
  std::string block = "1MiB";
  std::string hot_file;
  std::string format = "fp8";
  std::string verify = "first";
  bool no_warmup = false;
  bool policy_sweep = false;
  bool keep_mispredicted = false;
  bool late_prediction = false;
  bool repeat_tokens = false;  // every run (warm-up, repetitions) feeds the same tokens
  uint64_t seed = 1;
  std::string text_file;  // tokens from this text instead of random ones (real routing)
  double read_test_seconds = 0;
  int64_t records_in_flight = 8;
  int64_t cache_slots = 0;
  bool no_verify = false;
};

std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& value : values) {
    std::stringstream in(value);
    std::string item;
    while (std::getline(in, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A --prefetch value: an engine mode, or the oracle (engine/runtime/oracle_prefetch.h) that
// replays the warm-up's routing as predictions: "oracle-next" (next layer only) or "oracle"
// (also the first MoE layer at the start of each step).
struct PrefetchChoice {
  PrefetchMode mode = PrefetchMode::kAuto;
  int oracle = 0;  // 0: none, 1: next layer, 2: next layer + first MoE layer early
  std::string name;
  bool operator==(const PrefetchChoice&) const = default;
};

std::vector<PrefetchChoice> prefetch_choices(const std::vector<std::string>& values) {
  std::vector<PrefetchChoice> out;
  for (const auto& item : split_list(values)) {
    if (item == "oracle-next" || item == "oracle") {
      out.push_back({.mode = PrefetchMode::kOn, .oracle = item == "oracle" ? 2 : 1, .name = item});
      continue;
    }
    const auto mode = parse_prefetch_mode(item);
    check(mode.has_value(), "bad --prefetch '" + item + "'", {.hint = "on, off, auto (1, 0), oracle-next or oracle"});
    out.push_back({.mode = *mode, .name = std::string(prefetch_mode_name(*mode))});
  }
  return out;
}

// "on", "off", "oracle…", or for auto the share of steps it ran with prefetch: "auto (75% on)".
std::string fmt_percent(double share) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", 100 * share);
  return text;
}

std::string prefetch_label(const PrefetchChoice& choice, const StreamingStats& stats) {
  if (choice.oracle || choice.mode != PrefetchMode::kAuto) return choice.name;
  return "auto (" + std::to_string(int(std::lround(100 * stats.prefetch_step_share()))) + "% on)";
}

std::vector<int64_t> int_list(const std::vector<std::string>& values, const char* flag) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(values)) {
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      check(used == item.size() && v >= 0, "");
      out.push_back(v);
    } catch (...) {
      throw Error(std::string("bad ") + flag + " value '" + item + "'",
                  {.hint = "non-negative integers, e.g. 128,512"});
    }
  }
  return out;
}

// Routing of the measured runs, for --policy-sweep.
class TraceRecorder final : public RoutingObserver {
 public:
  explicit TraceRecorder(RoutingTrace* trace) : trace_(trace) {}
  void on_route(int64_t layer, std::span<const int32_t> experts) override {
    if (!enabled) return;
    RoutingTrace::Step step{.layer = int32_t(layer), .experts = {experts.begin(), experts.end()}};
    std::sort(step.experts.begin(), step.experts.end());
    step.experts.erase(std::unique(step.experts.begin(), step.experts.end()), step.experts.end());
    trace_->steps.push_back(std::move(step));
  }
  bool enabled = false;

 private:
  RoutingTrace* trace_;
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}
double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

// Where test tokens come from: random ids, or consecutive tokens of a text (-f), so routing
// is that of real text; each draw continues where the last one ended (wrapping around).
class TokenSource {
 public:
  TokenSource(int64_t vocab, uint64_t seed, std::vector<int32_t> text)
      : random_(seed), token_(0, int32_t(vocab - 1)), text_(std::move(text)) {}
  int32_t next() {
    if (text_.empty()) return token_(random_);
    const int32_t id = text_[at_];
    at_ = (at_ + 1) % text_.size();
    return id;
  }
  bool from_text() const { return !text_.empty(); }

 private:
  std::mt19937_64 random_;
  std::uniform_int_distribution<int32_t> token_;
  std::vector<int32_t> text_;
  size_t at_ = 0;
};

// CPU seconds (user + system, all threads) this process has used: robust to other processes
// competing for the cores, unlike wall time.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// Bytes this process caused to be read from storage (/proc/self/io read_bytes): store reads
// and page-cache misses of the mmap path alike.
uint64_t process_read_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value)
    if (key == "read_bytes:") return value;
  return 0;
}

// What one repetition of a test cost: wall seconds, and the process's CPU seconds and storage
// read bytes over the same span (the timed part only: not the context filled before it).
struct Timed {
  double seconds = 0;
  double cpu_seconds = 0;
  uint64_t read_bytes = 0;
};

// Fills `cache` with `depth` tokens (one untimed forward), calls `filled`, then times `body`.
template <typename Body>
Timed after_depth(const Model& model, KvCache& cache, int64_t depth, TokenSource& tokens,
                  const std::function<void()>& filled, Body&& body) {
  if (depth > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(depth));
    for (auto& id : ids) id = tokens.next();
    std::vector<float> logits;
    SequenceStep step{&cache, ids, false, &logits};
    model.forward(std::span(&step, 1));
  }
  if (filled) filled();
  const uint64_t read_before = process_read_bytes();
  const double cpu_before = process_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  body();
  Timed t;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  t.cpu_seconds = process_cpu_seconds() - cpu_before;
  t.read_bytes = process_read_bytes() - read_before;
  return t;
}

// One timed forward of `p` tokens after `depth` tokens of context.
Timed run_prompt(const Model& model, int64_t p, int64_t depth, TokenSource& tokens,
                 const std::function<void()>& filled) {
  KvCache cache(model.config(), depth + p);
  std::vector<int32_t> ids(static_cast<size_t>(p));
  std::vector<float> logits;
  return after_depth(model, cache, depth, tokens, filled, [&] {
    for (auto& id : ids) id = tokens.next();
    SequenceStep step{&cache, ids, false, &logits};
    model.forward(std::span(&step, 1));
  });
}

// `n` timed one-token steps after `depth` tokens of context: greedy, or teacher-forced with a text.
Timed run_generation(const Model& model, int64_t n, int64_t depth, TokenSource& tokens,
                     const std::function<void()>& filled) {
  KvCache cache(model.config(), depth + n);
  std::vector<float> logits;
  return after_depth(model, cache, depth, tokens, filled, [&] {
    int32_t next = tokens.next();
    for (int64_t i = 0; i < n; ++i) {
      SequenceStep step{&cache, std::span(&next, 1), false, &logits};
      model.forward(std::span(&step, 1));
      next = tokens.from_text() ? tokens.next()
                                : int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
  });
}

uint64_t model_file_bytes(const std::filesystem::path& dir) {
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") bytes += entry.file_size();
  return bytes;
}

// --read-test: the store's read throughput in the engine's pattern (io/store_reads.h).
void run_read_test(const BenchFlags& flags, const io::StorageOptions& storage, uint64_t block) {
  check(!flags.store.empty(), "--read-test needs --store");
  std::vector<nlohmann::json> rows;
  for (int r = 0; r < flags.reps; ++r) {
    const io::StoreReadResult result =
        io::measure_store_reads(flags.store, {.storage = storage,
                                              .block_bytes = block,
                                              .records_in_flight = flags.records_in_flight,
                                              .seconds = flags.read_test_seconds,
                                              .verify = !flags.no_verify,
                                              .seed = flags.seed + uint64_t(r)});
    rows.push_back({{"test", "read"},
                    {"backend", result.backend},
                    {"block_bytes", block},
                    {"queue_depth", storage.queue_depth},
                    {"records_in_flight", flags.records_in_flight},
                    {"verify", !flags.no_verify},
                    {"bytes", result.bytes},
                    {"seconds", result.seconds},
                    {"bytes_per_second", result.bytes_per_second()}});
  }
  if (flags.output == "json") {
    std::printf("%s\n", nlohmann::json(rows).dump(2).c_str());
    return;
  }
  std::printf(
      "| backend | block | QD | records in flight | verify | GB/s |\n|---|---:|---:|---:|---|---:|\n");
  for (const auto& row : rows)
    std::printf("| %s | %s | %u | %lld | %s | %.3f |\n", row["backend"].get<std::string>().c_str(),
                format_bytes(block).c_str(), storage.queue_depth,
                static_cast<long long>(flags.records_in_flight), flags.no_verify ? "no" : "yes",
                row["bytes_per_second"].get<double>() / 1e9);
}

void run_bench(const BenchFlags& flags) {
  check(flags.reps >= 1, "-r must be >= 1");
  check(flags.output == "md" || flags.output == "json" || flags.output == "csv",
        "-o must be md, json or csv");
  const std::vector<int64_t> prompts = int_list(flags.prompts, "-p");
  const std::vector<int64_t> generations = int_list(flags.generations, "-n");
  const std::vector<int64_t> depths = int_list(flags.depths, "-d");
  check(!depths.empty(), "-d needs at least one depth", {.hint = "0 is an empty context"});
  const std::vector<int64_t> threads_list = int_list(flags.threads, "-t");
  const std::vector<PrefetchChoice> prefetch_list = prefetch_choices(flags.prefetch);
  std::vector<uint64_t> budgets;
  for (const auto& item : split_list(flags.budgets)) {
    const auto bytes = parse_byte_size(item);
    check(bytes.has_value(), "bad --dram-budget '" + item + "'",
          {.hint = "bytes with an optional unit: 8GiB, 16GB"});
    budgets.push_back(*bytes);
  }
  if (budgets.empty()) budgets.push_back(0);
  check(!flags.store.empty() || flags.budgets.empty(), "--dram-budget needs --store",
        {.hint = "pack the model with `hetmoe pack` first"});
  std::vector<CachePolicyKind> policies;
  for (const auto& item : split_list(flags.policies)) {
    const auto policy = parse_cache_policy(item);
    check(policy.has_value(), "unknown --cache-policy '" + item + "'", {.hint = "lru, lfu or next-use"});
    policies.push_back(*policy);
  }
  const auto block = parse_byte_size(flags.block);
  check(block.has_value(), "bad --block-size '" + flags.block + "'");
  io::StorageOptions storage{.queue_depth = flags.queue_depth};
  if (flags.io == "pread")
    storage.backend = io::StorageBackend::kPread;
  else if (flags.io == "uring" || flags.io == "io_uring")
    storage.backend = io::StorageBackend::kUring;
  else
    check(flags.io == "auto", "--io must be auto, uring or pread");
  if (flags.read_test_seconds > 0) return run_read_test(flags, storage, *block);
  const Verify verify = flags.verify == "always" ? Verify::kAlways
                        : flags.verify == "off"  ? Verify::kNever
                                                 : Verify::kFirstRead;
  check(flags.verify == "always" || flags.verify == "first" || flags.verify == "off",
        "--verify must be always, first or off");
  check(!flags.model_dir.empty(), "bench needs -m MODEL (only --read-test works without one)");

  Model model(load_model_weights(flags.model_dir));
  const ModelConfig& config = model.config();
  // Resident runs (no --store) use the experts as `run --format` does: repacked into DRAM, or
  // `ref`, the checkpoint mapping (the page cache: llama.cpp's way past RAM).
  std::optional<PackedExperts> resident;
  if (flags.store.empty() && flags.format != "ref") {
    const auto format = cpu::parse_packed_format(flags.format);
    check(format.has_value(), "unknown --format " + flags.format, {.hint = "fp8, int8, int4, bf16 or ref"});
    resident.emplace(model.weights(), PackedExpertsOptions{.format = *format});
    model.set_expert_source(&*resident);
  }
  const std::vector<ExpertKey> hot =
      flags.hot_file.empty() ? std::vector<ExpertKey>{} : load_hot_experts(flags.hot_file, config);
  RoutingTrace trace{.num_layers = config.num_hidden_layers, .experts = config.n_routed_experts};
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    if (config.is_moe_layer(l)) trace.moe_layers.push_back(l);
  TraceRecorder recorder(&trace);
  if (flags.policy_sweep) model.set_routing_observer(&recorder);
  std::vector<int32_t> text_tokens;
  if (!flags.text_file.empty()) {
    text_tokens = load_tokenizer_for(flags.model_dir, config).encode(read_text_file(flags.text_file), false);
    check(!text_tokens.empty(), "no tokens in " + flags.text_file);
  }
  const int64_t max_p = prompts.empty() ? 1 : *std::max_element(prompts.begin(), prompts.end());
  const int64_t max_n = generations.empty() ? 1 : *std::max_element(generations.begin(), generations.end());
  const int64_t max_d = *std::max_element(depths.begin(), depths.end());
  const double size_gib = double(model_file_bytes(flags.model_dir)) / double(1ull << 30);
  const std::string model_name = std::filesystem::path(flags.model_dir).filename().string();

  std::vector<nlohmann::json> rows;
  for (int64_t threads : threads_list)
    for (uint64_t budget : budgets)
      for (CachePolicyKind policy : policies)
        for (const PrefetchChoice& prefetch : prefetch_list) {
          if (flags.store.empty() && (policy != policies[0] || prefetch != prefetch_list[0])) continue;
          ThreadLimit limit{int(threads)};
          std::unique_ptr<StreamingSession> session;
          if (!flags.store.empty()) {
            StreamingRequest request{.store = flags.store,
                                     .dram_budget_bytes = budget,
                                     .shape = {.sequences = 1,
                                               .context = max_d + std::max(max_p, max_n),
                                               .batch_tokens = std::max<int64_t>({max_p, max_d, 1}),
                                               .logit_rows = 1,
                                               .threads = int(threads)},
                                     .options = {.cache_slots = flags.cache_slots,
                                                 .policy = policy,
                                                 .hot = hot,
                                                 .prefetch = prefetch.mode,
                                                 .cancel_mispredicted = !flags.keep_mispredicted,
                                                 .speculative_depth = flags.speculative_depth,
                                                 .early_prediction = !flags.late_prediction,
                                                 .read_block_bytes = *block,
                                                 .verify = verify,
                                                 .threads = {.threads = int(threads)}},
                                     .storage = storage};
            session = std::make_unique<StreamingSession>(model, request);
          }
          std::optional<OraclePrefetch> oracle;  // destroyed before the session it wraps
          if (session && prefetch.oracle) {
            oracle.emplace(session->source(), trace.moe_layers.front(), prefetch.oracle == 2);
            model.set_expert_source(&*oracle);
          }
          struct Test {
            std::string name;
            int64_t size;  // > 0: a prompt of that many tokens; < 0: that many one-token steps
            int64_t depth;
          };
          std::vector<Test> tests;
          for (int64_t d : depths) {
            const std::string at = d > 0 ? " @ d" + std::to_string(d) : "";
            for (int64_t p : prompts)
              if (p > 0) tests.push_back({"pp" + std::to_string(p) + at, p, d});
            for (int64_t n : generations)
              if (n > 0) tests.push_back({"tg" + std::to_string(n) + at, -n, d});
          }
          for (const auto& [name, size, depth] : tests) {
            TokenSource random(config.vocab_size, flags.seed, text_tokens);
            // Statistics count the timed part only: reset once the context is filled.
            std::function<void()> filled;
            if (session) filled = [&] { session->source().reset_stats(); };
            auto once = [&] {
              if (flags.repeat_tokens || oracle) random = TokenSource(config.vocab_size, flags.seed, text_tokens);
              if (oracle) oracle->restart();
              return size > 0 ? run_prompt(model, size, depth, random, filled)
                              : run_generation(model, -size, depth, random, filled);
            };
            if (!flags.no_warmup) once();
            std::vector<double> tps;
            StreamingStats total;
            double seconds_total = 0, cpu_seconds = 0;
            uint64_t process_read = 0;
            recorder.enabled = true;
            for (int r = 0; r < flags.reps; ++r) {
              const Timed timed = once();
              seconds_total += timed.seconds;
              cpu_seconds += timed.cpu_seconds;
              process_read += timed.read_bytes;
              tps.push_back(double(std::abs(size)) / timed.seconds);
              if (session) {
                const StreamingStats& s = session->source().stats();
                total.lookups += s.lookups;
                total.hits += s.hits;
                total.prefetch_pending += s.prefetch_pending;
                total.misses += s.misses;
                total.bytes_read += s.bytes_read;
                total.prefetch_reads += s.prefetch_reads;
                total.prefetch_wasted += s.prefetch_wasted;
                total.prefetch_cancelled += s.prefetch_cancelled;
                total.predicted_needed += s.predicted_needed;
                total.needed_after_prediction += s.needed_after_prediction;
                total.io_wait_seconds += s.io_wait_seconds;
                total.records_verified += s.records_verified;
                total.steps += s.steps;
                total.drive_busy_seconds += s.drive_busy_seconds;
                total.prefetch_steps += s.prefetch_steps;
                total.early_predictions += s.early_predictions;
              }
            }
            recorder.enabled = false;
            const double tokens = double(std::abs(size)) * flags.reps;
            nlohmann::json row = {
                {"model", model_name},
                {"model_size_gib", size_gib},
                {"backend", session                 ? std::string(session->source().storage().backend())
                            : flags.format == "ref" ? std::string("mmap")
                                                    : "dram-" + flags.format},
                {"format",
                 session ? std::string(io::record_format_name(session->source().store().header().format))
                         : flags.format},
                {"verify", session ? flags.verify : std::string("-")},
                {"store", flags.store},
                {"dram_budget", session ? session->budget().limit_bytes() : 0},
                {"cache_slots", session ? session->source().cache_slots() : 0},
                {"cache_policy", session ? std::string(cache_policy_name(policy)) : std::string("")},
                {"prefetch", session ? prefetch.name : std::string("-")},
                {"prefetch_step_share", total.prefetch_step_share()},
                {"threads", threads},
                {"test", name},
                {"n_prompt", size > 0 ? size : 0},
                {"n_gen", size < 0 ? -size : 0},
                {"n_depth", depth},
                {"reps", flags.reps},
                {"tokens_per_second", mean(tps)},
                {"tokens_per_second_sd", stddev(tps)},
                {"samples_ts", tps},
                {"nvme_bytes_per_token", double(session ? total.bytes_read : process_read) / tokens},
                {"process_read_bytes_per_token", double(process_read) / tokens},
                {"cpu_seconds_per_token", cpu_seconds / tokens},
                {"records_verified", total.records_verified},
                {"cache_hit_rate", total.cache_hit_rate()},
                {"prefetch_recall", total.prefetch_recall()},
                {"prefetch_overfetch", total.prefetch_overfetch()},
                {"prefetch_cancelled", total.prefetch_cancelled},
                {"early_predictions", total.early_predictions},
                {"io_wait_share", seconds_total > 0 ? total.io_wait_seconds / seconds_total : 0.0},
                {"drive_busy_share", seconds_total > 0 ? total.drive_busy_seconds / seconds_total : 0.0},
                {"drive_busy_bytes_per_second",
                 total.drive_busy_seconds > 0 ? double(total.bytes_read) / total.drive_busy_seconds : 0.0},
                {"budget_peak_bytes", session ? session->budget().peak_bytes() : 0}};
            rows.push_back(row);
            if (flags.output == "md" && rows.size() == 1)
              std::printf(
                  "| model | size | backend | budget | slots | policy | pf | t | test | t/s | NVMe MB/tok | "
                  "hit %% | recall %% | over-fetch %% | I/O wait %% |\n"
                  "|---|---:|---|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
            if (flags.output == "md") {
              // A prompt predicts the union of its tokens' experts (a whole small layer), so its
              // recall and over-fetch say nothing about the predictor: shown for generation only.
              const auto percent = [&](double share) {
                return size > 0 || !session ? std::string("-") : fmt_percent(share);
              };
              std::printf(
                  "| %s | %.2f GiB | %s | %s | %lld | %s | %s | %lld | %s | %.2f ± %.2f | %.1f | %.1f | %s "
                  "| "
                  "%s | %.1f |\n",
                  model_name.c_str(), size_gib, row["backend"].get<std::string>().c_str(),
                  session ? format_bytes(session->budget().limit_bytes()).c_str() : "-",
                  static_cast<long long>(row["cache_slots"].get<int64_t>()),
                  session ? std::string(cache_policy_name(policy)).c_str() : "-",
                  session ? prefetch_label(prefetch, total).c_str() : "-", static_cast<long long>(threads), name.c_str(),
                  mean(tps), stddev(tps), row["nvme_bytes_per_token"].get<double>() / 1e6,
                  100 * total.cache_hit_rate(), percent(total.prefetch_recall()).c_str(),
                  percent(total.prefetch_overfetch()).c_str(), 100 * row["io_wait_share"].get<double>());
              std::fflush(stdout);
            }
          }
        }

  if (flags.output == "json") {
    std::printf("%s\n", nlohmann::json(rows).dump(2).c_str());
  } else if (flags.output == "csv") {
    const char* keys[] = {"model",
                          "backend",
                          "dram_budget",
                          "cache_slots",
                          "cache_policy",
                          "prefetch",
                          "threads",
                          "test",
                          "n_depth",
                          "tokens_per_second",
                          "tokens_per_second_sd",
                          "nvme_bytes_per_token",
                          "cache_hit_rate",
                          "prefetch_recall",
                          "prefetch_overfetch",
                          "io_wait_share"};
    for (size_t i = 0; i < std::size(keys); ++i) std::printf("%s%s", i ? "," : "", keys[i]);
    std::printf("\n");
    for (const auto& row : rows) {
      for (size_t i = 0; i < std::size(keys); ++i) {
        const auto& v = row[keys[i]];
        std::printf("%s%s", i ? "," : "", v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
      }
      std::printf("\n");
    }
  }

  if (flags.policy_sweep) {
    // Demand-only replay of the measured routing through each policy at several cache sizes.
    const int64_t total_experts = int64_t(trace.moe_layers.size()) * config.n_routed_experts;
    FILE* out = flags.output == "md" ? stdout : stderr;
    std::fprintf(out, "\ncache policy hit rates on this run's routing (%zu layer steps, %lld experts):\n\n",
                 trace.steps.size(), static_cast<long long>(total_experts));
    std::fprintf(out, "| cache (experts) | lru | lfu | next-use |\n|---:|---:|---:|---:|\n");
    for (double share : {0.05, 0.10, 0.20, 0.30, 0.50}) {
      const int64_t capacity = std::max<int64_t>(1, int64_t(share * double(total_experts)));
      std::fprintf(out, "| %lld (%.0f%%) | %.1f%% | %.1f%% | %.1f%% |\n", static_cast<long long>(capacity),
                   100 * share, 100 * simulate_hit_rate(trace, capacity, CachePolicyKind::kLru),
                   100 * simulate_hit_rate(trace, capacity, CachePolicyKind::kLfu),
                   100 * simulate_hit_rate(trace, capacity, CachePolicyKind::kNextUse));
    }
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd =
      app.add_subcommand("bench", "Throughput tests (llama-bench style), resident or streamed experts");
  cmd->add_option("-m,--model", f->model_dir, "Model folder (required except for --read-test)");
  cmd->add_option("--store", f->store, "Stream routed experts from this packed store (hetmoe pack)");
  cmd->add_option("--dram-budget", f->budgets, "DRAM budget(s) with --store, e.g. 8GiB (list: 4GiB,8GiB)");
  cmd->add_option("-p,--n-prompt", f->prompts, "Prompt lengths (list; 0 skips; default 512)");
  cmd->add_option("-n,--n-gen", f->generations, "Generation lengths (list; 0 skips; default 128)");
  cmd->add_option("-d,--n-depth", f->depths,
                  "Context filled before each test, untimed (list; default 0): ppP @ dD and tgN @ dD run "
                  "after a prompt of D tokens, as llama-bench's -d");
  cmd->add_option("-r,--repetitions", f->reps, "Repetitions per test (default 3)");
  cmd->add_option("-t,--threads", f->threads, "Threads (list; 0: all cores)");
  cmd->add_option("-o,--output", f->output, "Output: md (default), json, csv");
  cmd->add_option("--cache-policy", f->policies, "Expert cache policy (list): lru, lfu, next-use (default)");
  cmd->add_option("--prefetch", f->prefetch,
                  "Next-layer prefetch (list of on/off/auto, or 1/0; default auto: measures both while "
                  "decoding and keeps the faster). With --store also oracle-next / oracle: the warm-up's "
                  "routing replayed as perfect predictions (next layer / also the first MoE layer at each "
                  "step's start), the ceiling of any predictor; implies --repeat-tokens");
  cmd->add_flag("--keep-mispredicted", f->keep_mispredicted,
                "With --store: let reads of prefetched experts their layer does not use run to the end "
                "(default: withdraw the ones still queued)");
  cmd->add_flag("--late-prediction", f->late_prediction,
                "With --store: predict the next layer only after a layer is done (default: as soon as "
                "its last read is in, from the outputs computed so far)");
  cmd->add_option("--io", f->io, "Storage backend: auto (io_uring, pread fallback), uring, pread");
  cmd->add_option("--queue-depth", f->queue_depth, "Reads in the device at once (default 256)");
  cmd->add_option("--speculative-depth", f->speculative_depth,
                  "With --store: reads in the device while predicted records are read, so a rejected "
                  "prediction's queued reads can be withdrawn (default 64; = --queue-depth: no limit)");
  cmd->add_option("--block-size", f->block, "Read size (default 1MiB)");
  cmd->add_option("--cache-slots", f->cache_slots,
                  "With --store: at most this many cache slots (default: all the budget allows)");
  cmd->add_option("--hot", f->hot_file, "Experts to keep resident: a plan file or [[layer, expert], ...]");
  cmd->add_flag("--no-warmup", f->no_warmup, "Skip the warm-up run of each test");
  cmd->add_flag("--repeat-tokens", f->repeat_tokens,
                "Feed the same tokens to the warm-up and every repetition (the baseline for --prefetch oracle)");
  cmd->add_option(
      "--format", f->format,
      "Without --store: experts repacked into DRAM as fp8 (default), int8, int4, bf16, or ref (the "
      "checkpoint's mmap)");
  cmd->add_option("--verify", f->verify,
                  "With --store: check record checksums always, first (each record's first "
                  "read; default) or off");
  cmd->add_flag("--policy-sweep", f->policy_sweep,
                "Also replay the routing through each cache policy and size");
  cmd->add_option("--seed", f->seed, "Seed of the random prompt tokens");
  cmd->add_option(
      "-f,--file", f->text_file,
      "Take test tokens from this text (tokenised; tg feeds it one token at a time) instead of random ids");
  cmd->add_option("--read-test", f->read_test_seconds,
                  "Only read random records of --store for this many seconds (no model, no compute)");
  cmd->add_option("--records-in-flight", f->records_in_flight,
                  "--read-test: records read at once (default 8)");
  cmd->add_flag("--no-verify", f->no_verify, "--read-test: skip the checksum of each record");
  cmd->callback([f] { run_bench(*f); });
}

}  // namespace hetmoe::cli
