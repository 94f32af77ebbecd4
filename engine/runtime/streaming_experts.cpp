#include "engine/runtime/streaming_experts.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/runtime/model.h"

namespace hetmoe {
namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::vector<int64_t> moe_layers_of(const ModelConfig& c) {
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) layers.push_back(l);
  return layers;
}

const FfnWeights& first_expert(const ModelWeights& weights) {
  for (const LayerWeights& layer : weights.layers)
    if (layer.is_moe && !layer.moe.experts.empty()) return layer.moe.experts[0];
  throw Error("the model has no routed experts to stream");
}

}  // namespace

std::string_view prefetch_mode_name(PrefetchMode mode) {
  switch (mode) {
    case PrefetchMode::kOff:
      return "off";
    case PrefetchMode::kOn:
      return "on";
    case PrefetchMode::kAuto:
      return "auto";
  }
  return "unknown";
}

std::optional<PrefetchMode> parse_prefetch_mode(std::string_view name) {
  if (name == "0") return PrefetchMode::kOff;
  if (name == "1") return PrefetchMode::kOn;
  for (auto mode : {PrefetchMode::kOff, PrefetchMode::kOn, PrefetchMode::kAuto})
    if (prefetch_mode_name(mode) == name) return mode;
  return std::nullopt;
}

std::vector<BudgetReservation> reserve_run_memory(MemoryBudget& budget, const ModelWeights& weights,
                                                  const RunShape& run, uint64_t record_bytes) {
  const ModelConfig& c = weights.config;
  const int threads = run.threads > 0 ? run.threads : int(std::thread::hardware_concurrency());
  const uint64_t weight_bytes = non_expert_weight_bytes(weights);
  const uint64_t kv_bytes = uint64_t(run.sequences) * kv_cache_bytes(c, run.context);
  const uint64_t activation_bytes =
      forward_activation_bytes(c, run.batch_tokens, run.context, run.logit_rows, threads);
  const uint64_t needed = weight_bytes + kv_bytes + activation_bytes + record_bytes;
  if (budget.limit_bytes() > 0 && budget.used_bytes() + needed > budget.limit_bytes())
    throw Error("--dram-budget " + std::to_string(budget.limit_bytes()) + " (" +
                    format_bytes(budget.limit_bytes()) + ") is too small: this run needs at least " +
                    std::to_string(budget.used_bytes() + needed) + " bytes (" +
                    format_bytes(budget.used_bytes() + needed) + "): non-expert weights " +
                    format_bytes(weight_bytes) + ", KV cache " + format_bytes(kv_bytes) + ", activations " +
                    format_bytes(activation_bytes) + ", one expert record " + format_bytes(record_bytes),
                {.hint = "raise --dram-budget, or lower --ctx / the batch"});
  std::vector<BudgetReservation> reservations;
  reservations.emplace_back(budget, weight_bytes, "non-expert weights");
  reservations.emplace_back(budget, kv_bytes, "kv cache");
  reservations.emplace_back(budget, activation_bytes, "activations");
  return reservations;
}

StreamingExperts::StreamingExperts(const ModelWeights& weights, std::unique_ptr<io::Storage> storage,
                                   MemoryBudget& budget, StreamingOptions options)
    : weights_(weights),
      options_(std::move(options)),
      index_(io::StoreIndex::read(*storage)),
      threads_(options_.threads),
      runner_(&threads_, cpu::active_isa()) {
  const ModelConfig& c = weights.config;
  const io::StoreHeader& header = index_.header();
  check_store_matches_model(header, index_.path(), identify_model(weights, {}), c);
  const ExpertRecordLayout layout = expert_record_layout(header.format, first_expert(weights));
  check(layout.parts == header.parts && layout.record_bytes == header.record_bytes,
        "the store's record layout is not the one this hetmoe computes for its format " +
            std::string(io::record_format_name(header.format)),
        {.path = index_.path(), .hint = "re-pack the model with this hetmoe's `hetmoe pack`"});
  const std::vector<int64_t> moe_layers = moe_layers_of(c);
  for (int64_t l : moe_layers)
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      check(index_.find(l, e) != nullptr,
            "the store has no record for layer " + std::to_string(l) + ", expert " + std::to_string(e),
            {.path = index_.path(), .hint = "re-pack the model"});

  const uint64_t record = header.record_bytes;
  const int64_t hot = int64_t(options_.hot.size());
  int64_t slots = options_.cache_slots;
  if (slots <= 0) {
    const uint64_t available = budget.available_bytes();
    const uint64_t total_experts = uint64_t(moe_layers.size()) * uint64_t(c.n_routed_experts);
    slots = int64_t(std::min<uint64_t>(available / record, total_experts)) - hot;
  }
  if (slots < 1) {
    // Say exactly how much is missing: one streaming slot plus the pinned experts.
    budget.reserve(uint64_t(hot + 1) * record, "expert cache (" + std::to_string(hot) +
                                                   " pinned + 1 streaming slot of " + format_bytes(record) +
                                                   ")");
  }
  cache_ = std::make_unique<ExpertCache>(c.num_hidden_layers, c.n_routed_experts, moe_layers, hot + slots,
                                         record, options_.policy, budget);
  storage_ = std::move(storage);
  const io::BufferRegion region{cache_->arena().data(), cache_->arena().size()};
  storage_->register_buffers(std::span(&region, 1));

  const uint64_t block =
      std::max<uint64_t>(io::kRecordAlignment, io::round_up(options_.read_block_bytes, io::kRecordAlignment));
  chunks_per_record_ = int64_t((record + block - 1) / block);
  ops_.resize(size_t(cache_->slot_count() * chunks_per_record_));
  task_of_slot_.assign(size_t(cache_->slot_count()), -1);
  predicted_.assign(size_t(c.num_hidden_layers), std::vector<uint8_t>(size_t(c.n_routed_experts), 0));
  has_prediction_.assign(size_t(c.num_hidden_layers), 0);
  verified_.assign(size_t(c.num_hidden_layers * c.n_routed_experts), 0);
  for (int64_t s = 0; s < cache_->slot_count(); ++s) {
    for (int64_t k = 0; k < chunks_per_record_; ++k) {
      io::ReadOp& op = ops_[size_t(s * chunks_per_record_ + k)];
      op.length = std::min<uint64_t>(block, record - uint64_t(k) * block);
      op.tag = uint64_t(s);
    }
  }

  // Plan-hot experts: read now, pinned for the whole run.
  for (const ExpertKey key : options_.hot) {
    check(key.layer >= 0 && key.layer < c.num_hidden_layers && c.is_moe_layer(key.layer) && key.expert >= 0 &&
              key.expert < c.n_routed_experts,
          "hot expert (layer " + std::to_string(key.layer) + ", expert " + std::to_string(key.expert) +
              ") is not a routed expert of this model");
    if (cache_->find(key) != nullptr) continue;
    Slot* slot = cache_->acquire(key);
    slot->pinned = true;
    start_reads(slot);
  }
  try {
    while (io::ReadOp* op = storage_->wait(true)) complete(op);
    verify_all();
  } catch (...) {
    abandon();
    throw;
  }
  stats_ = {};
}

StreamingExperts::~StreamingExperts() {
  if (storage_) abandon();
}

void StreamingExperts::start_reads(Slot* slot) {
  const io::RecordEntry* entry = index_.find(slot->key.layer, slot->key.expert);
  const int64_t s = slot_index(slot);
  slot->reads_left = int32_t(chunks_per_record_);
  if (!drive_busy_) {
    drive_busy_ = true;
    drive_busy_since_ = Clock::now();
  }
  const uint64_t block = ops_[size_t(s * chunks_per_record_)].length;
  for (int64_t k = 0; k < chunks_per_record_; ++k) {
    io::ReadOp& op = ops_[size_t(s * chunks_per_record_ + k)];
    op.offset = entry->offset + uint64_t(k) * block;
    op.buffer = slot->data + uint64_t(k) * block;
    storage_->submit(&op);
  }
}

void StreamingExperts::note_drive_idle() {
  if (!drive_busy_ || storage_->in_flight() > 0) return;
  drive_busy_ = false;
  stats_.drive_busy_seconds += seconds(drive_busy_since_);
}

int64_t StreamingExperts::complete(io::ReadOp* op) {
  note_drive_idle();
  Slot& slot = cache_->slots()[size_t(op->tag)];
  if (slot.discard) {
    // A cancelled prefetch: its data is not wanted, so neither is a failure of its read (the
    // record is read again, and checked, if a layer needs it).
    stats_.bytes_read += op->done;
    if (--slot.reads_left == 0) cache_->forget(&slot);
    return -1;
  }
  const io::RecordEntry* entry = index_.find(slot.key.layer, slot.key.expert);
  if (op->error != 0)
    throw Error(io::describe_read_error(*storage_, *op) + " while reading " +
                io::describe_record(index_.path(), *entry));
  stats_.bytes_read += op->done;
  if (--slot.reads_left > 0) return -1;
  const uint8_t verified =
      verified_[size_t(slot.key.layer) * size_t(weights_.config.n_routed_experts) + size_t(slot.key.expert)];
  if (options_.verify == Verify::kAlways || (options_.verify == Verify::kFirstRead && !verified)) {
    slot.unchecked = true;
    unverified_.push_back({&slot, slot.key});
  }
  slot.state = ExpertCache::State::kReady;
  ++stats_.records_read;
  return task_of_slot_[size_t(op->tag)];
}

bool StreamingExperts::verify_one() {
  while (!unverified_.empty()) {
    const auto [slot, key] = unverified_.front();
    unverified_.pop_front();
    // Evicted (or forgotten) before it was checked: it was never computed with.
    if (!(slot->key == key) || !slot->unchecked) continue;
    try {
      index_.verify(*index_.find(key.layer, key.expert), slot->data);
    } catch (...) {
      cache_->forget(slot);  // the next use reads it again
      throw;
    }
    slot->unchecked = false;
    verified_[size_t(key.layer) * size_t(weights_.config.n_routed_experts) + size_t(key.expert)] = 1;
    ++stats_.records_verified;
    return true;
  }
  return false;
}

void StreamingExperts::verify_all() {
  while (verify_one()) {
  }
}

void StreamingExperts::cancel_prefetch(Slot* slot) {
  if (slot->state != ExpertCache::State::kLoading) return;
  const uint64_t withdrawn = storage_->cancel_queued(uint64_t(slot_index(slot)));
  if (withdrawn == 0) return;
  note_drive_idle();
  ++stats_.prefetch_cancelled;
  slot->reads_left -= int32_t(withdrawn);
  if (slot->reads_left == 0) {
    cache_->forget(slot);
  } else {
    cache_->detach(slot);
  }
}

void StreamingExperts::abandon() {
  while (storage_->in_flight() > 0) {
    if (storage_->wait(true) == nullptr) break;
  }
  note_drive_idle();
  for (Slot& slot : cache_->slots()) {
    if (slot.state == ExpertCache::State::kLoading) cache_->forget(&slot);
    slot.users = 0;
    slot.prefetched = false;
  }
  prefetched_.clear();
  std::fill(task_of_slot_.begin(), task_of_slot_.end(), -1);
  // Records that arrived but were never checked: forgotten, so nothing unchecked is used.
  for (const auto& [slot, key] : unverified_)
    if (slot->key == key) cache_->forget(slot);
  unverified_.clear();
}

void StreamingExperts::compute(int64_t layer, std::span<const ExpertTask> tasks,
                               std::span<const int64_t> batch) {
  const io::StoreHeader& h = index_.header();
  auto slot_of = [&](int64_t i) { return cache_->find({int32_t(layer), tasks[size_t(i)].expert}); };
  if (!is_packed_format(h.format)) {
    for (int64_t i : batch)
      ffn_forward(bind_shipped_record(weights_.config, h.parts, slot_of(i)->data), tasks[size_t(i)].x,
                  tasks[size_t(i)].tokens, tasks[size_t(i)].out);
    return;
  }
  batch_ffn_.clear();
  batch_tasks_.clear();
  for (int64_t i : batch) batch_ffn_.push_back(bind_packed_record(h.format, h.parts, slot_of(i)->data));
  for (size_t b = 0; b < batch.size(); ++b) {
    const ExpertTask& task = tasks[size_t(batch[b])];
    batch_tasks_.push_back({.ffn = &batch_ffn_[b], .x = task.x, .tokens = task.tokens, .out = task.out});
  }
  runner_.run(batch_tasks_);
}

void StreamingExperts::run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) {
  const auto start = Clock::now();
  cache_->policy().on_layer(layer);

  // Judge this layer's prediction: which needed experts it named, which reads it wasted.
  if (has_prediction_[size_t(layer)]) {
    stats_.needed_after_prediction += tasks.size();
    for (const ExpertTask& task : tasks)
      stats_.predicted_needed += predicted_[size_t(layer)][size_t(task.expert)];
    std::fill(predicted_[size_t(layer)].begin(), predicted_[size_t(layer)].end(), 0);
    has_prediction_[size_t(layer)] = 0;
  }
  std::vector<uint8_t> needed(size_t(weights_.config.n_routed_experts), 0);
  for (const ExpertTask& task : tasks) needed[size_t(task.expert)] = 1;
  // Mispredicted records still being read give their place in the drive's queue to this
  // layer's misses; the others become ordinary cached experts.
  std::erase_if(prefetched_, [&](const Slot* slot) {
    if (slot->key.layer != layer) return false;
    Slot* s = const_cast<Slot*>(slot);
    s->prefetched = false;
    if (!needed[size_t(slot->key.expert)]) {
      ++stats_.prefetch_wasted;
      if (options_.cancel_mispredicted) cancel_prefetch(s);
    }
    return true;
  });
  // Nothing speculative left in flight: every read from here on is wanted, so all may be in
  // the device at once.
  if (prefetched_.empty()) storage_->set_depth_limit(storage_->queue_depth());

  try {
    std::deque<int64_t> ready;    // tasks whose expert is in DRAM
    std::deque<int64_t> missing;  // tasks waiting for a free slot
    for (size_t i = 0; i < tasks.size(); ++i) {
      const ExpertKey key{int32_t(layer), tasks[i].expert};
      ++stats_.lookups;
      cache_->policy().on_use(key);
      Slot* slot = cache_->find(key);
      if (slot == nullptr) {
        ++stats_.misses;
        missing.push_back(int64_t(i));
        continue;
      }
      ++slot->users;
      task_of_slot_[size_t(slot_index(slot))] = int64_t(i);
      if (slot->state == ExpertCache::State::kReady) {
        ++stats_.hits;
        ready.push_back(int64_t(i));
      } else {
        ++stats_.prefetch_pending;
      }
    }

    auto issue_missing = [&] {
      while (!missing.empty()) {
        const int64_t i = missing.front();
        Slot* slot = cache_->acquire({int32_t(layer), tasks[size_t(i)].expert});
        if (slot == nullptr) return;
        missing.pop_front();
        slot->users = 1;
        task_of_slot_[size_t(slot_index(slot))] = i;
        start_reads(slot);
      }
      storage_->flush();
    };
    issue_missing();
    if (work.alongside) work.alongside();  // the shared expert, while this layer's reads are in flight
    std::vector<uint8_t> done(tasks.size(), 0);
    bool told_idle = !work.drive_idle || !options_.early_prediction;

    size_t remaining = tasks.size();
    while (remaining > 0) {
      // Take whatever reads have landed, without waiting.
      while (io::ReadOp* op = storage_->wait(false)) {
        const int64_t task = complete(op);
        if (task >= 0) ready.push_back(task);
      }
      if (!told_idle && missing.empty() && storage_->in_flight() == 0) {
        // Every read of this layer is in, experts are left to compute: the next layer's
        // predicted reads can start now instead of after them.
        told_idle = true;
        ++stats_.early_predictions;
        work.drive_idle(done);
        continue;
      }
      if (!ready.empty()) {
        // Everything that is ready in one kernel call; one at a time while experts wait for a
        // slot, so each computed expert frees its slot for the next read as early as possible.
        std::vector<int64_t> batch;
        while (!ready.empty() && (batch.empty() || missing.empty())) {
          batch.push_back(ready.front());
          ready.pop_front();
        }
        compute(layer, tasks, batch);
        for (int64_t i : batch) {
          Slot* slot = cache_->find({int32_t(layer), tasks[size_t(i)].expert});
          --slot->users;
          task_of_slot_[size_t(slot_index(slot))] = -1;
          done[size_t(i)] = 1;
        }
        remaining -= batch.size();
        if (!missing.empty()) {
          // Freed slots take the next reads, once what they held is checked.
          verify_all();
          issue_missing();
        }
        continue;
      }
      if (storage_->in_flight() == 0) {
        // Nothing to compute and nothing being read: every slot is held by predictions for
        // later layers. Release them and try again.
        for (const Slot* slot : prefetched_) const_cast<Slot*>(slot)->prefetched = false;
        prefetched_.clear();
        verify_all();
        issue_missing();
        check(storage_->in_flight() > 0, "expert cache deadlock: no slot can take layer " +
                                             std::to_string(layer) + "'s experts (all pinned?)");
        continue;
      }
      // Idle until a read lands: check an arrived record meanwhile.
      if (verify_one()) continue;
      const auto wait_start = Clock::now();
      io::ReadOp* op = storage_->wait(true);
      stats_.io_wait_seconds += seconds(wait_start);
      if (op != nullptr) {
        const int64_t task = complete(op);
        if (task >= 0) ready.push_back(task);
      }
    }
    // Every record this layer computed with is checked before its outputs are used.
    verify_all();
  } catch (...) {
    abandon();
    stats_.run_seconds += seconds(start);
    throw;
  }
  stats_.run_seconds += seconds(start);
}

void StreamingExperts::begin_step(int64_t rows) {
  const auto now = Clock::now();
  if (step_rows_ > 0 && options_.prefetch == PrefetchMode::kAuto)
    tuner_.on_step(std::chrono::duration<double>(now - step_start_).count(), step_rows_);
  step_start_ = now;
  step_rows_ = rows;
  ++stats_.steps;
  if (wants_prefetch()) ++stats_.prefetch_steps;
}

void StreamingExperts::prefetch(int64_t layer, std::span<const int32_t> experts) {
  if (!wants_prefetch() || layer < 0 || layer >= weights_.config.num_hidden_layers) return;
  has_prediction_[size_t(layer)] = 1;
  // Never let predictions take more than half the streaming slots: the rest stays a cache.
  const size_t limit =
      size_t(std::max<int64_t>(1, (cache_->slot_count() - int64_t(options_.hot.size())) / 2));
  storage_->set_depth_limit(options_.speculative_depth);
  bool room = true;  // a slot was free for the last prediction (the running layer holds its own)
  try {
    for (int32_t e : experts) {
      if (e < 0 || e >= weights_.config.n_routed_experts) continue;
      predicted_[size_t(layer)][size_t(e)] = 1;
      const ExpertKey key{int32_t(layer), e};
      if (!room || cache_->find(key) != nullptr || prefetched_.size() >= limit) continue;
      Slot* slot = cache_->acquire(key);
      room = slot != nullptr;
      if (!room) continue;
      slot->prefetched = true;
      prefetched_.push_back(slot);
      ++stats_.prefetch_reads;
      start_reads(slot);
    }
    storage_->flush();
  } catch (...) {
    abandon();
    throw;
  }
}

// --- session ----------------------------------------------------------------------------------

std::vector<ExpertKey> load_hot_experts(const std::filesystem::path& path, const ModelConfig& config) {
  std::ifstream in(path);
  check(bool(in), "cannot open the hot-expert list", {.path = path.string()});
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("not valid JSON: ") + e.what(), {.path = path.string()});
  }
  return hot_experts_from_json(doc, config, path);
}

std::vector<ExpertKey> hot_experts_from_json(const nlohmann::json& doc, const ModelConfig& config,
                                             const std::filesystem::path& path) {
  std::vector<ExpertKey> hot;
  const auto add = [&](int64_t layer, int64_t expert) {
    check(layer >= 0 && layer < config.num_hidden_layers && config.is_moe_layer(layer) && expert >= 0 &&
              expert < config.n_routed_experts,
          "(layer " + std::to_string(layer) + ", expert " + std::to_string(expert) +
              ") is not a routed expert of this model",
          {.path = path.string()});
    hot.push_back({int32_t(layer), int32_t(expert)});
  };
  try {
    if (doc.is_object() && doc.contains("layers")) {
      const std::vector<int64_t> moe_layers = moe_layers_of(config);
      for (const auto& entry : doc.at("layers")) {
        const int64_t m = entry.at("moe_layer").get<int64_t>();
        check(m >= 0 && m < int64_t(moe_layers.size()), "moe_layer " + std::to_string(m) + " is out of range",
              {.path = path.string(), .hint = "a plan made for another model?"});
        for (const char* tier : {"gpu", "dram"})
          if (entry.contains(tier))
            for (const auto& e : entry.at(tier)) add(moe_layers[size_t(m)], e.get<int64_t>());
      }
    } else {
      check(doc.is_array(), "expected a plan file or a list of [layer, expert] pairs",
            {.path = path.string()});
      for (const auto& pair : doc) add(pair.at(0).get<int64_t>(), pair.at(1).get<int64_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("unexpected JSON: ") + e.what(), {.path = path.string()});
  }
  return hot;
}

std::unique_ptr<StreamingSession> open_streaming_session(Model& model, const std::string& store,
                                                         const std::string& dram_budget,
                                                         const RunShape& shape,
                                                         std::vector<ExpertKey> hot,
                                                         const std::string& prefetch) {
  if (store.empty()) {
    check(dram_budget.empty(), "--dram-budget needs --store",
          {.hint = "pack the model's experts with `hetmoe pack -m MODEL -o STORE` and pass --store STORE"});
    return nullptr;
  }
  StreamingRequest request{.store = store, .shape = shape};
  request.options.threads.threads = shape.threads;
  request.options.hot = std::move(hot);
  const auto mode = parse_prefetch_mode(prefetch);
  check(mode.has_value(), "bad --prefetch '" + prefetch + "'", {.hint = "on, off or auto"});
  request.options.prefetch = *mode;
  if (!dram_budget.empty()) {
    const auto bytes = parse_byte_size(dram_budget);
    check(bytes.has_value(), "bad --dram-budget '" + dram_budget + "'",
          {.hint = "bytes with an optional unit: 16GiB, 8GB, 1048576"});
    request.dram_budget_bytes = *bytes;
  }
  return std::make_unique<StreamingSession>(model, request);
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "MemAvailable:") return value * 1024;
  return 0;
}

StreamingSession::StreamingSession(Model& model, const StreamingRequest& request) : model_(&model) {
  uint64_t limit = request.dram_budget_bytes;
  if (limit == 0) limit = available_memory_bytes() / 10 * 8;
  budget_ = std::make_unique<MemoryBudget>(limit);
  auto storage = io::open_storage(request.store, request.storage);
  const uint64_t record = io::StoreIndex::read(*storage).header().record_bytes;
  reservations_ = reserve_run_memory(*budget_, model.weights(), request.shape, record);
  source_ =
      std::make_unique<StreamingExperts>(model.weights(), std::move(storage), *budget_, request.options);
  model.set_expert_source(source_.get());
}

StreamingSession::~StreamingSession() {
  model_->set_expert_source(nullptr);
}

std::string StreamingSession::summary() const {
  const StreamingStats& s = source_->stats();
  std::string prefetch(prefetch_mode_name(source_->options().prefetch));
  if (source_->options().prefetch == PrefetchMode::kAuto)
    prefetch += " (on in " + std::to_string(int(std::lround(100 * s.prefetch_step_share()))) + "% of steps)";
  char text[512];
  std::snprintf(
      text, sizeof text,
      "streamed %s from %s (%s): cache %lld x %s (%lld pinned), hit rate %.1f%%, prefetch %s, "
      "recall %.1f%%, over-fetch %.1f%%, I/O wait %.2f s; budget %s",
      format_bytes(s.bytes_read).c_str(), source_->store().path().c_str(),
      std::string(source_->storage().backend()).c_str(), static_cast<long long>(source_->cache_slots()),
      format_bytes(source_->record_bytes()).c_str(), static_cast<long long>(source_->pinned_count()), 100 * s.cache_hit_rate(),
      prefetch.c_str(), 100 * s.prefetch_recall(),
      100 * s.prefetch_overfetch(), s.io_wait_seconds, budget_->describe().c_str());
  return text;
}

}  // namespace hetmoe
