// --dram-budget: a hard limit on the memory hetmoe allocates while streaming experts.
//
// Everything big is reserved here before it is allocated: the non-expert weights (counted in
// full as mapped, plus the FP32 copies the forward pass keeps), the KV cache, an upper bound
// of the forward pass's activations, the expert cache slots and the staging they double as.
// A reservation that would pass the limit throws hetmoe::Error naming what asked, how much,
// what is already used and the limit, so a run fails at start-up, never half-way.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "engine/model/config.h"
#include "engine/model/footprint.h"

namespace hetmoe {

struct ModelWeights;

class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t limit_bytes);  // 0: no limit (accounting only)
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  void reserve(uint64_t bytes, std::string_view what);
  void release(uint64_t bytes, std::string_view what);

  uint64_t limit_bytes() const { return limit_bytes_; }
  uint64_t used_bytes() const;
  uint64_t peak_bytes() const;
  uint64_t available_bytes() const;  // limit - used (UINT64_MAX without a limit)
  // "weights 1.20 GiB, kv cache 64.0 MiB, ... = 3.10 GiB of 4.00 GiB (peak 3.10 GiB)"
  std::string describe() const;

 private:
  mutable std::mutex mutex_;
  uint64_t limit_bytes_;
  uint64_t used_ = 0;
  uint64_t peak_ = 0;
  std::map<std::string, uint64_t, std::less<>> by_what_;
};

// A reservation released when it goes out of scope.
class BudgetReservation {
 public:
  BudgetReservation() = default;
  BudgetReservation(MemoryBudget& budget, uint64_t bytes, std::string what);
  ~BudgetReservation();
  BudgetReservation(BudgetReservation&& other) noexcept;
  BudgetReservation& operator=(BudgetReservation&& other) noexcept;
  uint64_t bytes() const { return bytes_; }

 private:
  MemoryBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
  std::string what_;
};

// Non-expert weights as the forward pass holds them: every checkpoint tensor except routed
// experts (mapped; counted in full whether paged in or not) plus the FP32 copies (norms,
// routers, score biases, kv_b for the absorbed attention).
uint64_t non_expert_weight_bytes(const ModelWeights& weights);

// "1.50 GiB"
std::string format_bytes(uint64_t bytes);

}  // namespace hetmoe
