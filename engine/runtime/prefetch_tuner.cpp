#include "engine/runtime/prefetch_tuner.h"

#include <algorithm>

#include "engine/core/error.h"

namespace hetmoe {

PrefetchTuner::PrefetchTuner(Options options) : options_(options) {
  check(options_.block_steps >= 2 && options_.exploit_steps >= 1 && options_.max_rows >= 1,
        "prefetch tuner: a block needs >= 2 steps (the first is not counted), a run >= 1");
}

void PrefetchTuner::on_step(double seconds, int64_t rows) {
  if (rows < 1 || rows > options_.max_rows) return;
  if (block_ == kPattern.size()) {  // running the winner
    if (++step_ < options_.exploit_steps) return;
    block_ = 0;
    step_ = 0;
    seconds_per_row_ = {};
    counted_ = {};
    enabled_ = kPattern[0];
    return;
  }
  if (step_ > 0) {
    seconds_per_row_[enabled_] += seconds / double(rows);
    ++counted_[enabled_];
  }
  if (++step_ < options_.block_steps) return;
  step_ = 0;
  if (++block_ < kPattern.size()) {
    enabled_ = kPattern[block_];
    return;
  }
  const double on = seconds_per_row_[1] / double(std::max<int64_t>(1, counted_[1]));
  const double off = seconds_per_row_[0] / double(std::max<int64_t>(1, counted_[0]));
  enabled_ = on <= off;
  ++decisions_;
}

}  // namespace hetmoe
