#include "io/store_format.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "engine/core/error.h"
#include "io/aligned_buffer.h"

namespace hetmoe::io {
namespace {

// Byte offsets inside the header page (docs/STREAMING.md).
constexpr size_t kMagicAt = 0, kVersionAt = 8, kHeaderBytesAt = 12, kFormatAt = 16, kPartCountAt = 20;
constexpr size_t kConfigHashAt = 24, kFingerprintAt = 32, kLayersAt = 40, kExpertsAt = 48, kHiddenAt = 56;
constexpr size_t kInterAt = 64, kBlockAt = 72, kRecordBytesAt = 80, kRecordCountAt = 88, kIndexOffsetAt = 96;
constexpr size_t kIndexBytesAt = 104, kIndexChecksumAt = 112, kDataOffsetAt = 120, kFileBytesAt = 128;
constexpr size_t kPartsAt = 136, kPartBytes = 48;
constexpr size_t kModelPathAt = kPartsAt + kMaxRecordParts * kPartBytes, kModelPathBytes = 1024;
constexpr size_t kCreatedByAt = kModelPathAt + kModelPathBytes, kCreatedByBytes = 64;
constexpr size_t kHeaderChecksumAt = kStoreHeaderBytes - 8;
static_assert(kCreatedByAt + kCreatedByBytes <= kHeaderChecksumAt);

// Sanity bounds on sizes read from a file (a hostile header must not make us allocate or loop
// without limit): far above any real model.
constexpr int64_t kMaxLayers = 4096, kMaxExperts = 65536, kMaxDim = int64_t(1) << 20;
constexpr uint64_t kMaxRecordBytes = uint64_t(1) << 34;

template <typename T>
void put(std::vector<uint8_t>& page, size_t at, T value) {
  std::memcpy(page.data() + at, &value, sizeof value);  // little-endian hosts only (x86-64)
}
template <typename T>
T get(std::span<const uint8_t> page, size_t at) {
  T value;
  std::memcpy(&value, page.data() + at, sizeof value);
  return value;
}

std::string fixed_string(std::span<const uint8_t> page, size_t at, size_t bytes) {
  const char* begin = reinterpret_cast<const char*>(page.data() + at);
  return std::string(begin, strnlen(begin, bytes));
}

std::string hex(uint64_t value) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%016" PRIx64, value);
  return text;
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* sum) {
  return __builtin_add_overflow(a, b, sum);
}

const std::string kRepack = "re-create it with `hetmoe pack -m MODEL -o STORE`";

}  // namespace

std::string_view record_format_name(RecordFormat format) {
  switch (format) {
    case RecordFormat::kFP8:
      return "fp8";
    case RecordFormat::kInt8:
      return "int8";
    case RecordFormat::kInt4:
      return "int4";
    case RecordFormat::kBF16:
      return "bf16";
    case RecordFormat::kRef:
      return "ref";
  }
  return "unknown";
}

std::optional<RecordFormat> parse_record_format(std::string_view name) {
  for (RecordFormat f : {RecordFormat::kFP8, RecordFormat::kInt8, RecordFormat::kInt4, RecordFormat::kBF16,
                         RecordFormat::kRef})
    if (record_format_name(f) == name) return f;
  return std::nullopt;
}

uint64_t checksum(const void* data, uint64_t bytes) {
  return XXH3_64bits(data, size_t(bytes));
}

std::string describe_record(const std::string& path, const RecordEntry& entry) {
  return "record (layer " + std::to_string(entry.layer) + ", expert " + std::to_string(entry.expert) +
         ") at offset " + std::to_string(entry.offset) + " of " + path;
}

std::vector<uint8_t> encode_header(const StoreHeader& h) {
  check(h.parts.size() <= kMaxRecordParts, "too many record parts");
  std::vector<uint8_t> page(kStoreHeaderBytes, 0);
  std::memcpy(page.data() + kMagicAt, kStoreMagic, sizeof kStoreMagic);
  put<uint32_t>(page, kVersionAt, h.version);
  put<uint32_t>(page, kHeaderBytesAt, uint32_t(kStoreHeaderBytes));
  put<uint32_t>(page, kFormatAt, uint32_t(h.format));
  put<uint32_t>(page, kPartCountAt, uint32_t(h.parts.size()));
  put<uint64_t>(page, kConfigHashAt, h.source.config_hash);
  put<uint64_t>(page, kFingerprintAt, h.source.weights_fingerprint);
  put<int64_t>(page, kLayersAt, h.num_layers);
  put<int64_t>(page, kExpertsAt, h.n_routed_experts);
  put<int64_t>(page, kHiddenAt, h.hidden_size);
  put<int64_t>(page, kInterAt, h.moe_intermediate_size);
  put<int64_t>(page, kBlockAt, h.weight_block);
  put<uint64_t>(page, kRecordBytesAt, h.record_bytes);
  put<uint64_t>(page, kRecordCountAt, h.record_count);
  put<uint64_t>(page, kIndexOffsetAt, h.index_offset);
  put<uint64_t>(page, kIndexBytesAt, h.index_bytes);
  put<uint64_t>(page, kIndexChecksumAt, h.index_checksum);
  put<uint64_t>(page, kDataOffsetAt, h.data_offset);
  put<uint64_t>(page, kFileBytesAt, h.file_bytes);
  for (size_t i = 0; i < h.parts.size(); ++i) {
    const RecordPart& p = h.parts[i];
    const size_t at = kPartsAt + i * kPartBytes;
    put<uint32_t>(page, at, p.role);
    put<uint32_t>(page, at + 4, p.kind);
    put<uint32_t>(page, at + 8, p.dtype);
    put<int64_t>(page, at + 16, p.rows);
    put<int64_t>(page, at + 24, p.cols);
    put<uint64_t>(page, at + 32, p.offset);
    put<uint64_t>(page, at + 40, p.bytes);
  }
  std::memcpy(page.data() + kModelPathAt, h.source.model_path.data(),
              std::min(h.source.model_path.size(), kModelPathBytes - 1));
  std::memcpy(page.data() + kCreatedByAt, h.created_by.data(),
              std::min(h.created_by.size(), kCreatedByBytes - 1));
  put<uint64_t>(page, kHeaderChecksumAt, checksum(page.data(), kHeaderChecksumAt));
  return page;
}

StoreHeader decode_header(std::span<const uint8_t> page, const std::string& path) {
  const Error::Context context{.path = path};
  check(page.size() >= kStoreHeaderBytes,
        "the store is truncated: " + std::to_string(page.size()) + " bytes, smaller than its " +
            std::to_string(kStoreHeaderBytes) + "-byte header",
        {.path = path, .hint = kRepack});
  check(std::memcmp(page.data(), kStoreMagic, sizeof kStoreMagic) == 0,
        "not a hetmoe expert store (no HMEXSTOR magic)",
        {.path = path, .hint = "give the file `hetmoe pack` wrote"});
  StoreHeader h;
  h.version = get<uint32_t>(page, kVersionAt);
  check(h.version == kStoreVersion,
        "expert store format version " + std::to_string(h.version) + "; this hetmoe reads version " +
            std::to_string(kStoreVersion),
        {.path = path, .hint = "re-pack the model with this hetmoe's `hetmoe pack`"});
  const uint64_t stored = get<uint64_t>(page, kHeaderChecksumAt);
  const uint64_t computed = checksum(page.data(), kHeaderChecksumAt);
  check(stored == computed,
        "header checksum mismatch (stored " + hex(stored) + ", computed " + hex(computed) +
            "): the store is corrupt",
        {.path = path, .hint = kRepack});
  check(get<uint32_t>(page, kHeaderBytesAt) == kStoreHeaderBytes, "unexpected header size", context);
  const uint32_t format = get<uint32_t>(page, kFormatAt);
  check(format >= 1 && format <= 5, "unknown record format " + std::to_string(format), context);
  h.format = RecordFormat(format);
  const uint32_t part_count = get<uint32_t>(page, kPartCountAt);
  check(part_count >= 1 && part_count <= kMaxRecordParts,
        "bad record part count " + std::to_string(part_count), context);
  h.source.config_hash = get<uint64_t>(page, kConfigHashAt);
  h.source.weights_fingerprint = get<uint64_t>(page, kFingerprintAt);
  h.num_layers = get<int64_t>(page, kLayersAt);
  h.n_routed_experts = get<int64_t>(page, kExpertsAt);
  h.hidden_size = get<int64_t>(page, kHiddenAt);
  h.moe_intermediate_size = get<int64_t>(page, kInterAt);
  h.weight_block = get<int64_t>(page, kBlockAt);
  h.record_bytes = get<uint64_t>(page, kRecordBytesAt);
  h.record_count = get<uint64_t>(page, kRecordCountAt);
  h.index_offset = get<uint64_t>(page, kIndexOffsetAt);
  h.index_bytes = get<uint64_t>(page, kIndexBytesAt);
  h.index_checksum = get<uint64_t>(page, kIndexChecksumAt);
  h.data_offset = get<uint64_t>(page, kDataOffsetAt);
  h.file_bytes = get<uint64_t>(page, kFileBytesAt);
  check(h.num_layers > 0 && h.num_layers <= kMaxLayers && h.n_routed_experts > 0 &&
            h.n_routed_experts <= kMaxExperts && h.hidden_size > 0 && h.hidden_size <= kMaxDim &&
            h.moe_intermediate_size > 0 && h.moe_intermediate_size <= kMaxDim && h.weight_block >= 0 &&
            h.weight_block <= kMaxDim,
        "model dimensions in the header are out of range", context);
  check(h.record_bytes > 0 && h.record_bytes % kRecordAlignment == 0 && h.record_bytes <= kMaxRecordBytes,
        "bad record size " + std::to_string(h.record_bytes), context);
  check(h.record_count > 0 && h.record_count <= uint64_t(h.num_layers * h.n_routed_experts),
        "bad record count " + std::to_string(h.record_count), context);
  check(h.index_bytes == h.record_count * kIndexEntryBytes, "index size does not match the record count",
        context);
  uint64_t index_end = 0;
  check(h.index_offset >= kStoreHeaderBytes && !add_overflows(h.index_offset, h.index_bytes, &index_end) &&
            index_end <= h.data_offset && h.data_offset % kRecordAlignment == 0 &&
            h.data_offset <= h.file_bytes,
        "index or data offsets out of order", context);
  for (uint32_t i = 0; i < part_count; ++i) {
    const size_t at = kPartsAt + i * kPartBytes;
    RecordPart p{.role = get<uint32_t>(page, at),
                 .kind = get<uint32_t>(page, at + 4),
                 .dtype = get<uint32_t>(page, at + 8),
                 .rows = get<int64_t>(page, at + 16),
                 .cols = get<int64_t>(page, at + 24),
                 .offset = get<uint64_t>(page, at + 32),
                 .bytes = get<uint64_t>(page, at + 40)};
    uint64_t end = 0;
    check(p.rows >= 0 && p.rows <= kMaxDim && p.cols >= 0 && p.cols <= kMaxDim &&
              !add_overflows(p.offset, p.bytes, &end) && end <= h.record_bytes,
          "record part " + std::to_string(i) + " lies outside the record", context);
    h.parts.push_back(p);
  }
  h.source.model_path = fixed_string(page, kModelPathAt, kModelPathBytes);
  h.created_by = fixed_string(page, kCreatedByAt, kCreatedByBytes);
  return h;
}

StoreIndex StoreIndex::read(Storage& storage) {
  StoreIndex index;
  index.path_ = storage.path();
  const std::string& path = index.path_;
  check(storage.size_bytes() >= kStoreHeaderBytes,
        "the store is truncated: " + std::to_string(storage.size_bytes()) + " bytes, smaller than its " +
            std::to_string(kStoreHeaderBytes) + "-byte header",
        {.path = path, .hint = kRepack});
  AlignedBuffer page(kStoreHeaderBytes);
  read_exact(storage, 0, kStoreHeaderBytes, page.data());
  index.header_ = decode_header(std::span(page.data(), kStoreHeaderBytes), path);
  const StoreHeader& h = index.header_;
  check(storage.size_bytes() >= h.file_bytes,
        "the store is truncated: the header says " + std::to_string(h.file_bytes) + " bytes, the file has " +
            std::to_string(storage.size_bytes()),
        {.path = path, .hint = "a copy or download was cut short; " + kRepack});
  check(storage.size_bytes() == h.file_bytes,
        "the file has " + std::to_string(storage.size_bytes() - h.file_bytes) +
            " bytes more than its header says",
        {.path = path, .hint = kRepack});

  AlignedBuffer table(round_up(h.index_bytes, kPageBytes));
  read_exact(storage, h.index_offset, h.index_bytes, table.data());
  const uint64_t computed = checksum(table.data(), h.index_bytes);
  check(computed == h.index_checksum,
        "index checksum mismatch (stored " + hex(h.index_checksum) + ", computed " + hex(computed) +
            "): the store is corrupt",
        {.path = path, .hint = kRepack});

  const std::span<const uint8_t> bytes(table.data(), h.index_bytes);
  index.records_.resize(size_t(h.record_count));
  index.slot_of_.assign(size_t(h.num_layers * h.n_routed_experts), -1);
  uint64_t previous_end = h.data_offset;
  for (size_t i = 0; i < index.records_.size(); ++i) {
    RecordEntry& e = index.records_[i];
    const size_t at = i * kIndexEntryBytes;
    e.layer = get<int32_t>(bytes, at);
    e.expert = get<int32_t>(bytes, at + 4);
    e.offset = get<uint64_t>(bytes, at + 8);
    e.length = get<uint64_t>(bytes, at + 16);
    e.checksum = get<uint64_t>(bytes, at + 24);
    const std::string what = "index entry " + std::to_string(i) + " (layer " + std::to_string(e.layer) +
                             ", expert " + std::to_string(e.expert) + ")";
    check(e.layer >= 0 && e.layer < h.num_layers && e.expert >= 0 && e.expert < h.n_routed_experts,
          what + " names a layer or expert outside the model", {.path = path, .hint = kRepack});
    uint64_t end = 0;
    check(e.length == h.record_bytes && e.offset % kRecordAlignment == 0 && e.offset >= previous_end &&
              !add_overflows(e.offset, e.length, &end) && end <= h.file_bytes,
          what + ": offset " + std::to_string(e.offset) + " / length " + std::to_string(e.length) +
              " is unaligned, overlaps another record or lies outside the file",
          {.path = path, .hint = kRepack});
    previous_end = end;
    int32_t& slot = index.slot_of_[size_t(e.layer * h.n_routed_experts + e.expert)];
    check(slot < 0, what + " appears twice in the index", {.path = path, .hint = kRepack});
    slot = int32_t(i);
  }
  return index;
}

const RecordEntry* StoreIndex::find(int64_t layer, int64_t expert) const {
  if (layer < 0 || layer >= header_.num_layers || expert < 0 || expert >= header_.n_routed_experts)
    return nullptr;
  const int32_t slot = slot_of_[size_t(layer * header_.n_routed_experts + expert)];
  return slot < 0 ? nullptr : &records_[size_t(slot)];
}

void StoreIndex::verify(const RecordEntry& entry, const uint8_t* data) const {
  const uint64_t computed = checksum(data, entry.length);
  check(computed == entry.checksum,
        describe_record(path_, entry) + ": checksum mismatch (stored " + hex(entry.checksum) + ", computed " +
            hex(computed) + "): the store is corrupt",
        {.hint = "the drive returned different bytes than were packed; " + kRepack});
}

// --- writer -------------------------------------------------------------------------------------

StoreWriter::StoreWriter(std::filesystem::path path, StoreHeader header,
                         std::vector<std::pair<int32_t, int32_t>> keys, Options options)
    : path_(std::move(path)), header_(std::move(header)), durable_(options.durable) {
  check(header_.record_bytes > 0 && header_.record_bytes % kRecordAlignment == 0,
        "record size must be a positive multiple of 4096");
  check(!keys.empty(), "a store needs at least one record");
  temp_path_ = path_;
  temp_path_ += ".tmp";
  header_.version = kStoreVersion;
  header_.record_count = keys.size();
  header_.index_offset = kStoreHeaderBytes;
  header_.index_bytes = keys.size() * kIndexEntryBytes;
  header_.data_offset = round_up(header_.index_offset + header_.index_bytes, kRecordAlignment);
  header_.file_bytes = header_.data_offset + keys.size() * header_.record_bytes;
  entries_.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    entries_.push_back({.layer = keys[i].first,
                        .expert = keys[i].second,
                        .offset = header_.data_offset + i * header_.record_bytes,
                        .length = header_.record_bytes});

  // O_DIRECT keeps a pack of a model larger than RAM from churning the page cache.
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
  direct_ = fd_ >= 0;
  if (fd_ < 0) fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(fd_ >= 0, std::string("cannot create: ") + std::strerror(errno), {.path = temp_path_.string()});
}

StoreWriter::~StoreWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) {
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
  }
}

namespace {
void write_all(int fd, const uint8_t* data, uint64_t bytes, uint64_t offset, const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, data, bytes, off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    check(n > 0, std::string("write failed: ") + std::strerror(n < 0 ? errno : EIO),
          {.path = path, .hint = "check free disk space (df -h)"});
    data += n;
    bytes -= uint64_t(n);
    offset += uint64_t(n);
  }
}
}  // namespace

void StoreWriter::write_record(const uint8_t* data) {
  check(written_ < entries_.size(), "more records written than declared", {.path = temp_path_.string()});
  check(!direct_ || uintptr_t(data) % kPageBytes == 0, "record buffer must be 4 KiB-aligned");
  RecordEntry& entry = entries_[written_++];
  entry.checksum = checksum(data, entry.length);
  write_all(fd_, data, entry.length, entry.offset, temp_path_.string());
}

void StoreWriter::finish() {
  check(
      written_ == entries_.size(),
      "only " + std::to_string(written_) + " of " + std::to_string(entries_.size()) + " records were written",
      {.path = temp_path_.string()});
  AlignedBuffer table(header_.data_offset - header_.index_offset);
  for (size_t i = 0; i < entries_.size(); ++i) {
    uint8_t* at = table.data() + i * kIndexEntryBytes;
    const RecordEntry& e = entries_[i];
    std::memcpy(at, &e.layer, 4);
    std::memcpy(at + 4, &e.expert, 4);
    std::memcpy(at + 8, &e.offset, 8);
    std::memcpy(at + 16, &e.length, 8);
    std::memcpy(at + 24, &e.checksum, 8);
  }
  header_.index_checksum = checksum(table.data(), header_.index_bytes);
  write_all(fd_, table.data(), table.size(), header_.index_offset, temp_path_.string());
  const std::vector<uint8_t> page = encode_header(header_);
  AlignedBuffer aligned(kStoreHeaderBytes);
  std::memcpy(aligned.data(), page.data(), kStoreHeaderBytes);
  write_all(fd_, aligned.data(), kStoreHeaderBytes, 0, temp_path_.string());
  if (durable_)
    check(::fdatasync(fd_) == 0, std::string("fdatasync failed: ") + std::strerror(errno),
          {.path = temp_path_.string()});
  ::close(fd_);
  fd_ = -1;
  std::error_code error;
  std::filesystem::rename(temp_path_, path_, error);
  check(!error, "cannot rename " + temp_path_.string() + ": " + error.message(), {.path = path_.string()});
  finished_ = true;
  if (durable_) {
    // The rename itself is durable only once the folder is synced.
    const std::filesystem::path folder = path_.has_parent_path() ? path_.parent_path() : ".";
    const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
}

}  // namespace hetmoe::io
