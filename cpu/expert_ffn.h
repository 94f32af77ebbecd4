// The fused expert FFN  y = down(silu(gate·x) ⊙ (up·x))  on packed weights, for all the experts
// one MoE layer needs at once.
//
// run() takes one task per expert (its tokens gathered into x) and works in four parallel
// phases on the CpuThreads arena: quantise/pad each task's x; gate and up over chunks of
// 16-row panels of every task, with silu(g)·u written straight into the task's hidden buffer;
// quantise/pad that buffer; down over panel chunks of every task. Splitting across experts and
// rows keeps both threads busy whether a layer has 8 experts of 1 token (decode) or a few
// experts of many tokens (prefill). Every output element is computed by one kernel call in
// the fixed order of cpu/packed_gemm.h, so results do not depend on the thread count, the
// chunking or which other experts share the call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <tbb/enumerable_thread_specific.h>

#include "cpu/packed_gemm.h"
#include "cpu/threads.h"

namespace hetmoe::cpu {

struct PackedFfn {
  PackedMatrix gate;  // [inter, hidden]
  PackedMatrix up;    // [inter, hidden]
  PackedMatrix down;  // [hidden, inter]
};

struct FfnTask {
  const PackedFfn* ffn = nullptr;
  const float* x = nullptr;  // f32 [tokens, hidden]
  int64_t tokens = 0;
  float* out = nullptr;  // f32 [tokens, hidden] (overwritten)
};

class ExpertFfnRunner {
 public:
  // threads: the arena to run on (not owned); nullptr runs everything on the caller's thread.
  ExpertFfnRunner(CpuThreads* threads, Isa isa);
  // Not reentrant: one run() at a time per runner.
  void run(std::span<const FfnTask> tasks);

 private:
  struct TaskState {
    ActivationBuffers x;
    ActivationBuffers hidden;
    std::vector<float> h;  // f32 [tokens, inter]
  };
  struct Worker {
    GemmScratch gemm;
    std::vector<float> gate, up;
  };
  struct Item {
    int64_t task, panel_begin, panel_end;
  };
  void run_phases(std::span<const FfnTask> tasks);
  void chunk(std::span<const FfnTask> tasks, bool down, std::vector<Item>& items) const;

  CpuThreads* threads_;
  Isa isa_;
  std::vector<TaskState> states_;
  std::vector<Item> items_;
  tbb::enumerable_thread_specific<Worker> workers_;
};

}  // namespace hetmoe::cpu
