// Routed experts streamed from a packed expert store (docs/STREAMING.md): the ExpertSource
// that lets a model larger than DRAM run at the speed of the drive.
//
// Per MoE layer, run(layer, tasks):
//   1. experts already in the cache (or being read by a prefetch) are taken as they are;
//      reads for the missing ones go out at once, each record as `read_block_bytes` reads
//      straight into its cache slot (O_DIRECT, no staging copy);
//   2. the CPU computes the resident experts while those reads are in flight, polling for
//      completions between experts, and computes each streamed expert as its last read lands;
//      arrived records have their XXH3-64 checked while the CPU would otherwise wait for the
//      drive, and always before run() returns (so a corrupt record never reaches the output);
//   3. when the layer needs more experts than the cache has free slots, slots freed by computed
//      experts take the next reads (so even a one-slot cache works, slowly).
// prefetch(layer, experts) — called by Model with layer+1's gate applied to this layer's
// output — reads the predicted experts early, into slots protected until that layer runs;
// when the layer's router then rejects one, its reads still queued are withdrawn. Whether it
// is asked for is PrefetchMode: on, off, or auto (the default: PrefetchTuner measures both).
//
// Each task writes its own output and Model combines them in a fixed order, so results are
// bitwise those of the resident model whatever the cache, the timing or the backend.
// A failed read, a short file or a checksum mismatch throws hetmoe::Error naming the record;
// the reads still in flight are drained first, so the source stays usable and nothing hangs.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cpu/threads.h"
#include "engine/runtime/expert_cache.h"
#include "engine/runtime/expert_source.h"
#include "engine/runtime/expert_store.h"
#include "engine/runtime/memory_budget.h"
#include "engine/runtime/prefetch_tuner.h"
#include "io/storage.h"

namespace hetmoe {

// When a record's XXH3-64 is checked as it arrives. kFirstRead checks each record the first
// time this source reads it (a corrupt or mismatched store is caught on first use; a record
// that failed stays unchecked and fails again) and trusts re-reads, which saves a core's worth
// of hashing at NVMe speed on small machines; kAlways checks every read.
enum class Verify { kAlways, kFirstRead, kNever };

// Next-layer prefetch: always, never, or whichever PrefetchTuner measures faster.
enum class PrefetchMode { kOff, kOn, kAuto };
std::string_view prefetch_mode_name(PrefetchMode mode);  // "off", "on", "auto"
std::optional<PrefetchMode> parse_prefetch_mode(std::string_view name);  // also "0", "1"

struct StreamingOptions {
  int64_t cache_slots = 0;  // 0: every slot the budget has room for
  CachePolicyKind policy = CachePolicyKind::kNextUse;
  std::vector<ExpertKey> hot;           // plan-hot experts: loaded at start, never evicted
  PrefetchMode prefetch = PrefetchMode::kAuto;  // ask Model for next-layer predictions
  bool cancel_mispredicted = true;      // withdraw queued reads of predictions the router rejects
  // Reads let into the device while predicted records are being read (the rest stay queued,
  // so a prediction the router rejects can still be withdrawn); once a layer's router has
  // judged them, every read is wanted and the store's whole queue depth is used.
  uint32_t speculative_depth = 64;
  // Let Model predict the next layer as soon as this layer's last read is in (from the outputs
  // computed so far) rather than after the layer: the drive does not wait for its last experts.
  bool early_prediction = true;
  uint64_t read_block_bytes = 1 << 20;  // one record = reads of this size (the I/O block size)
  Verify verify = Verify::kFirstRead;
  cpu::ThreadOptions threads;  // the expert kernels' arena (packed formats)
};

struct StreamingStats {
  uint64_t lookups = 0;           // (layer, expert) needed by run()
  uint64_t hits = 0;              // ... found ready in DRAM (cache, pinned, or a finished prefetch)
  uint64_t prefetch_pending = 0;  // ... found still being read by a prefetch
  uint64_t misses = 0;            // ... read on demand
  uint64_t bytes_read = 0;        // from the store
  uint64_t records_read = 0;
  uint64_t records_verified = 0;         // ... whose checksum was checked
  uint64_t prefetch_reads = 0;           // records read because of a prediction
  uint64_t prefetch_wasted = 0;          // ... that their layer then did not use
  uint64_t prefetch_cancelled = 0;       // ... of those, whose queued reads were withdrawn
  uint64_t predicted_needed = 0;         // experts a layer needed that had been predicted for it
  uint64_t needed_after_prediction = 0;  // experts needed by layers that had a prediction
  uint64_t early_predictions = 0;        // layers that let Model predict the next one while computing
  uint64_t steps = 0;                    // forward passes
  uint64_t prefetch_steps = 0;           // ... that asked for next-layer predictions
  double io_wait_seconds = 0;            // the CPU blocked waiting for a read
  double drive_busy_seconds = 0;         // reads in flight (from the first submitted to the last in)
  double run_seconds = 0;                // inside run()
  double cache_hit_rate() const { return lookups ? double(hits) / double(lookups) : 0.0; }
  double prefetch_step_share() const { return steps ? double(prefetch_steps) / double(steps) : 0.0; }
  double prefetch_recall() const {
    return needed_after_prediction ? double(predicted_needed) / double(needed_after_prediction) : 0.0;
  }
  double prefetch_overfetch() const {
    return prefetch_reads ? double(prefetch_wasted) / double(prefetch_reads) : 0.0;
  }
};

// What a streamed run holds besides the expert cache, for reserve_run_memory().
struct RunShape {
  int64_t sequences = 1;       // KV caches
  int64_t context = 4096;      // positions per KV cache
  int64_t batch_tokens = 512;  // most rows one forward pass processes (all sequences together)
  int64_t logit_rows = 1;      // logit rows one forward pass returns
  int threads = 0;             // worker threads (0: all cores)
};

// Reserves the non-expert weights, the KV caches and the forward pass's activations of a run
// in `budget`. When the budget cannot hold them plus one expert record of `record_bytes`,
// throws hetmoe::Error saying how many bytes are needed and what for.
std::vector<BudgetReservation> reserve_run_memory(MemoryBudget& budget, const ModelWeights& weights,
                                                  const RunShape& run, uint64_t record_bytes);

class StreamingExperts final : public ExpertSource {
 public:
  // Opens the store behind `storage`, checks it was packed from `weights`' model with a
  // layout this build reads, and reserves the cache in `budget` (after whatever the caller
  // reserved already: weights, KV cache, activations). Throws hetmoe::Error when the store
  // does not match or the budget cannot hold one record.
  StreamingExperts(const ModelWeights& weights, std::unique_ptr<io::Storage> storage, MemoryBudget& budget,
                   StreamingOptions options = {});
  ~StreamingExperts() override;

  void run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) override;
  void prefetch(int64_t layer, std::span<const int32_t> experts) override;
  bool wants_prefetch() const override {
    return options_.prefetch == PrefetchMode::kOn || (options_.prefetch == PrefetchMode::kAuto && tuner_.enabled());
  }
  void begin_step(int64_t rows) override;

  const StreamingStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  const io::StoreIndex& store() const { return index_; }
  const io::Storage& storage() const { return *storage_; }
  int64_t cache_slots() const { return cache_->slot_count(); }
  int64_t pinned_count() const { return int64_t(options_.hot.size()); }  // plan-hot experts kept resident
  uint64_t record_bytes() const { return index_.header().record_bytes; }
  const StreamingOptions& options() const { return options_; }

 private:
  using Slot = ExpertCache::Slot;
  void start_reads(Slot* slot);
  // Handles one completed read; returns the task index that became computable, or -1.
  int64_t complete(io::ReadOp* op);
  // A prefetched expert its layer does not need: withdraws the record's reads still queued;
  // the slot is free at once, or when the reads already in the device are in.
  void cancel_prefetch(Slot* slot);
  // Checks the checksum of the oldest arrived record still unchecked; false when none is left.
  // Throws hetmoe::Error (and forgets the slot) on a mismatch.
  bool verify_one();
  void verify_all();  // every arrived record still unchecked
  // After a failure: waits for every read in flight and forgets the slots they were filling.
  void abandon();
  // Computes tasks[i] for every i in `batch` (their experts are ready) in one kernel call.
  void compute(int64_t layer, std::span<const ExpertTask> tasks, std::span<const int64_t> batch);
  int64_t slot_index(const Slot* slot) const { return slot - cache_->slots().data(); }

  const ModelWeights& weights_;
  StreamingOptions options_;
  io::StoreIndex index_;
  std::unique_ptr<ExpertCache> cache_;    // declared before storage_: destroyed after it
  std::unique_ptr<io::Storage> storage_;  // its destructor waits for reads into the cache
  std::vector<io::ReadOp> ops_;           // [slot * chunks + chunk]
  int64_t chunks_per_record_ = 0;
  std::vector<int64_t> task_of_slot_;            // running layer: slot -> task index waiting for it
  std::vector<std::vector<uint8_t>> predicted_;  // [layer][expert]: predicted for that layer
  std::vector<uint8_t> has_prediction_;          // [layer]
  std::vector<const Slot*> prefetched_;          // slots read by a prediction, not yet judged
  std::vector<uint8_t> verified_;                // [layer * experts + expert]: checksum passed once
  std::deque<std::pair<Slot*, ExpertKey>> unverified_;  // arrived, checksum not checked yet
  StreamingStats stats_;
  PrefetchTuner tuner_;
  std::chrono::steady_clock::time_point step_start_;
  int64_t step_rows_ = 0;  // rows of the step running (0: none yet)
  bool drive_busy_ = false;  // reads in flight since drive_busy_since_
  std::chrono::steady_clock::time_point drive_busy_since_;
  void note_drive_idle();    // after a read came in or was withdrawn
  cpu::CpuThreads threads_;
  cpu::ExpertFfnRunner runner_;
  std::vector<cpu::PackedFfn> batch_ffn_;
  std::vector<cpu::FfnTask> batch_tasks_;
};

// --- what the CLI attaches -------------------------------------------------------------------

class Model;

struct StreamingRequest {
  std::filesystem::path store;     // packed expert store
  uint64_t dram_budget_bytes = 0;  // 0: 80% of MemAvailable at start-up
  RunShape shape;
  StreamingOptions options;
  // 256 MiB of reads in the device keeps the drive busy while the CPU computes a batch of
  // cached experts (64 drained in ~30 ms at 2 GB/s); predictions use options.speculative_depth.
  io::StorageOptions storage{.queue_depth = 256};
};

// A streamed model's budget, reservations and source; attached to the model while it lives.
class StreamingSession {
 public:
  // Opens the store, reserves the run's memory and the cache in the budget, and makes `model`
  // take its routed experts from the store. Throws hetmoe::Error (budget too small, store of
  // another model, ...).
  StreamingSession(Model& model, const StreamingRequest& request);
  ~StreamingSession();  // restores the model's resident experts
  StreamingSession(const StreamingSession&) = delete;
  StreamingSession& operator=(const StreamingSession&) = delete;

  StreamingExperts& source() { return *source_; }
  const MemoryBudget& budget() const { return *budget_; }
  // "streamed 1.2 GiB from STORE (io_uring): cache 120 x 44.0 MiB, hit rate 41.2%, ..."
  std::string summary() const;

 private:
  Model* model_;
  std::unique_ptr<MemoryBudget> budget_;
  std::vector<BudgetReservation> reservations_;
  std::unique_ptr<StreamingExperts> source_;
};

// What `hetmoe run/perplexity/logits --store STORE --dram-budget N` attach: nullptr when
// `store` is empty (resident experts); else a session over `store` with the budget parsed from
// `dram_budget` ("16GiB", "8G", bytes; empty: 80% of MemAvailable). Throws hetmoe::Error for a
// malformed budget, a budget without a store, or anything StreamingSession refuses.
// `hot` experts are loaded at start and never evicted (a plan's GPU and DRAM tiers).
// `prefetch`: "on", "off", "auto" (PrefetchMode); anything else throws hetmoe::Error.
std::unique_ptr<StreamingSession> open_streaming_session(Model& model, const std::string& store,
                                                         const std::string& dram_budget,
                                                         const RunShape& shape,
                                                         std::vector<ExpertKey> hot = {},
                                                         const std::string& prefetch = "auto");

// Experts to keep resident, from a plan file (`hetmoe plan` schema hetmoe-plan/1: per MoE layer
// its "gpu" and "dram" experts — without a GPU both stay in DRAM) or a JSON list of
// [layer, expert] pairs. Throws hetmoe::Error naming the file on anything else.
std::vector<ExpertKey> load_hot_experts(const std::filesystem::path& path, const ModelConfig& config);
// The same from an already parsed document; `path` only names it in errors.
std::vector<ExpertKey> hot_experts_from_json(const nlohmann::json& doc, const ModelConfig& config,
                                             const std::filesystem::path& path);

// MemAvailable of /proc/meminfo in bytes (0 if unknown).
uint64_t available_memory_bytes();

}  // namespace hetmoe
