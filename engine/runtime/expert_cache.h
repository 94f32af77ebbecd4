// The DRAM expert cache: fixed slots holding expert records, plan-hot experts pinned, the
// rest replaced by a policy.
//
// Decode visits the MoE layers in a cycle, so plain LRU evicts exactly the experts whose layer
// comes next (the least recently used are the oldest layers, i.e. the next ones). Policies:
//   kLru       evict the least recently used
//   kLfu       evict the least frequently used, counts aged (×0.98 per visit of the layer)
//   kNextUse   evict the expert expected to be needed last: for an expert of layer l with an
//              aged per-token use probability p, the expected number of layer steps until its
//              next use is  d(l) + M·(1/p − 1),  d(l) = MoE layers until l comes round again,
//              M = MoE layers per token (frequency and layer distance in one estimate)
// bench/RESULTS.md (## Streaming) has the measured hit rates of each policy.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/runtime/memory_budget.h"
#include "io/aligned_buffer.h"

namespace hetmoe {

struct ExpertKey {
  int32_t layer = -1;
  int32_t expert = -1;
  bool operator==(const ExpertKey&) const = default;
};

enum class CachePolicyKind { kLru, kLfu, kNextUse };
std::string_view cache_policy_name(CachePolicyKind kind);  // "lru", "lfu", "next-use"
std::optional<CachePolicyKind> parse_cache_policy(std::string_view name);

// Use statistics per (layer, expert) and the eviction score of each policy.
class CachePolicy {
 public:
  CachePolicy(CachePolicyKind kind, int64_t num_layers, int64_t experts, std::span<const int64_t> moe_layers);

  CachePolicyKind kind() const { return kind_; }
  // Layer `layer` starts its MoE: advances the clock and the layer's visit count.
  void on_layer(int64_t layer);
  // `key` is needed by the running layer.
  void on_use(ExpertKey key);
  // Larger = evict first. Only meaningful between experts of the same cache.
  double eviction_score(ExpertKey key) const;

 private:
  double use_probability(ExpertKey key) const;
  size_t index(ExpertKey key) const { return size_t(key.layer) * size_t(experts_) + size_t(key.expert); }

  CachePolicyKind kind_;
  int64_t experts_;
  int64_t moe_layer_count_;
  std::vector<int64_t> moe_position_;  // [layer] -> position among MoE layers, -1 for dense
  std::vector<uint64_t> visits_;       // [layer] MoE runs so far
  std::vector<double> count_;          // [layer * experts + e] aged use count at count_visit_
  std::vector<uint64_t> count_visit_;  // visits_[layer] when count_ was last updated
  std::vector<uint64_t> last_use_;     // clock of the last use
  uint64_t clock_ = 0;
  int64_t current_position_ = 0;
};

// Fixed slots of `record_bytes` in one page-aligned arena, reserved in the budget.
class ExpertCache {
 public:
  enum class State : uint8_t { kEmpty, kLoading, kReady };
  struct Slot {
    uint8_t* data = nullptr;
    ExpertKey key;
    State state = State::kEmpty;
    bool pinned = false;      // plan-hot: loaded at start, never evicted
    bool prefetched = false;  // loaded by prefetch and not used yet
    bool discard = false;     // a cancelled prefetch: forgotten once its last read is in
    bool unchecked = false;   // arrived, checksum not checked yet: not evictable
    int32_t users = 0;        // tasks of the running layer that still need it
    int32_t reads_left = 0;   // chunk reads in flight
  };

  ExpertCache(int64_t num_layers, int64_t experts, std::span<const int64_t> moe_layers, int64_t slot_count,
              uint64_t record_bytes, CachePolicyKind policy, MemoryBudget& budget);

  Slot* find(ExpertKey key);
  // A slot for `key` (not cached): an empty one, else the policy's victim among slots that are
  // ready, checked, unpinned, unused by the running layer and not waiting for their prefetched
  // layer.
  // nullptr when every slot is busy. The slot comes back kLoading with `key`.
  Slot* acquire(ExpertKey key);
  // Marks `slot` as holding nothing (a failed or abandoned read).
  void forget(Slot* slot);
  // Unlists a loading slot whose record is no longer wanted: find() no longer returns it and
  // it is not acquirable until forget(), once the reads still in the device are in.
  void detach(Slot* slot);

  CachePolicy& policy() { return policy_; }
  std::span<Slot> slots() { return slots_; }
  int64_t slot_count() const { return int64_t(slots_.size()); }
  uint64_t record_bytes() const { return record_bytes_; }
  const io::AlignedBuffer& arena() const { return arena_; }
  uint64_t evictions() const { return evictions_; }

 private:
  size_t index(ExpertKey key) const { return size_t(key.layer) * size_t(experts_) + size_t(key.expert); }

  int64_t experts_;
  uint64_t record_bytes_;
  BudgetReservation reservation_;
  io::AlignedBuffer arena_;
  std::vector<Slot> slots_;
  std::vector<int32_t> slot_of_;  // [layer * experts + e] -> slot or -1
  CachePolicy policy_;
  uint64_t evictions_ = 0;
};

// Routing of a run, one entry per MoE layer call: the distinct experts it needed.
struct RoutingTrace {
  int64_t num_layers = 0;
  int64_t experts = 0;
  std::vector<int64_t> moe_layers;
  struct Step {
    int32_t layer = 0;
    std::vector<int32_t> experts;
  };
  std::vector<Step> steps;
};

// Demand-only replay of a trace through a cache of `capacity` experts: hits / lookups.
double simulate_hit_rate(const RoutingTrace& trace, int64_t capacity, CachePolicyKind policy);

}  // namespace hetmoe
