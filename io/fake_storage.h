// A Storage over bytes in memory with injected faults and shuffled completion order, for
// tests (TigerBeetle's testing/storage.zig). It runs through the same requeue logic as the
// real backends (Storage::wait), so short reads, EAGAIN and EINTR exercise that code.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "io/storage.h"

namespace hetmoe::io {

struct FakeFaults {
  int fail_errno = 0;  // reads touching [fail_begin, fail_end) fail with this errno
  uint64_t fail_begin = 0;
  uint64_t fail_end = UINT64_MAX;
  uint64_t short_read_bytes = 0;       // each device read returns at most this many bytes (0: all)
  uint32_t eagain_every = 0;           // every Nth device read answers EAGAIN first (0: never)
  uint32_t eintr_every = 0;            // every Nth device read answers EINTR first (0: never)
  bool always_eagain = false;          // a device that never makes progress
  double not_ready_probability = 0.5;  // a non-blocking wait finds nothing done (reads "in flight")
  uint32_t device_slots = 16;          // queue depth of the fake device
  uint64_t seed = 1;                   // completion order and readiness draws
};

class FakeStorage final : public Storage {
 public:
  FakeStorage(std::string path, std::vector<uint8_t> bytes, FakeFaults faults = {}, uint64_t alignment = 1);
  // The bytes of a real file (e.g. a packed store), optionally cut to `keep_bytes`.
  static std::unique_ptr<FakeStorage> from_file(const std::filesystem::path& path, FakeFaults faults = {},
                                                uint64_t keep_bytes = UINT64_MAX);
  ~FakeStorage() override;

  std::string_view backend() const override { return "fake"; }
  std::vector<uint8_t>& bytes() { return bytes_; }  // flip bits to corrupt records
  FakeFaults& faults() { return faults_; }
  uint64_t device_reads() const { return device_reads_; }
  uint64_t bytes_read() const { return bytes_read_; }

 protected:
  void device_start(ReadOp* op) override;
  bool device_reap(bool block, ReadOp** op, int64_t* result) override;

 private:
  std::vector<uint8_t> bytes_;
  FakeFaults faults_;
  std::vector<ReadOp*> in_device_;
  std::mt19937_64 random_;
  uint64_t device_reads_ = 0;
  uint64_t bytes_read_ = 0;
};

}  // namespace hetmoe::io
