// Routed experts held in DRAM in a chosen kernel format (cpu/packed_matrix.h) and run with the
// packed expert kernels (cpu/expert_ffn.h) on a pinned oneTBB arena.
//
// At construction every routed expert of every MoE layer is repacked from the checkpoint
// mapping into one 64-byte aligned record (gate | up | down): FP8 keeps the shipped codes and
// block scales (exact), BF16 rounds, INT8 / INT4 requantise per group of 128 (docs/KERNELS.md).
// CheckpointExperts stays the reference the FP8 source is tested against.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cpu/expert_ffn.h"
#include "cpu/packed_matrix.h"
#include "cpu/threads.h"
#include "engine/runtime/expert_source.h"

namespace hetmoe {

struct PackedExpertsOptions {
  cpu::PackedFormat format = cpu::PackedFormat::kFP8;
  cpu::ThreadOptions threads;   // the arena the kernels run on
  std::optional<cpu::Isa> isa;  // default: cpu::active_isa() (HETMOE_ISA honoured)
};

class PackedExperts final : public ExpertSource {
 public:
  // Throws hetmoe::Error when a weight cannot be packed (NaN FP8 code, odd block size).
  PackedExperts(const ModelWeights& weights, PackedExpertsOptions options = {});
  void run(int64_t layer, std::span<const ExpertTask> tasks, const LayerWork& work) override;

  cpu::PackedFormat format() const { return options_.format; }
  uint64_t bytes() const { return bytes_; }  // packed expert weights held in DRAM
  int threads() const { return threads_.concurrency(); }

 private:
  PackedExpertsOptions options_;
  cpu::CpuThreads threads_;
  std::vector<cpu::AlignedBytes> records_;            // one per (layer, expert)
  std::vector<std::vector<cpu::PackedFfn>> experts_;  // [layer][expert]; empty for dense layers
  uint64_t bytes_ = 0;
  cpu::ExpertFfnRunner runner_;
  std::vector<cpu::FfnTask> tasks_;
};

}  // namespace hetmoe
