// Hugging Face safetensors: a validating, memory-mapped reader and a streaming writer.
//
// Format (MODEL_SPEC §4.1): u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data
// buffer. The reader validates every field before anything uses it: N within the file and
// <= 100 MB, valid JSON object, known dtype, shape × dtype size = end − begin without
// overflow, offsets inside the buffer, tensors not overlapping (and, like the reference
// implementation, covering the buffer without gaps). Every failure is a hetmoe::Error naming
// the file and the tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/tensor.h"

namespace hetmoe {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t data_begin = 0;  // offset from the start of the data buffer
  uint64_t data_end = 0;    // exclusive
  uint64_t nbytes() const { return data_end - data_begin; }
};

// One .safetensors file, mapped read-only for as long as the object lives.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const TensorInfo* find(const std::string& name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }  // 8 + N
  uint64_t file_size() const { return file_size_; }

  // A view of the tensor's bytes inside the mapping (valid while this object lives).
  TensorView view(const TensorInfo& tensor) const;
  const uint8_t* data(const TensorInfo& tensor) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  void* mapping_ = nullptr;
};

// Writes one .safetensors file tensor by tensor: declare every tensor first (the header must
// precede the data), then stream each one's bytes in declaration order, in as many chunks as
// the caller likes. Writes to PATH.tmp and renames on finish(), so a crash never leaves a file
// that looks complete.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();  // removes the temporary file if finish() was not reached

  void declare(const std::string& name, DType dtype, const Shape& shape);
  // Appends bytes of the current tensor (declaration order); a tensor is complete when its
  // byte count is reached, and the next write continues with the next tensor.
  void write(const void* bytes, uint64_t count);
  // Flushes, syncs the data to disk (unless set_durable(false)), and renames PATH.tmp to PATH.
  // Throws if fewer bytes arrived than were declared.
  void finish();

  uint64_t total_bytes() const;  // header + data, known once every tensor is declared
  // false skips the fdatasync before the rename (scratch files, tests): faster, but a crash
  // right after finish() may leave PATH with unwritten data.
  void set_durable(bool durable);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A checkpoint folder: model.safetensors, or shards listed by model.safetensors.index.json.
// The tensor index maps Hugging Face names to (shard, TensorInfo).
class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open(const std::filesystem::path& directory);

  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const Entry* find(const std::string& name) const;  // nullptr if absent
  const Entry& at(const std::string& name) const;    // throws hetmoe::Error naming the tensor
  const std::map<std::string, Entry>& tensors() const { return index_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::filesystem::path& directory() const { return directory_; }

  // The weight as float32 [rows, cols] (row-major): F8_E4M3 weights are dequantised with their
  // `<name>_scale_inv` per block (partial edge blocks included); BF16/F16/F32 are converted.
  // `block` is the square FP8 block size (config quantization weight_block_size); the scale
  // tensor must be F32 [ceil(rows/block), ceil(cols/block)].
  std::vector<float> load_float(const std::string& name, int64_t block = 128) const;

 private:
  std::filesystem::path directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> index_;
};

}  // namespace hetmoe
