// The packed expert store from the model's side: which record layout each format has, how a
// record becomes the weights an expert FFN computes with, which model a store belongs to, and
// `hetmoe pack` itself. The bytes on disk are io/store_format.h's (docs/STREAMING.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "cpu/expert_ffn.h"
#include "engine/runtime/weights.h"
#include "io/store_format.h"

namespace hetmoe {

// The record layout of `format` for this model, from one of its experts:
//   fp8 / int8 / int4 / bf16   gate | up | down repacked for the expert kernels
//                              (cpu::pack_matrix; panels are 64-byte multiples)
//   ref                        the checkpoint's bytes as shipped (FP8 codes + F32 block scales,
//                              or BF16), each part 64-byte aligned; computed with cpu::linear
// The record is padded to 4 KiB.
struct ExpertRecordLayout {
  io::RecordFormat format = io::RecordFormat::kFP8;
  std::vector<io::RecordPart> parts;
  uint64_t record_bytes = 0;
};
// Throws hetmoe::Error for a format this model's checkpoint cannot be packed into.
ExpertRecordLayout expert_record_layout(io::RecordFormat format, const FfnWeights& sample_expert);

bool is_packed_format(io::RecordFormat format);  // everything but kRef
cpu::PackedFormat packed_format_of(io::RecordFormat format);

// Writes expert `w` into `record` (record_bytes, zeroed padding) as `layout` says.
void fill_expert_record(const ExpertRecordLayout& layout, const FfnWeights& w, uint8_t* record);

// Views of an expert inside a record buffer laid out as `parts` say.
FfnWeights bind_shipped_record(const ModelConfig& config, std::span<const io::RecordPart> parts,
                               const uint8_t* record);
cpu::PackedFfn bind_packed_record(io::RecordFormat format, std::span<const io::RecordPart> parts,
                                  const uint8_t* record);

// What identifies a model to a store: the hash of its canonical config and a fingerprint of
// its weights (XXH3-64 of the first MoE layer's router and of its first expert's first
// 64 KiB), so a store packed from a different model, even with the same config, is refused.
io::StoreSource identify_model(const ModelWeights& weights, const std::filesystem::path& model_dir);

// Throws hetmoe::Error saying what differs when the store was not packed from this model.
void check_store_matches_model(const io::StoreHeader& store, const std::string& store_path,
                               const io::StoreSource& model, const ModelConfig& config);

struct PackOptions {
  std::filesystem::path model_dir;
  std::filesystem::path output;
  io::RecordFormat format = io::RecordFormat::kFP8;
  bool durable = true;  // fsync before the rename
  std::function<void(int64_t done, int64_t total)> progress;
};

struct PackSummary {
  uint64_t records = 0;
  uint64_t record_bytes = 0;
  uint64_t file_bytes = 0;
  double seconds = 0;
};

// Streams every routed expert of the model into a new store (one record in memory at a time
// per stage), atomically: OUTPUT.tmp, fsync, rename.
PackSummary pack_expert_store(const PackOptions& options);

}  // namespace hetmoe
