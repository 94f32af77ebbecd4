#include "cpu/expert_ffn.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cassert>

#include "cpu/activation.h"

namespace hetmoe::cpu {

ExpertFfnRunner::ExpertFfnRunner(CpuThreads* threads, Isa isa) : threads_(threads), isa_(isa) {}

void ExpertFfnRunner::chunk(std::span<const FfnTask> tasks, bool down, std::vector<Item>& items) const {
  items.clear();
  int64_t total = 0;
  for (const FfnTask& task : tasks) total += (down ? task.ffn->down : task.ffn->gate).layout.panels;
  // About 8 items per thread balances the load; chunks of 4 panels let the decode kernel keep
  // 4 panels in flight. The chunking never changes a result.
  const int64_t threads = threads_ != nullptr ? threads_->concurrency() : 1;
  int64_t size = std::max<int64_t>(1, (total + 8 * threads - 1) / (8 * threads));
  if (size > 4) size = (size + 3) / 4 * 4;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const int64_t panels = (down ? tasks[i].ffn->down : tasks[i].ffn->gate).layout.panels;
    for (int64_t p = 0; p < panels; p += size) items.push_back({int64_t(i), p, std::min(panels, p + size)});
  }
}

void ExpertFfnRunner::run_phases(std::span<const FfnTask> tasks) {
  const int64_t n = int64_t(tasks.size());
  if (int64_t(states_.size()) < n) states_.resize(size_t(n));
  const auto each = [](int64_t count, auto&& body) {
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, count, 1),
        [&](const tbb::blocked_range<int64_t>& r) {
          for (int64_t i = r.begin(); i < r.end(); ++i) body(i);
        },
        tbb::simple_partitioner());
  };

  each(n, [&](int64_t i) {
    const FfnTask& task = tasks[size_t(i)];
    const PackedLayout& gate = task.ffn->gate.layout;
    assert(task.ffn->up.layout.rows == gate.rows && task.ffn->down.layout.cols == gate.rows);
    prepare_activations(gate, task.x, task.tokens, gate.cols, padded_tokens(task.tokens),
                        states_[size_t(i)].x, isa_);
    states_[size_t(i)].h.resize(size_t(task.tokens * gate.rows));
  });

  chunk(tasks, false, items_);
  each(int64_t(items_.size()), [&](int64_t index) {
    const Item item = items_[size_t(index)];
    const FfnTask& task = tasks[size_t(item.task)];
    TaskState& state = states_[size_t(item.task)];
    Worker& worker = workers_.local();
    const int64_t inter = task.ffn->gate.layout.rows, row0 = item.panel_begin * kPanelRows;
    const int64_t width = (item.panel_end - item.panel_begin) * kPanelRows;
    const int64_t rows = std::min(inter, item.panel_end * kPanelRows) - row0;
    worker.gate.resize(size_t(task.tokens * width));
    worker.up.resize(size_t(task.tokens * width));
    PackedGemmArgs args{.w = task.ffn->gate,
                        .a = state.x.view,
                        .tokens = task.tokens,
                        .panel_begin = item.panel_begin,
                        .panel_end = item.panel_end,
                        .y = worker.gate.data(),
                        .y_stride = width,
                        .scratch = &worker.gemm,
                        .bf16_dot = float_prefill_bf16dot()};
    packed_gemm(args, isa_);
    args.w = task.ffn->up;
    args.y = worker.up.data();
    packed_gemm(args, isa_);
    for (int64_t t = 0; t < task.tokens; ++t)
      silu_mul(&worker.gate[size_t(t * width)], &worker.up[size_t(t * width)], rows,
               &state.h[size_t(t * inter + row0)], isa_);
  });

  each(n, [&](int64_t i) {
    const FfnTask& task = tasks[size_t(i)];
    const PackedLayout& down = task.ffn->down.layout;
    prepare_activations(down, states_[size_t(i)].h.data(), task.tokens, down.cols, padded_tokens(task.tokens),
                        states_[size_t(i)].hidden, isa_);
  });

  chunk(tasks, true, items_);
  each(int64_t(items_.size()), [&](int64_t index) {
    const Item item = items_[size_t(index)];
    const FfnTask& task = tasks[size_t(item.task)];
    const int64_t hidden = task.ffn->down.layout.rows;
    const PackedGemmArgs args{.w = task.ffn->down,
                              .a = states_[size_t(item.task)].hidden.view,
                              .tokens = task.tokens,
                              .panel_begin = item.panel_begin,
                              .panel_end = item.panel_end,
                              .y = task.out + item.panel_begin * kPanelRows,
                              .y_stride = hidden,
                              .scratch = &workers_.local().gemm,
                              .bf16_dot = float_prefill_bf16dot()};
    packed_gemm(args, isa_);
  });
}

void ExpertFfnRunner::run(std::span<const FfnTask> tasks) {
  if (tasks.empty()) return;
  if (threads_ != nullptr) {
    threads_->execute([&] { run_phases(tasks); });
  } else {
    run_phases(tasks);
  }
}

}  // namespace hetmoe::cpu
