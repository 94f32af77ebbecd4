#include "engine/runtime/expert_cache.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

// Age factor of the use counts per visit of their layer: ~50 tokens of memory, so the counts
// follow a change of topic without forgetting the experts a layer always uses.
constexpr double kAging = 0.98;

}  // namespace

std::string_view cache_policy_name(CachePolicyKind kind) {
  switch (kind) {
    case CachePolicyKind::kLru:
      return "lru";
    case CachePolicyKind::kLfu:
      return "lfu";
    case CachePolicyKind::kNextUse:
      return "next-use";
  }
  return "unknown";
}

std::optional<CachePolicyKind> parse_cache_policy(std::string_view name) {
  for (auto kind : {CachePolicyKind::kLru, CachePolicyKind::kLfu, CachePolicyKind::kNextUse})
    if (cache_policy_name(kind) == name) return kind;
  return std::nullopt;
}

// --- policy -------------------------------------------------------------------------------------

CachePolicy::CachePolicy(CachePolicyKind kind, int64_t num_layers, int64_t experts,
                         std::span<const int64_t> moe_layers)
    : kind_(kind),
      experts_(experts),
      moe_layer_count_(std::max<int64_t>(1, int64_t(moe_layers.size()))),
      moe_position_(size_t(num_layers), -1),
      visits_(size_t(num_layers), 0),
      count_(size_t(num_layers * experts), 0.0),
      count_visit_(size_t(num_layers * experts), 0),
      last_use_(size_t(num_layers * experts), 0) {
  for (size_t i = 0; i < moe_layers.size(); ++i) moe_position_[size_t(moe_layers[i])] = int64_t(i);
}

void CachePolicy::on_layer(int64_t layer) {
  ++visits_[size_t(layer)];
  current_position_ = std::max<int64_t>(0, moe_position_[size_t(layer)]);
}

void CachePolicy::on_use(ExpertKey key) {
  const size_t i = index(key);
  const uint64_t visits = visits_[size_t(key.layer)];
  count_[i] = count_[i] * std::pow(kAging, double(visits - count_visit_[i])) + 1.0;
  count_visit_[i] = visits;
  last_use_[i] = ++clock_;
}

double CachePolicy::use_probability(ExpertKey key) const {
  const size_t i = index(key);
  const uint64_t visits = visits_[size_t(key.layer)];
  if (visits == 0) return 1.0 / double(experts_);
  const double aged = count_[i] * std::pow(kAging, double(visits - count_visit_[i]));
  const double weight_of_all_visits = (1.0 - std::pow(kAging, double(visits))) / (1.0 - kAging);
  return std::clamp(aged / weight_of_all_visits, 1e-4, 1.0);
}

double CachePolicy::eviction_score(ExpertKey key) const {
  const size_t i = index(key);
  const double age = double(clock_ - last_use_[i]);
  switch (kind_) {
    case CachePolicyKind::kLru:
      return age;
    case CachePolicyKind::kLfu: {
      const uint64_t visits = visits_[size_t(key.layer)];
      const double aged = count_[i] * std::pow(kAging, double(visits - count_visit_[i]));
      return -aged + age * 1e-12;  // least frequent first; ties: least recent
    }
    case CachePolicyKind::kNextUse: {
      const int64_t m = moe_layer_count_;
      int64_t distance = (std::max<int64_t>(0, moe_position_[size_t(key.layer)]) - current_position_ + m) % m;
      if (distance == 0) distance = m;  // the running layer comes round again next token
      return double(distance) + double(m) * (1.0 / use_probability(key) - 1.0);
    }
  }
  return age;
}

// --- cache --------------------------------------------------------------------------------------

ExpertCache::ExpertCache(int64_t num_layers, int64_t experts, std::span<const int64_t> moe_layers,
                         int64_t slot_count, uint64_t record_bytes, CachePolicyKind policy,
                         MemoryBudget& budget)
    : experts_(experts),
      record_bytes_(record_bytes),
      reservation_(budget, uint64_t(slot_count) * record_bytes, "expert cache"),
      arena_(uint64_t(slot_count) * record_bytes),
      slots_(size_t(slot_count)),
      slot_of_(size_t(num_layers * experts), -1),
      policy_(policy, num_layers, experts, moe_layers) {
  check(slot_count >= 1, "the expert cache needs at least one slot");
  for (size_t s = 0; s < slots_.size(); ++s) slots_[s].data = arena_.data() + s * record_bytes;
}

ExpertCache::Slot* ExpertCache::find(ExpertKey key) {
  const int32_t s = slot_of_[index(key)];
  return s < 0 ? nullptr : &slots_[size_t(s)];
}

ExpertCache::Slot* ExpertCache::acquire(ExpertKey key) {
  Slot* chosen = nullptr;
  double worst = -INFINITY;
  for (Slot& slot : slots_) {
    if (slot.state == State::kEmpty) {
      chosen = &slot;
      break;
    }
    if (slot.state != State::kReady || slot.pinned || slot.users > 0 || slot.prefetched || slot.unchecked) continue;
    const double score = policy_.eviction_score(slot.key);
    if (score > worst) {
      worst = score;
      chosen = &slot;
    }
  }
  if (chosen == nullptr) return nullptr;
  if (chosen->state != State::kEmpty) {
    slot_of_[index(chosen->key)] = -1;
    ++evictions_;
  }
  chosen->key = key;
  chosen->state = State::kLoading;
  chosen->prefetched = false;
  chosen->users = 0;
  chosen->reads_left = 0;
  slot_of_[index(key)] = int32_t(chosen - slots_.data());
  return chosen;
}

void ExpertCache::detach(Slot* slot) {
  if (slot->key.layer >= 0) slot_of_[index(slot->key)] = -1;
  slot->key = {};
  slot->prefetched = false;
  slot->discard = true;
}

void ExpertCache::forget(Slot* slot) {
  if (slot->state != State::kEmpty && slot->key.layer >= 0) slot_of_[index(slot->key)] = -1;
  slot->state = State::kEmpty;
  slot->key = {};
  slot->pinned = slot->prefetched = slot->discard = slot->unchecked = false;
  slot->users = slot->reads_left = 0;
}

// --- simulation ---------------------------------------------------------------------------------

double simulate_hit_rate(const RoutingTrace& trace, int64_t capacity, CachePolicyKind kind) {
  CachePolicy policy(kind, trace.num_layers, trace.experts, trace.moe_layers);
  std::vector<int8_t> cached(size_t(trace.num_layers * trace.experts), 0);
  std::vector<ExpertKey> resident;
  uint64_t hits = 0, lookups = 0;
  for (const auto& step : trace.steps) {
    policy.on_layer(step.layer);
    std::vector<ExpertKey> in_use;
    for (int32_t e : step.experts) in_use.push_back({step.layer, e});
    for (const ExpertKey key : in_use) {
      ++lookups;
      const size_t i = size_t(key.layer) * size_t(trace.experts) + size_t(key.expert);
      policy.on_use(key);
      if (cached[i]) {
        ++hits;
        continue;
      }
      if (int64_t(resident.size()) < capacity) {
        resident.push_back(key);
        cached[i] = 1;
        continue;
      }
      // Victim among residents not needed by this step (as the real cache protects them).
      size_t victim = resident.size();
      double worst = -INFINITY;
      for (size_t r = 0; r < resident.size(); ++r) {
        if (std::find(in_use.begin(), in_use.end(), resident[r]) != in_use.end()) continue;
        const double score = policy.eviction_score(resident[r]);
        if (score > worst) {
          worst = score;
          victim = r;
        }
      }
      if (victim == resident.size()) continue;  // everything is in use: streamed, not cached
      cached[size_t(resident[victim].layer) * size_t(trace.experts) + size_t(resident[victim].expert)] = 0;
      resident[victim] = key;
      cached[i] = 1;
    }
  }
  return lookups == 0 ? 0.0 : double(hits) / double(lookups);
}

}  // namespace hetmoe
