// Where a MoE layer's routed experts are computed from.
//
// The forward pass routes tokens, groups them by expert, and hands the layer's tasks to an
// ExpertSource. The source may run them in any order and on any threads — resident experts
// first while reads of streamed ones are in flight, say — because each task writes only its
// own output buffer and Model combines the outputs in a fixed order afterwards. So results
// never depend on the source, its timing or its placement (ARCHITECTURE.md's invariant).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "engine/runtime/weights.h"

namespace hetmoe {

struct ExpertTask {
  int32_t expert = 0;
  const float* x = nullptr;  // f32 [tokens, hidden]: the tokens routed to this expert
  int64_t tokens = 0;
  float* out = nullptr;      // f32 [tokens, hidden]: down(silu(gate x) ⊙ up x)
};

// What Model hands a source's run() besides the tasks; every hook is optional.
struct LayerWork {
  // Work of the layer that does not depend on the tasks (the shared expert): called once,
  // after the source has started the reads the layer needs and before it waits for any, so it
  // runs while the drive does. Sources without I/O call it first.
  std::function<void()> alongside;
  // Called at most once, after `alongside`, when every read the layer started has landed but
  // tasks are still to be computed: the drive would stay idle until the next layer's reads, so
  // Model predicts that layer now, from the outputs written so far (done[i]: tasks[i]'s).
  // Sources without I/O never call it.
  std::function<void(std::span<const uint8_t> done)> drive_idle;
};

class ExpertSource {
 public:
  virtual ~ExpertSource() = default;
  // Runs every task of one MoE layer, calling `work`'s hooks on the calling thread; returns
  // when all outputs are written.
  virtual void run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) = 0;
  // The experts the next layer is predicted to need (from its gate on this layer's hidden
  // state); a streaming source starts reading them. Default: ignored.
  virtual void prefetch(int64_t layer, std::span<const int32_t> experts) {}
  // True when the source wants those predictions (Model computes them only then).
  virtual bool wants_prefetch() const { return false; }
  // A forward pass of `rows` rows starts (every layer's run() and prefetch() until the next
  // call belong to it). Default: ignored.
  virtual void begin_step(int64_t rows) {}
};

// SwiGLU FFN with the plain linear: out = down(silu(gate x) ⊙ up x).
void ffn_forward(const FfnWeights& w, const float* x, int64_t tokens, float* out);

// The experts as the checkpoint ships them, read straight from its memory mapping.
class CheckpointExperts final : public ExpertSource {
 public:
  explicit CheckpointExperts(const ModelWeights& weights) : weights_(weights) {}
  void run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) override;

 private:
  const ModelWeights& weights_;
};

}  // namespace hetmoe
