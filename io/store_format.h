// The packed expert store on disk (docs/STREAMING.md has the byte-level layout).
//
//   page 0      header: magic, format version, record format, the source model (config hash,
//               weights fingerprint, path), model dimensions, the record layout (parts), where
//               the index and data are; XXH3-64 of the header itself in its last 8 bytes
//   page 1..    index: one 32-byte entry per record (layer, expert, offset, length, XXH3-64)
//   data        one record per (layer, expert), each 4 KiB-aligned and padded to 4 KiB, so a
//               record is read with O_DIRECT straight into a cache slot
//
// Every field read from a file is bounded and checked before use; a bad store gives a
// hetmoe::Error naming the file and, for a record, its layer and expert.
// StoreWriter writes PATH.tmp, fsyncs it and renames it, so a crash never leaves a store
// that looks valid.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/storage.h"

namespace hetmoe::io {

inline constexpr char kStoreMagic[8] = {'H', 'M', 'E', 'X', 'S', 'T', 'O', 'R'};
inline constexpr uint32_t kStoreVersion = 3;  // 3: FP8 quads a 32-bit lane per row (2: even/odd
                                              // FP8 bytes; 1: XXH64 checksums)
inline constexpr uint64_t kStoreHeaderBytes = 4096;
inline constexpr uint64_t kRecordAlignment = 4096;
inline constexpr uint64_t kIndexEntryBytes = 32;
inline constexpr uint32_t kMaxRecordParts = 12;

// How an expert's weights are stored in its record: the expert kernels' packed layouts
// (cpu/packed_matrix.h, computed with cpu/expert_ffn.h), or the checkpoint's own bytes.
enum class RecordFormat : uint32_t {
  kFP8 = 1,   // packed FP8: the shipped E4M3 codes and block scales in 16-row panels (exact)
  kInt8 = 2,  // packed INT8, requantised per group of 128
  kInt4 = 3,  // packed INT4, requantised per group of 128
  kBF16 = 4,  // packed BF16
  kRef = 5,   // as shipped: FP8 codes + F32 128x128 block scales (or BF16), plain cpu::linear
};
std::string_view record_format_name(RecordFormat format);  // "fp8", "int8", "int4", "bf16", "ref"
std::optional<RecordFormat> parse_record_format(std::string_view name);

// One tensor inside a record. Every record of a store has the same parts at the same offsets.
struct RecordPart {
  uint32_t role = 0;   // 0 gate, 1 up, 2 down
  uint32_t kind = 0;   // 0 weight, 1 scales (format-specific beyond that)
  uint32_t dtype = 0;  // kRef: hetmoe::DType of the elements; packed: cpu::PackedFormat
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t offset = 0;  // from the record's start
  uint64_t bytes = 0;
  bool operator==(const RecordPart&) const = default;
};

// Which model a store was packed from.
struct StoreSource {
  uint64_t config_hash = 0;          // XXH3-64 of the model's config.json bytes
  uint64_t weights_fingerprint = 0;  // XXH3-64 over a sample of the weights (see expert_store.h)
  std::string model_path;            // as given to `hetmoe pack` (informational)
};

struct StoreHeader {
  uint32_t version = kStoreVersion;
  RecordFormat format = RecordFormat::kFP8;
  StoreSource source;
  int64_t num_layers = 0;  // num_hidden_layers of the model
  int64_t n_routed_experts = 0;
  int64_t hidden_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t weight_block = 0;   // FP8 block size of the source (128)
  uint64_t record_bytes = 0;  // every record, a multiple of kRecordAlignment
  uint64_t record_count = 0;
  uint64_t index_offset = 0;
  uint64_t index_bytes = 0;     // record_count * kIndexEntryBytes
  uint64_t index_checksum = 0;  // XXH3-64 of the index bytes
  uint64_t data_offset = 0;     // first record
  uint64_t file_bytes = 0;      // total size of the store
  std::vector<RecordPart> parts;
  std::string created_by;  // "hetmoe 0.1.0"
};

struct RecordEntry {
  int32_t layer = 0;
  int32_t expert = 0;
  uint64_t offset = 0;    // from the start of the file, a multiple of kRecordAlignment
  uint64_t length = 0;    // = header.record_bytes
  uint64_t checksum = 0;  // XXH3-64 of the `length` bytes
};

uint64_t checksum(const void* data, uint64_t bytes);  // XXH3-64, seed 0

// Header page <-> struct. decode_header checks magic, version and the header checksum, and
// bounds every size; `path` names the file in errors.
std::vector<uint8_t> encode_header(const StoreHeader& header);
StoreHeader decode_header(std::span<const uint8_t> page, const std::string& path);

// An opened store: header and index, validated against each other and the file size.
class StoreIndex {
 public:
  // Reads and validates page 0 and the index through `storage` (nothing else in flight).
  static StoreIndex read(Storage& storage);

  const StoreHeader& header() const { return header_; }
  const std::vector<RecordEntry>& records() const { return records_; }  // in file order
  const std::string& path() const { return path_; }
  // nullptr when the store has no record for (layer, expert).
  const RecordEntry* find(int64_t layer, int64_t expert) const;
  // Throws hetmoe::Error naming the record when `data` (entry.length bytes) does not match
  // its checksum.
  void verify(const RecordEntry& entry, const uint8_t* data) const;

 private:
  StoreHeader header_;
  std::vector<RecordEntry> records_;
  std::vector<int32_t> slot_of_;  // [layer * n_routed_experts + expert] -> records_ index or -1
  std::string path_;
};

// "record (layer 3, expert 17) at offset 123 of PATH" — how errors name a record.
std::string describe_record(const std::string& path, const RecordEntry& entry);

// Writes a store: records in the order of `keys`, then the index and the header.
class StoreWriter {
 public:
  struct Options {
    bool durable = true;  // fsync before the rename (false: scratch files, tests)
  };
  // `header` gives format, source, dimensions, parts and record_bytes; the writer fills the
  // offsets, counts and checksums. Throws hetmoe::Error if PATH.tmp cannot be created.
  StoreWriter(std::filesystem::path path, StoreHeader header, std::vector<std::pair<int32_t, int32_t>> keys,
              Options options);
  ~StoreWriter();  // removes PATH.tmp unless finish() ran
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  uint64_t record_bytes() const { return header_.record_bytes; }
  uint64_t file_bytes() const { return header_.file_bytes; }
  // The next record in key order: record_bytes() bytes, 4 KiB-aligned (AlignedBuffer).
  void write_record(const uint8_t* data);
  // Index + header, fsync, rename PATH.tmp -> PATH, fsync the folder.
  void finish();

 private:
  std::filesystem::path path_, temp_path_;
  StoreHeader header_;
  std::vector<RecordEntry> entries_;
  size_t written_ = 0;
  int fd_ = -1;
  bool direct_ = false;
  bool durable_ = true;
  bool finished_ = false;
};

}  // namespace hetmoe::io
