#include "engine/runtime/memory_budget.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "engine/core/error.h"
#include "engine/runtime/weights.h"

namespace hetmoe {

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[48];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return text;
}

MemoryBudget::MemoryBudget(uint64_t limit_bytes) : limit_bytes_(limit_bytes) {}

void MemoryBudget::reserve(uint64_t bytes, std::string_view what) {
  std::lock_guard lock(mutex_);
  if (limit_bytes_ > 0 && (used_ + bytes > limit_bytes_ || used_ + bytes < used_)) {
    std::string used;
    for (const auto& [name, amount] : by_what_)
      if (amount > 0) used += (used.empty() ? "" : ", ") + name + " " + format_bytes(amount);
    throw Error("the DRAM budget of " + format_bytes(limit_bytes_) + " (" + std::to_string(limit_bytes_) +
                    " bytes) cannot hold " + std::string(what) + " (" + format_bytes(bytes) + ") on top of " +
                    format_bytes(used_) + " already reserved" + (used.empty() ? "" : " (" + used + ")") +
                    ": at least " + std::to_string(used_ + bytes) + " bytes are needed",
                {.hint = "raise --dram-budget"});
  }
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  auto it = by_what_.find(what);
  if (it == by_what_.end()) it = by_what_.emplace(std::string(what), 0).first;
  it->second += bytes;
}

void MemoryBudget::release(uint64_t bytes, std::string_view what) {
  std::lock_guard lock(mutex_);
  used_ -= std::min(used_, bytes);
  auto it = by_what_.find(what);
  if (it != by_what_.end()) it->second -= std::min(it->second, bytes);
}

uint64_t MemoryBudget::used_bytes() const {
  std::lock_guard lock(mutex_);
  return used_;
}

uint64_t MemoryBudget::peak_bytes() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

uint64_t MemoryBudget::available_bytes() const {
  std::lock_guard lock(mutex_);
  return limit_bytes_ == 0 ? UINT64_MAX : limit_bytes_ - std::min(used_, limit_bytes_);
}

std::string MemoryBudget::describe() const {
  std::lock_guard lock(mutex_);
  std::string text;
  for (const auto& [name, amount] : by_what_)
    if (amount > 0) text += (text.empty() ? "" : ", ") + name + " " + format_bytes(amount);
  text += " = " + format_bytes(used_);
  if (limit_bytes_ > 0) text += " of " + format_bytes(limit_bytes_);
  text += " (peak " + format_bytes(peak_) + ")";
  return text;
}

BudgetReservation::BudgetReservation(MemoryBudget& budget, uint64_t bytes, std::string what)
    : budget_(&budget), bytes_(bytes), what_(std::move(what)) {
  budget.reserve(bytes, what_);
}

BudgetReservation::~BudgetReservation() {
  if (budget_ != nullptr) budget_->release(bytes_, what_);
}

BudgetReservation::BudgetReservation(BudgetReservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      what_(std::move(other.what_)) {}

BudgetReservation& BudgetReservation::operator=(BudgetReservation&& other) noexcept {
  if (this != &other) {
    if (budget_ != nullptr) budget_->release(bytes_, what_);
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    what_ = std::move(other.what_);
  }
  return *this;
}

uint64_t non_expert_weight_bytes(const ModelWeights& weights) {
  uint64_t bytes = 0;
  for (const auto& [name, entry] : weights.checkpoint->tensors())
    if (name.find(".mlp.experts.") == std::string::npos) bytes += entry.info->nbytes();
  auto f32 = [](const std::vector<float>& v) { return uint64_t(v.size()) * sizeof(float); };
  bytes += f32(weights.final_norm);
  for (const LayerWeights& layer : weights.layers) {
    bytes += f32(layer.input_norm) + f32(layer.post_norm) + f32(layer.attention.q_a_norm) +
             f32(layer.attention.kv_a_norm);
    if (layer.is_moe) bytes += f32(layer.moe.router) + f32(layer.moe.score_bias);
    // The forward pass keeps one FfnWeights view per expert (not the weights themselves).
    bytes += uint64_t(layer.moe.experts.size()) * sizeof(FfnWeights);
  }
  return bytes;
}

}  // namespace hetmoe
