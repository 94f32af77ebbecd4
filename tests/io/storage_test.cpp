// Storage backends: real io_uring and pread reads against a file, and the shared requeue logic
// driven through FakeStorage's injected faults.
#include "io/storage.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "engine/core/error.h"
#include "io/aligned_buffer.h"
#include "io/fake_storage.h"

namespace hetmoe::io {
namespace {

class TempFile {
 public:
  explicit TempFile(uint64_t bytes) {
    path_ = std::filesystem::temp_directory_path() /
            ("hetmoe-io-" + std::to_string(getpid()) + "-" + std::to_string(counter_++) + ".bin");
    std::mt19937_64 random(bytes);
    content_.resize(bytes);
    for (auto& b : content_) b = uint8_t(random());
    std::ofstream(path_, std::ios::binary)
        .write(reinterpret_cast<const char*>(content_.data()), std::streamsize(bytes));
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::filesystem::path& path() const { return path_; }
  const std::vector<uint8_t>& content() const { return content_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
  std::vector<uint8_t> content_;
};

// Reads the whole file as `chunk`-byte ops, many more than the queue depth, and checks bytes.
void read_all_and_compare(Storage& storage, const std::vector<uint8_t>& content, uint64_t chunk,
                          bool register_it) {
  AlignedBuffer buffer(round_up(content.size(), kPageBytes));
  if (register_it) {
    const BufferRegion region{buffer.data(), buffer.size()};
    storage.register_buffers(std::span(&region, 1));
  }
  std::vector<ReadOp> ops(size_t((content.size() + chunk - 1) / chunk));
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i].offset = i * chunk;
    ops[i].length = std::min<uint64_t>(chunk, content.size() - i * chunk);
    ops[i].buffer = buffer.data() + i * chunk;
    ops[i].tag = i;
    storage.submit(&ops[i]);
  }
  EXPECT_EQ(storage.in_flight(), ops.size());
  size_t completed = 0;
  while (ReadOp* op = storage.wait(true)) {
    EXPECT_EQ(op->error, 0) << describe_read_error(storage, *op);
    EXPECT_EQ(op->done, op->length);
    ++completed;
  }
  EXPECT_EQ(completed, ops.size());
  EXPECT_EQ(storage.in_flight(), 0u);
  EXPECT_EQ(0, std::memcmp(buffer.data(), content.data(), content.size()));
}

TEST(Storage, IoUringReadsMatchTheFile) {
  TempFile file(8 << 20);
  auto storage =
      open_storage(file.path(), {.backend = StorageBackend::kUring, .queue_depth = 8, .submit_batch = 3});
  EXPECT_EQ(storage->backend(), "io_uring");
  EXPECT_EQ(storage->alignment(), 4096u);
  read_all_and_compare(*storage, file.content(), 256 << 10, false);
  read_all_and_compare(*storage, file.content(), 64 << 10, true);  // fixed buffers
}

TEST(Storage, PreadPoolReadsMatchTheFile) {
  TempFile file(8 << 20);
  auto storage = open_storage(file.path(), {.backend = StorageBackend::kPread, .pread_threads = 3});
  EXPECT_EQ(storage->backend(), "pread");
  read_all_and_compare(*storage, file.content(), 256 << 10, true);
}

TEST(Storage, EnvironmentForcesThePreadFallback) {
  TempFile file(1 << 20);
  setenv("HETMOE_IO", "pread", 1);
  auto storage = open_storage(file.path(), {.quiet = true});
  EXPECT_EQ(storage->backend(), "pread");
  read_all_and_compare(*storage, file.content(), 128 << 10, false);
  setenv("HETMOE_IO", "bogus", 1);
  EXPECT_THROW(open_storage(file.path()), Error);
  unsetenv("HETMOE_IO");
  EXPECT_EQ(open_storage(file.path())->backend(), "io_uring");
}

TEST(Storage, ReadPastTheEndIsENODATA) {
  TempFile file(64 << 10);
  for (auto backend : {StorageBackend::kUring, StorageBackend::kPread}) {
    auto storage = open_storage(file.path(), {.backend = backend});
    AlignedBuffer buffer(128 << 10);
    ReadOp op{.offset = 32 << 10, .length = 64 << 10, .buffer = buffer.data()};
    storage->submit(&op);
    ASSERT_EQ(storage->wait(true), &op);
    EXPECT_EQ(op.error, ENODATA);
    EXPECT_EQ(op.done, 32u << 10);  // the short read was requeued until the end of the file
    EXPECT_NE(describe_read_error(*storage, op).find("truncated"), std::string::npos);
  }
}

TEST(Storage, MissingFileIsAClearError) {
  try {
    open_storage("/nonexistent/store.hmx");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/store.hmx"), std::string::npos);
  }
}

TEST(Storage, ReadExactBouncesUnalignedRequests) {
  TempFile file(100000);  // not a multiple of 4096
  auto storage = open_storage(file.path());
  std::vector<uint8_t> out(5000);
  read_exact(*storage, 94000, 5000, out.data());  // ends 1000 bytes before EOF, rounds past it
  EXPECT_EQ(0, std::memcmp(out.data(), file.content().data() + 94000, 5000));
  EXPECT_THROW(read_exact(*storage, 99000, 5000, out.data()), Error);
}

// --- fake storage: faults -------------------------------------------------------------------

std::vector<uint8_t> random_bytes(size_t n) {
  std::mt19937_64 random(n);
  std::vector<uint8_t> bytes(n);
  for (auto& b : bytes) b = uint8_t(random());
  return bytes;
}

TEST(FakeStorage, ShortReadsAreRequeued) {
  const auto bytes = random_bytes(1 << 20);
  FakeStorage storage("fake", bytes, {.short_read_bytes = 777, .device_slots = 4});
  read_all_and_compare(storage, bytes, 64 << 10, false);
  EXPECT_GT(storage.device_reads(), (1u << 20) / 777);
}

TEST(FakeStorage, EagainAndEintrAreRequeued) {
  const auto bytes = random_bytes(1 << 20);
  FakeStorage storage("fake", bytes, {.eagain_every = 3, .eintr_every = 5, .device_slots = 7, .seed = 9});
  read_all_and_compare(storage, bytes, 16 << 10, false);
}

TEST(FakeStorage, ADeviceThatNeverProgressesFailsInsteadOfHanging) {
  FakeStorage storage("fake", random_bytes(8192), {.always_eagain = true});
  std::vector<uint8_t> out(4096);
  ReadOp op{.offset = 0, .length = 4096, .buffer = out.data()};
  storage.submit(&op);
  ASSERT_EQ(storage.wait(true), &op);
  EXPECT_EQ(op.error, EAGAIN);
  EXPECT_NE(describe_read_error(storage, op).find("overloaded"), std::string::npos);
}

TEST(FakeStorage, AFailingReadCarriesErrnoAndCause) {
  const auto bytes = random_bytes(1 << 20);
  FakeStorage storage("store.hmx", bytes, {.fail_errno = EIO, .fail_begin = 300000, .fail_end = 300001});
  std::vector<uint8_t> out(bytes.size());
  std::vector<ReadOp> ops(16);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i] = {.offset = i * 65536, .length = 65536, .buffer = out.data() + i * 65536};
    storage.submit(&ops[i]);
  }
  int failed = 0;
  while (ReadOp* op = storage.wait(true)) {
    if (op->error != 0) {
      ++failed;
      EXPECT_EQ(op->error, EIO);
      EXPECT_EQ(op->offset, 262144u);
      const std::string text = describe_read_error(storage, *op);
      EXPECT_NE(text.find("errno 5"), std::string::npos) << text;
      EXPECT_NE(text.find("dmesg"), std::string::npos) << text;
    }
  }
  EXPECT_EQ(failed, 1);
}

TEST(FakeStorage, NonBlockingWaitSeesReadsInFlight) {
  const auto bytes = random_bytes(1 << 16);
  FakeStorage storage("fake", bytes, {.not_ready_probability = 1.0});
  std::vector<uint8_t> out(4096);
  ReadOp op{.offset = 0, .length = 4096, .buffer = out.data()};
  storage.submit(&op);
  EXPECT_EQ(storage.wait(false), nullptr);
  EXPECT_EQ(storage.in_flight(), 1u);
  EXPECT_EQ(storage.wait(true), &op);
  EXPECT_EQ(storage.wait(true), nullptr);  // nothing left: never blocks
}

// Tags 0..3 round-robin over 64 reads, 4 device slots: cancelling tag 2 after submission
// withdraws exactly its queued reads; every other read completes with the file's bytes.
void cancel_one_tag(Storage& storage, const std::vector<uint8_t>& content) {
  constexpr uint64_t kChunk = 4096;
  AlignedBuffer buffer(64 * kChunk);
  std::vector<ReadOp> ops(64);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i] = {.offset = i * kChunk, .length = kChunk, .buffer = buffer.data() + i * kChunk, .tag = i % 4};
    storage.submit(&ops[i]);
  }
  const uint64_t removed = storage.cancel_queued(2);
  EXPECT_GE(removed, 12u);  // at most 4 of tag 2's 16 reads can be in the device
  EXPECT_LE(removed, 16u);
  EXPECT_EQ(storage.in_flight(), 64u - removed);
  std::vector<int> returned(ops.size(), 0);
  while (ReadOp* op = storage.wait(true)) {
    EXPECT_EQ(op->error, 0) << describe_read_error(storage, *op);
    const size_t i = size_t(op - ops.data());
    ++returned[i];
    EXPECT_EQ(0, std::memcmp(op->buffer, content.data() + op->offset, kChunk)) << i;
  }
  uint64_t total = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i % 4 != 2) {
      EXPECT_EQ(returned[i], 1) << i;
    }
    total += uint64_t(returned[i]);
  }
  EXPECT_EQ(total, 48u + (16u - removed));
  EXPECT_EQ(storage.in_flight(), 0u);
  EXPECT_EQ(storage.cancel_queued(2), 0u);  // nothing left to withdraw
}

TEST(FakeStorage, CancelWithdrawsOnlyQueuedReadsOfTheTag) {
  const auto bytes = random_bytes(64 * 4096);
  FakeStorage storage("fake", bytes, {.device_slots = 4, .seed = 3});
  cancel_one_tag(storage, bytes);
}

TEST(Storage, IoUringCancelWithdrawsOnlyQueuedReadsOfTheTag) {
  TempFile file(64 * 4096);
  auto storage = open_storage(file.path(), {.backend = StorageBackend::kUring, .queue_depth = 4, .quiet = true});
  cancel_one_tag(*storage, file.content());
}

// A depth limit of 2 on an 8-slot device: of 8 reads of tag 1 only 2 enter the device, so 6
// can be withdrawn; with the limit raised, 6 more reads all enter the device at once.
void limit_the_depth(Storage& storage, const std::vector<uint8_t>& content) {
  constexpr uint64_t kChunk = 4096;
  ASSERT_EQ(storage.queue_depth(), 8u);
  storage.set_depth_limit(0);
  EXPECT_EQ(storage.depth_limit(), 1u);
  storage.set_depth_limit(1000);
  EXPECT_EQ(storage.depth_limit(), 8u);
  storage.set_depth_limit(2);
  AlignedBuffer buffer(14 * kChunk);
  std::vector<ReadOp> ops(14);
  for (size_t i = 0; i < ops.size(); ++i)
    ops[i] = {.offset = i * kChunk, .length = kChunk, .buffer = buffer.data() + i * kChunk, .tag = i < 8 ? 1u : 2u};
  for (size_t i = 0; i < 8; ++i) storage.submit(&ops[i]);
  EXPECT_EQ(storage.cancel_queued(1), 6u);
  storage.set_depth_limit(8);
  for (size_t i = 8; i < 14; ++i) storage.submit(&ops[i]);
  EXPECT_EQ(storage.cancel_queued(2), 0u);  // 2 + 6 reads fit the device
  std::vector<int> returned(ops.size(), 0);
  while (ReadOp* op = storage.wait(true)) {
    EXPECT_EQ(op->error, 0) << describe_read_error(storage, *op);
    const size_t i = size_t(op - ops.data());
    ++returned[i];
    EXPECT_EQ(0, std::memcmp(op->buffer, content.data() + op->offset, kChunk)) << i;
  }
  EXPECT_EQ(returned, (std::vector<int>{1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
}

TEST(FakeStorage, DepthLimitKeepsReadsWithdrawable) {
  const auto bytes = random_bytes(14 * 4096);
  FakeStorage storage("fake", bytes, {.device_slots = 8, .seed = 5});
  limit_the_depth(storage, bytes);
}

TEST(Storage, IoUringDepthLimitKeepsReadsWithdrawable) {
  TempFile file(14 * 4096);
  auto storage = open_storage(file.path(), {.backend = StorageBackend::kUring, .queue_depth = 8, .quiet = true});
  limit_the_depth(*storage, file.content());
}

TEST(Storage, LikelyCausesNameTheKnobs) {
  EXPECT_NE(likely_cause(EPERM, true).find("io_uring_disabled"), std::string::npos);
  EXPECT_NE(likely_cause(EPERM, true).find("seccomp"), std::string::npos);
  EXPECT_NE(likely_cause(ENOMEM, true).find("RLIMIT_MEMLOCK"), std::string::npos);
}

}  // namespace
}  // namespace hetmoe::io
