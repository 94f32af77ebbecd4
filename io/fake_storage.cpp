#include "io/fake_storage.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "engine/core/error.h"

namespace hetmoe::io {

FakeStorage::FakeStorage(std::string path, std::vector<uint8_t> bytes, FakeFaults faults, uint64_t alignment)
    : Storage(std::move(path), bytes.size(), alignment, std::max(1u, faults.device_slots)),
      bytes_(std::move(bytes)),
      faults_(faults),
      random_(faults.seed) {
  in_device_.reserve(std::max(1u, faults.device_slots));
}

FakeStorage::~FakeStorage() {
  drain_device();
}

std::unique_ptr<FakeStorage> FakeStorage::from_file(const std::filesystem::path& path, FakeFaults faults,
                                                    uint64_t keep_bytes) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot open", {.path = path.string()});
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > keep_bytes) bytes.resize(keep_bytes);
  return std::make_unique<FakeStorage>(path.string(), std::move(bytes), faults);
}

void FakeStorage::device_start(ReadOp* op) {
  in_device_.push_back(op);
}

bool FakeStorage::device_reap(bool block, ReadOp** op, int64_t* result) {
  if (in_device_.empty()) return false;
  if (!block && std::uniform_real_distribution<double>(0, 1)(random_) < faults_.not_ready_probability)
    return false;
  // Complete a random one of the reads in the device: order must never matter to the caller.
  const size_t pick = std::uniform_int_distribution<size_t>(0, in_device_.size() - 1)(random_);
  ReadOp* read = in_device_[pick];
  in_device_[pick] = in_device_.back();
  in_device_.pop_back();
  *op = read;
  ++device_reads_;
  const uint64_t offset = read->offset + read->done;
  const uint64_t wanted = read->length - read->done;
  if (faults_.always_eagain || (faults_.eagain_every > 0 && device_reads_ % faults_.eagain_every == 0)) {
    *result = -EAGAIN;
  } else if (faults_.eintr_every > 0 && device_reads_ % faults_.eintr_every == 0) {
    *result = -EINTR;
  } else if (faults_.fail_errno != 0 && offset < faults_.fail_end && offset + wanted > faults_.fail_begin) {
    *result = -faults_.fail_errno;
  } else if (offset >= bytes_.size()) {
    *result = 0;  // end of file
  } else {
    uint64_t n = std::min<uint64_t>(wanted, bytes_.size() - offset);
    if (faults_.short_read_bytes > 0) n = std::min(n, faults_.short_read_bytes);
    std::memcpy(read->buffer + read->done, bytes_.data() + offset, n);
    bytes_read_ += n;
    *result = int64_t(n);
  }
  return true;
}

}  // namespace hetmoe::io
