#include "engine/runtime/oracle_prefetch.h"

#include "engine/core/error.h"

namespace hetmoe {

OraclePrefetch::OraclePrefetch(StreamingExperts& inner, int64_t first_moe_layer, bool first_layer_early)
    : inner_(inner), first_moe_layer_(first_moe_layer), first_layer_early_(first_layer_early) {
  check(inner.options().prefetch == PrefetchMode::kOn, "the oracle prefetch needs a source with prefetch on");
}

void OraclePrefetch::restart() {
  replaying_ = runs_++ > 0;
  step_ = 0;
}

const std::vector<int32_t>* OraclePrefetch::recorded(int64_t layer) const {
  const auto it = routing_.find({step_, layer});
  return it == routing_.end() ? nullptr : &it->second;
}

void OraclePrefetch::begin_step(int64_t rows) {
  ++step_;
  inner_.begin_step(rows);
  if (replaying_ && first_layer_early_)
    if (const auto* experts = recorded(first_moe_layer_)) inner_.prefetch(first_moe_layer_, *experts);
}

void OraclePrefetch::run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) {
  if (!replaying_) {
    std::vector<int32_t>& experts = routing_[{step_, layer}];
    experts.clear();
    for (const ExpertTask& task : tasks) experts.push_back(task.expert);
  }
  inner_.run(layer, tasks, work);
}

void OraclePrefetch::prefetch(int64_t layer, std::span<const int32_t> experts) {
  const auto* truth = replaying_ ? recorded(layer) : nullptr;
  inner_.prefetch(layer, truth ? std::span<const int32_t>(*truth) : experts);
}

}  // namespace hetmoe
