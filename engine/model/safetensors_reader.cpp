// SafetensorsFile: maps a .safetensors file read-only and validates its header (MODEL_SPEC §4.1,
// huggingface/safetensors `tensor.rs` validate()) before any field is used.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

using nlohmann::json;

// The reference implementation's limit (safetensors MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* kHint = "the file is corrupt or not a safetensors file; re-download or re-convert it";

// Closes a descriptor on every exit path of open().
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

// Parses the header JSON straight into TensorInfo records (nlohmann SAX: no DOM, so a
// 163-shard checkpoint's ~92k entries cost one pass over the text). Every value is checked as
// it arrives; anything unexpected throws an Error naming the file and tensor.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, uint64_t buffer_bytes, std::vector<TensorInfo>& tensors,
               std::map<std::string, std::string>& metadata)
      : path_(path), buffer_bytes_(buffer_bytes), tensors_(tensors), metadata_(metadata) {}

  bool saw_metadata_twice() const { return metadata_count_ > 1; }

  // --- nlohmann SAX interface ------------------------------------------------------------------
  bool null() { return scalar("null", Kind::kOther); }
  bool boolean(bool value) { return scalar(value ? "true" : "false", Kind::kOther); }
  bool number_integer(int64_t value) { return scalar(std::to_string(value), Kind::kOther); }  // negative
  bool number_unsigned(uint64_t value) {
    switch (slot()) {  // the common case, without formatting the number
      case Slot::kDim:
        dims_.push_back(value);
        return true;
      case Slot::kOffset:
        offsets_.push_back(value);
        return true;
      default:
        return scalar(std::to_string(value), Kind::kOther);
    }
  }
  bool number_float(double, const std::string& text) { return scalar(text, Kind::kOther); }
  bool string(std::string& value) { return scalar(value, Kind::kString); }
  bool binary(json::binary_t&) { return scalar("binary", Kind::kOther); }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& key) {
    switch (stack_.back()) {
      case Frame::kRoot:
        in_metadata_ = key == "__metadata__";
        if (in_metadata_)
          ++metadata_count_;
        else
          name_ = key;
        break;
      case Frame::kMetadata:
        metadata_key_ = key;
        break;
      case Frame::kEntry:
        field_ = key == "dtype"          ? Field::kDtype
                 : key == "shape"        ? Field::kShape
                 : key == "data_offsets" ? Field::kOffsets
                                         : Field::kOther;
        break;
      default:
        break;
    }
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& error) {
    throw Error(fmt::format("header is not valid JSON: {}", error.what()), {.path = path_, .hint = kHint});
  }

 private:
  enum class Frame { kRoot, kMetadata, kEntry, kShape, kOffsets, kSkip };
  enum class Field { kDtype, kShape, kOffsets, kOther };
  enum class Kind { kString, kOther };
  // What the next value is.
  enum class Slot {
    kHeader,
    kMetadata,
    kEntry,
    kMetadataValue,
    kDtype,
    kShape,
    kOffsets,
    kDim,
    kOffset,
    kIgnored
  };

  Slot slot() const {
    if (stack_.empty()) return Slot::kHeader;
    switch (stack_.back()) {
      case Frame::kRoot:
        return in_metadata_ ? Slot::kMetadata : Slot::kEntry;
      case Frame::kMetadata:
        return Slot::kMetadataValue;
      case Frame::kEntry:
        return field_ == Field::kDtype     ? Slot::kDtype
               : field_ == Field::kShape   ? Slot::kShape
               : field_ == Field::kOffsets ? Slot::kOffsets
                                           : Slot::kIgnored;
      case Frame::kShape:
        return Slot::kDim;
      case Frame::kOffsets:
        return Slot::kOffset;
      case Frame::kSkip:
        return Slot::kIgnored;
    }
    return Slot::kIgnored;
  }

  [[noreturn]] void fail(const std::string& what, bool about_tensor = true) const {
    throw Error(what, {.path = path_, .tensor = about_tensor ? name_ : std::string(), .hint = kHint});
  }

  bool scalar(const std::string& text, Kind kind) {
    switch (slot()) {
      case Slot::kHeader:
        fail("header is a JSON scalar (" + clip(text) + "), not an object", false);
      case Slot::kMetadata:
        if (text != "null" || kind != Kind::kOther)
          fail("__metadata__ is not an object: " + clip(text), false);
        return true;
      case Slot::kEntry:
        fail("header entry is not an object: " + clip(text));
      case Slot::kMetadataValue:
        if (kind != Kind::kString)
          fail(fmt::format("__metadata__ value of \"{}\" is not a string: {}", metadata_key_, clip(text)),
               false);
        metadata_[metadata_key_] = text;
        return true;
      case Slot::kDtype:
        if (kind != Kind::kString) fail("dtype is not a string: " + clip(text));
        dtype_text_ = text;
        has_dtype_ = true;
        return true;
      case Slot::kShape:
        fail("shape is not an array: " + clip(text));
      case Slot::kOffsets:
        fail("data_offsets must be two non-negative integers, got " + clip(text));
      case Slot::kDim:
        fail(fmt::format("shape holds {}, not a non-negative integer", clip(text)));
      case Slot::kOffset:
        fail(fmt::format("data_offsets must be two non-negative integers, got {}", clip(text)));
      case Slot::kIgnored:
        return true;
    }
    return true;
  }

  bool open(bool object) {
    const char* what = object ? "an object" : "an array";
    switch (slot()) {
      case Slot::kHeader:
        if (!object) fail("header is a JSON array, not an object", false);
        stack_.push_back(Frame::kRoot);
        return true;
      case Slot::kMetadata:
        if (!object) fail("__metadata__ is not an object: it is an array", false);
        stack_.push_back(Frame::kMetadata);
        return true;
      case Slot::kEntry:
        if (!object) fail("header entry is not an object: it is an array");
        has_dtype_ = has_shape_ = has_offsets_ = false;
        field_ = Field::kOther;
        stack_.push_back(Frame::kEntry);
        return true;
      case Slot::kMetadataValue:
        fail(fmt::format("__metadata__ value of \"{}\" is not a string: it is {}", metadata_key_, what),
             false);
      case Slot::kDtype:
        fail(fmt::format("dtype is not a string: it is {}", what));
      case Slot::kShape:
        if (object) fail("shape is not an array: it is an object");
        dims_.clear();
        has_shape_ = true;
        stack_.push_back(Frame::kShape);
        return true;
      case Slot::kOffsets:
        if (object) fail("data_offsets must be two non-negative integers, got an object");
        offsets_.clear();
        has_offsets_ = true;
        stack_.push_back(Frame::kOffsets);
        return true;
      case Slot::kDim:
        fail(fmt::format("shape holds {}, not a non-negative integer", what));
      case Slot::kOffset:
        fail(fmt::format("data_offsets must be two non-negative integers, got {}", what));
      case Slot::kIgnored:
        stack_.push_back(Frame::kSkip);
        return true;
    }
    return true;
  }

  bool close() {
    const Frame frame = stack_.back();
    stack_.pop_back();
    if (frame == Frame::kEntry) finish_entry();
    return true;
  }

  std::string shape_text() const {
    std::string text = "[";
    for (size_t i = 0; i < dims_.size(); ++i) {
      if (i > 0) text += ',';
      text += std::to_string(dims_[i]);
    }
    return text + "]";
  }

  void finish_entry() {
    TensorInfo info;
    info.name = name_;
    if (!has_dtype_) fail("header entry has no dtype");
    std::optional<DType> dtype = parse_dtype(dtype_text_);
    if (!dtype || *dtype == DType::kI4) fail(fmt::format("unknown dtype \"{}\"", clip(dtype_text_)));
    info.dtype = *dtype;

    if (!has_shape_) fail("header entry has no shape");
    if (dims_.size() > size_t(kMaxDims))
      fail(fmt::format("shape {} has rank {}, above hetmoe's maximum of {}", clip(shape_text()), dims_.size(),
                       kMaxDims));
    uint64_t numel = 1;
    for (uint64_t size : dims_) {
      if (size > uint64_t(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, size, &numel) ||
          numel > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(fmt::format("shape {} overflows 64 bits", shape_text()));
      info.shape.dims[size_t(info.shape.rank++)] = int64_t(size);
    }
    std::optional<uint64_t> nbytes = dtype_bytes(info.dtype, numel);
    if (!nbytes)
      fail(fmt::format("shape {} of {} overflows 64 bits in bytes", shape_text(), dtype_name(info.dtype)));

    if (!has_offsets_) fail("header entry has no data_offsets");
    if (offsets_.size() != 2)
      fail(fmt::format("data_offsets must be two non-negative integers, got {} of them", offsets_.size()));
    info.data_begin = offsets_[0];
    info.data_end = offsets_[1];
    if (info.data_begin > info.data_end)
      fail(fmt::format("data_offsets [{}, {}] begin after they end", info.data_begin, info.data_end));
    if (info.data_end > buffer_bytes_)
      fail(fmt::format("data_offsets [{}, {}] run past the data buffer of {} bytes", info.data_begin,
                       info.data_end, buffer_bytes_));
    if (info.nbytes() != *nbytes)
      fail(fmt::format("data_offsets [{}, {}] hold {} bytes but {} {} needs {}", info.data_begin,
                       info.data_end, info.nbytes(), dtype_name(info.dtype), info.shape.to_string(),
                       *nbytes));
    tensors_.push_back(std::move(info));
  }

  static std::string clip(const std::string& text) {
    return text.size() > 60 ? text.substr(0, 57) + "..." : text;
  }

  const std::string& path_;
  const uint64_t buffer_bytes_;
  std::vector<TensorInfo>& tensors_;
  std::map<std::string, std::string>& metadata_;

  std::vector<Frame> stack_;
  bool in_metadata_ = false;
  int metadata_count_ = 0;
  std::string metadata_key_;
  // The entry being parsed.
  std::string name_;
  Field field_ = Field::kOther;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  std::string dtype_text_;
  std::vector<uint64_t> dims_;
  std::vector<uint64_t> offsets_;
};

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string where = path.string();
  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0)
    throw Error(fmt::format("cannot open: {}", std::strerror(errno)),
                {.path = where, .hint = errno == ENOENT ? "check the path" : "check the file's permissions"});
  struct stat status {};
  if (::fstat(fd.fd, &status) != 0)
    throw Error(fmt::format("cannot stat: {}", std::strerror(errno)), {.path = where});
  if (!S_ISREG(status.st_mode)) throw Error("not a regular file", {.path = where});
  const uint64_t file_size = uint64_t(status.st_size);
  if (file_size < 8)
    throw Error(fmt::format("file is {} bytes, shorter than the 8-byte header length", file_size),
                {.path = where, .hint = kHint});

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->file_size_ = file_size;
  void* mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd.fd, 0);
  if (mapping == MAP_FAILED)
    throw Error(fmt::format("cannot mmap: {}", std::strerror(errno)), {.path = where});
  file->mapping_ = mapping;  // unmapped by the destructor from here on
  const auto* bytes = static_cast<const uint8_t*>(mapping);

  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];  // little-endian
  if (header_bytes > kMaxHeaderBytes)
    throw Error(fmt::format("header length {} exceeds the limit of {} bytes", header_bytes, kMaxHeaderBytes),
                {.path = where, .hint = kHint});
  if (header_bytes > file_size - 8)
    throw Error(
        fmt::format("header length {} runs past the end of the file ({} bytes)", header_bytes, file_size),
        {.path = where, .hint = "the file is truncated or corrupt; re-download it"});
  file->data_offset_ = 8 + header_bytes;
  const uint64_t buffer_bytes = file_size - file->data_offset_;

  HeaderParser parser(where, buffer_bytes, file->tensors_, file->metadata_);
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  json::sax_parse(text, text + header_bytes, &parser);  // throws on any error
  if (parser.saw_metadata_twice())
    throw Error("header has two __metadata__ entries", {.path = where, .hint = kHint});

  // File order; names unique; then the tensors must tile the buffer exactly (no overlap, gap or tail).
  std::sort(file->tensors_.begin(), file->tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  for (size_t i = 0; i < file->tensors_.size(); ++i)
    if (!file->by_name_.emplace(file->tensors_[i].name, i).second)
      throw Error("header names the tensor twice",
                  {.path = where, .tensor = file->tensors_[i].name, .hint = kHint});
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : file->tensors_) {
    if (tensor.data_begin < covered)
      throw Error(fmt::format("data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", tensor.data_begin,
                              tensor.data_end, previous->name, previous->data_begin, previous->data_end),
                  {.path = where, .tensor = tensor.name, .hint = kHint});
    if (tensor.data_begin > covered)
      throw Error(fmt::format("{} unused bytes before it in the data buffer (offsets [{}, {}])",
                              tensor.data_begin - covered, covered, tensor.data_begin),
                  {.path = where, .tensor = tensor.name, .hint = kHint});
    covered = tensor.data_end;
    previous = &tensor;
  }
  if (covered != buffer_bytes)
    throw Error(fmt::format("the tensors cover {} of the {} data bytes; the rest is unaccounted for", covered,
                            buffer_bytes),
                {.path = where, .hint = kHint});

  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) ::munmap(mapping_, file_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& tensor) const {
  assert(tensor.data_end <= file_size_ - data_offset_);
  return static_cast<const uint8_t*>(mapping_) + data_offset_ + tensor.data_begin;
}

TensorView SafetensorsFile::view(const TensorInfo& tensor) const {
  // The mapping is read-only: TensorView has no const flavour, so callers must not write.
  return TensorView(tensor.dtype, tensor.shape, const_cast<uint8_t*>(data(tensor)));
}

}  // namespace hetmoe
