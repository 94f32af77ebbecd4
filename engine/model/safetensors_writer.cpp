// SafetensorsWriter: streams tensors into PATH.tmp through one large buffer and renames on finish().
//
// The header is laid out like the reference writer's (huggingface/safetensors `tensor.rs`): compact
// JSON, `__metadata__` first, tensors in data order, spaces up to a multiple of 8 bytes. Declaring
// tensors in the reference's order (alignment descending, then name) reproduces its bytes exactly.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

// Large sequential writes: 8 MiB per ::write keeps syscall overhead far below disk bandwidth.
constexpr uint64_t kBufferBytes = uint64_t(8) << 20;

}  // namespace

struct SafetensorsWriter::Impl {
  std::filesystem::path path;
  std::filesystem::path tmp_path;
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;
  std::set<std::string> names;
  uint64_t data_bytes = 0;  // sum of declared tensor sizes

  bool durable = true;
  bool started = false;  // header built and the temporary file open
  bool finished = false;
  bool failed = false;  // an I/O error happened: the temporary file is unusable
  int fd = -1;
  std::string header;  // padded header JSON, built on start()
  std::unique_ptr<uint8_t[]> buffer;
  uint64_t buffered = 0;
  uint64_t written = 0;  // data bytes accepted so far

  Error error(const std::string& what, const std::string& tensor = {}, const std::string& hint = {}) const {
    return Error(what, {.path = path.string(), .tensor = tensor, .hint = hint});
  }

  std::string build_header() const {
    nlohmann::ordered_json json = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
      nlohmann::ordered_json meta = nlohmann::ordered_json::object();
      for (const auto& [key, value] : metadata) meta[key] = value;
      json["__metadata__"] = std::move(meta);
    }
    for (const TensorInfo& tensor : tensors) {
      nlohmann::ordered_json shape = nlohmann::ordered_json::array();
      for (int axis = 0; axis < tensor.shape.rank; ++axis) shape.push_back(tensor.shape[axis]);
      json[tensor.name] = {{"dtype", std::string(dtype_name(tensor.dtype))},
                           {"shape", std::move(shape)},
                           {"data_offsets", {tensor.data_begin, tensor.data_end}}};
    }
    std::string text = json.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  }

  void write_all(const uint8_t* bytes, uint64_t count) {
    while (count > 0) {
      ssize_t done = ::write(fd, bytes, count);
      if (done < 0) {
        if (errno == EINTR) continue;
        const int code = errno;
        throw error(fmt::format("cannot write {}: {}", tmp_path.filename().string(), std::strerror(code)), {},
                    code == ENOSPC ? "the disk is full" : "");
      }
      bytes += done;
      count -= uint64_t(done);
    }
  }

  void flush() {
    write_all(buffer.get(), buffered);
    buffered = 0;
  }

  void start() {
    header = build_header();
    fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int code = errno;
      throw Error(fmt::format("cannot create: {}", std::strerror(code)),
                  {.path = tmp_path.string(), .hint = "check that the folder exists and is writable"});
    }
    started = true;
    buffer.reset(new uint8_t[kBufferBytes]);  // uninitialised: it is always written before read
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
    append(length, 8);
    append(reinterpret_cast<const uint8_t*>(header.data()), header.size());
  }

  void append(const uint8_t* bytes, uint64_t count) {
    if (buffered + count <= kBufferBytes) {
      std::memcpy(buffer.get() + buffered, bytes, count);
      buffered += count;
      if (buffered == kBufferBytes) flush();
      return;
    }
    // Top the buffer up, then write whole buffers straight from the caller's memory.
    const uint64_t fill = kBufferBytes - buffered;
    std::memcpy(buffer.get() + buffered, bytes, fill);
    buffered = kBufferBytes;
    flush();
    bytes += fill;
    count -= fill;
    const uint64_t direct = count - count % kBufferBytes;
    write_all(bytes, direct);
    std::memcpy(buffer.get(), bytes + direct, count - direct);
    buffered = count - direct;
  }

  // The tensor the next data byte belongs to (tensors.size() when complete); skips empty ones.
  size_t current_tensor() const {
    size_t index = 0;
    while (index < tensors.size() && tensors[index].data_end <= written) ++index;
    return index;
  }

  void discard() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (started) ::unlink(tmp_path.c_str());
  }
};

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->tmp_path = impl_->path;
  impl_->tmp_path += ".tmp";
  impl_->metadata = std::move(metadata);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (impl_ && !impl_->finished) impl_->discard();
}

void SafetensorsWriter::declare(const std::string& name, DType dtype, const Shape& shape) {
  Impl& w = *impl_;
  if (w.started || w.finished)
    throw w.error("declare() after the first write(): every tensor must be declared before any data", name);
  if (name == "__metadata__") throw w.error("\"__metadata__\" is reserved and cannot name a tensor");
  if (!w.names.insert(name).second) throw w.error("tensor declared twice", name);
  if (dtype == DType::kI4) throw w.error("I4 has no safetensors dtype", name);
  uint64_t numel = 1;
  for (int axis = 0; axis < shape.rank; ++axis) {
    if (shape[axis] < 0)
      throw w.error(fmt::format("negative dimension in shape {}", shape.to_string()), name);
    if (__builtin_mul_overflow(numel, uint64_t(shape[axis]), &numel))
      throw w.error(fmt::format("shape {} overflows 64 bits", shape.to_string()), name);
  }
  std::optional<uint64_t> nbytes = dtype_bytes(dtype, numel);
  uint64_t end = 0;
  if (!nbytes || __builtin_add_overflow(w.data_bytes, *nbytes, &end))
    throw w.error(fmt::format("shape {} overflows 64 bits in bytes", shape.to_string()), name);
  w.tensors.push_back(
      TensorInfo{.name = name, .dtype = dtype, .shape = shape, .data_begin = w.data_bytes, .data_end = end});
  w.data_bytes = end;
}

void SafetensorsWriter::write(const void* bytes, uint64_t count) {
  Impl& w = *impl_;
  if (w.finished) throw w.error("write() after finish()");
  if (w.failed) throw w.error("write() after an earlier write failed");
  if (count > w.data_bytes - w.written) {
    const size_t index = w.current_tensor();
    throw w.error(fmt::format("write of {} bytes overflows the declared tensors: only {} bytes remain", count,
                              w.data_bytes - w.written),
                  index < w.tensors.size() ? w.tensors[index].name
                  : w.tensors.empty()      ? ""
                                           : w.tensors.back().name);
  }
  if (count == 0) return;  // `bytes` may be null (an empty vector's data())
  try {
    if (!w.started) w.start();
    w.append(static_cast<const uint8_t*>(bytes), count);
  } catch (...) {
    w.failed = true;
    throw;
  }
  w.written += count;
}

void SafetensorsWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  if (w.failed) throw w.error("finish() after a write failed");
  if (w.written != w.data_bytes) {
    const size_t index = w.current_tensor();
    const TensorInfo& tensor = w.tensors[index];
    throw w.error(
        fmt::format("finish() before all data arrived: {} of {} bytes written; this tensor has {} of {}",
                    w.written, w.data_bytes, w.written - tensor.data_begin, tensor.nbytes()),
        tensor.name);
  }
  w.failed = true;            // until the rename succeeds
  if (!w.started) w.start();  // no data at all (only empty tensors, or none)
  w.flush();
  if (w.durable && ::fdatasync(w.fd) != 0)
    throw w.error(fmt::format("cannot sync {}: {}", w.tmp_path.filename().string(), std::strerror(errno)));
  if (::close(w.fd) != 0) {
    w.fd = -1;
    throw w.error(fmt::format("cannot close {}: {}", w.tmp_path.filename().string(), std::strerror(errno)));
  }
  w.fd = -1;
  if (::rename(w.tmp_path.c_str(), w.path.c_str()) != 0)
    throw w.error(
        fmt::format("cannot rename {} into place: {}", w.tmp_path.filename().string(), std::strerror(errno)));
  w.failed = false;
  w.finished = true;
  w.buffer.reset();
}

uint64_t SafetensorsWriter::total_bytes() const {
  const Impl& w = *impl_;
  const uint64_t header = w.started ? w.header.size() : w.build_header().size();
  return 8 + header + w.data_bytes;
}

void SafetensorsWriter::set_durable(bool durable) {
  impl_->durable = durable;
}

}  // namespace hetmoe
