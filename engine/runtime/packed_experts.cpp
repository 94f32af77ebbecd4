#include "engine/runtime/packed_experts.h"

#include <tbb/parallel_for.h>

#include <string>

#include "engine/core/error.h"

namespace hetmoe {

PackedExperts::PackedExperts(const ModelWeights& weights, PackedExpertsOptions options)
    : options_(options),
      threads_(options.threads),
      runner_(&threads_, options.isa.value_or(cpu::active_isa())) {
  using cpu::packed_layout;
  struct Job {
    int64_t layer, expert;
    const FfnWeights* source;
  };
  std::vector<Job> jobs;
  experts_.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& layer = weights.layers[l];
    if (!layer.is_moe) continue;
    experts_[l].resize(layer.moe.experts.size());
    for (size_t e = 0; e < layer.moe.experts.size(); ++e)
      jobs.push_back({int64_t(l), int64_t(e), &layer.moe.experts[e]});
  }
  records_.resize(jobs.size());
  const cpu::PackedFormat format = options_.format;
  threads_.execute([&] {
    tbb::parallel_for(size_t(0), jobs.size(), [&](size_t j) {
      const Job& job = jobs[j];
      const FfnWeights& w = *job.source;
      const cpu::PackedLayout gate = packed_layout(format, w.gate.rows, w.gate.cols);
      const cpu::PackedLayout up = packed_layout(format, w.up.rows, w.up.cols);
      const cpu::PackedLayout down = packed_layout(format, w.down.rows, w.down.cols);
      cpu::AlignedBytes record(gate.bytes() + up.bytes() + down.bytes());
      uint8_t* base = record.data();
      const std::string name =
          "model.layers." + std::to_string(job.layer) + ".mlp.experts." + std::to_string(job.expert);
      try {
        cpu::pack_matrix(w.gate, format, base);
        cpu::pack_matrix(w.up, format, base + gate.bytes());
        cpu::pack_matrix(w.down, format, base + gate.bytes() + up.bytes());
      } catch (const Error& e) {
        throw Error("cannot repack " + name + " as " + std::string(cpu::packed_format_name(format)) + ": " +
                        e.message(),
                    {.tensor = name, .hint = e.context().hint});
      }
      experts_[size_t(job.layer)][size_t(job.expert)] = {.gate = {gate, base},
                                                         .up = {up, base + gate.bytes()},
                                                         .down = {down, base + gate.bytes() + up.bytes()}};
      records_[j] = std::move(record);
    });
  });
  for (const auto& record : records_) bytes_ += record.size();
}

void PackedExperts::run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) {
  if (work.alongside) work.alongside();
  const auto& experts = experts_[size_t(layer)];
  check(!experts.empty(), "layer " + std::to_string(layer) + " has no routed experts");
  tasks_.clear();
  for (const ExpertTask& task : tasks)
    tasks_.push_back(
        {.ffn = &experts[size_t(task.expert)], .x = task.x, .tokens = task.tokens, .out = task.out});
  runner_.run(tasks_);
}

}  // namespace hetmoe
