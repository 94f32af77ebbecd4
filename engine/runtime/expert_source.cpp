#include "engine/runtime/expert_source.h"

#include <vector>

#include "cpu/linear.h"
#include "cpu/ops.h"

namespace hetmoe {

void ffn_forward(const FfnWeights& w, const float* x, int64_t tokens, float* out) {
  const int64_t inter = w.gate.rows;
  std::vector<float> gate(static_cast<size_t>(tokens * inter)), up(static_cast<size_t>(tokens * inter));
  cpu::linear(w.gate, x, tokens, gate.data());
  cpu::linear(w.up, x, tokens, up.data());
  cpu::silu_mul(gate.data(), up.data(), tokens * inter, gate.data());
  cpu::linear(w.down, gate.data(), tokens, out);
}

void CheckpointExperts::run(int64_t layer, std::span<const ExpertTask> tasks,
                            const LayerWork& work) {
  if (work.alongside) work.alongside();
  const auto& experts = weights_.layers[size_t(layer)].moe.experts;
  for (const ExpertTask& task : tasks) ffn_forward(experts[size_t(task.expert)], task.x, task.tokens, task.out);
}

}  // namespace hetmoe
