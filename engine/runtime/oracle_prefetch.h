// The ceiling of any expert predictor, for benchmarks (`hetmoe bench --prefetch oracle`,
// docs/STREAMING.md): an ExpertSource in front of a StreamingExperts that records the routing
// of one run and, when the same tokens run again, replays it as the predictions:
//   - Model's next-layer prediction for layer l+1 becomes the experts l+1 really uses
//     (recall 100%, over-fetch 0%: what a perfect next-layer predictor would read), and
//   - with `first_layer_early`, each step also asks at its start for the first MoE layer's
//     experts (reads in flight across tokens, during lm_head and the dense layers, which the
//     engine's one-layer-ahead prediction cannot issue).
// Steps are counted from restart(); a replayed step without a recording (a different run
// length) falls back to Model's own prediction. Never changes results: only when reads start.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "engine/runtime/streaming_experts.h"

namespace hetmoe {

class OraclePrefetch final : public ExpertSource {
 public:
  // `inner` must have PrefetchMode::kOn (it receives every prediction).
  OraclePrefetch(StreamingExperts& inner, int64_t first_moe_layer, bool first_layer_early);

  // Before each run: steps count from here. The first run records; later runs replay.
  void restart();

  void run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) override;
  void prefetch(int64_t layer, std::span<const int32_t> experts) override;
  bool wants_prefetch() const override { return true; }
  void begin_step(int64_t rows) override;

 private:
  const std::vector<int32_t>* recorded(int64_t layer) const;

  StreamingExperts& inner_;
  int64_t first_moe_layer_;
  bool first_layer_early_;
  bool replaying_ = false;
  int64_t runs_ = 0;
  int64_t step_ = 0;
  std::map<std::pair<int64_t, int64_t>, std::vector<int32_t>> routing_;  // (step, layer) -> experts
};

}  // namespace hetmoe
