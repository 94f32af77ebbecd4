// Asynchronous reads from one file: the storage under the expert store.
//
// The caller owns every ReadOp and the memory it reads into; nothing allocates per read
// (TigerBeetle's io/linux.zig). submit() never fails for a full queue: ops wait in an
// intrusive FIFO until the device has room. Short reads, EAGAIN and EINTR are requeued for
// the remaining bytes; a read that reaches the end of the file completes with ENODATA; any
// other failure completes the op with its errno, and describe_read_error() says what to check.
//
// Backends: io_uring (O_DIRECT, registered file and buffers, bounded queue depth, batched
// submission), a pread thread pool (when io_uring cannot be set up, or HETMOE_IO=pread), and
// FakeStorage (io/fake_storage.h) with injected faults for tests. All share the requeue logic
// in Storage, so the tests of that logic drive the real code.
//
// A Storage is used from one thread (the one that submits and waits). The destructor waits
// for reads still in the device, so buffers may be freed after the storage is destroyed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace hetmoe::io {

struct ReadOp {
  // Set by the caller.
  uint64_t offset = 0;  // file offset in bytes (a multiple of alignment() for O_DIRECT)
  uint64_t length = 0;  // bytes wanted (< 2 GiB)
  uint8_t* buffer = nullptr;
  uint64_t tag = 0;  // the caller's
  // Set by the storage.
  int32_t error = 0;       // 0, or errno of the failure (ENODATA: end of file reached)
  uint64_t done = 0;       // bytes read so far
  uint32_t retries = 0;    // requeues without progress (EAGAIN / EINTR)
  ReadOp* next = nullptr;  // link while queued inside the storage
};

enum class StorageBackend { kAuto, kUring, kPread };

struct StorageOptions {
  StorageBackend backend = StorageBackend::kAuto;  // HETMOE_IO=pread|uring overrides kAuto
  uint32_t queue_depth = 64;                       // reads in the device at once
  uint32_t submit_batch = 8;                       // io_uring: submit once this many reads are prepared
  uint32_t pread_threads = 8;                      // pread fallback: threads (= its queue depth)
  bool direct = true;            // O_DIRECT (falls back to buffered if the filesystem refuses)
  bool register_buffers = true;  // io_uring: fixed buffers (pins memory: RLIMIT_MEMLOCK)
  bool quiet = false;            // do not print the one-time fallback notice
};

// A region reads will target; io_uring registers it so reads skip per-I/O page pinning.
struct BufferRegion {
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  virtual std::string_view backend() const = 0;  // "io_uring", "pread", "fake"
  const std::string& path() const { return path_; }
  uint64_t size_bytes() const { return size_bytes_; }
  // Offsets, lengths and buffers must be multiples of this (O_DIRECT); 1 when buffered.
  uint64_t alignment() const { return alignment_; }

  // Optional: io_uring registers the regions as fixed buffers; reads whose buffer lies
  // inside one then use it. Registration failures fall back to plain reads (said once).
  virtual void register_buffers(std::span<const BufferRegion> regions) {}

  // Queues a read; it starts as soon as the device has room.
  void submit(ReadOp* op);
  // Hands everything queued to the device now (submit() batches).
  void flush();
  // A completed op (check op->error), or nullptr when nothing has completed and `block` is
  // false, or nothing is in flight at all.
  ReadOp* wait(bool block);
  // Ops submitted and not yet returned by wait().
  uint64_t in_flight() const { return in_flight_; }
  // Most ops in the device at once (the queue depth; the pread pool's thread count).
  uint32_t queue_depth() const { return device_slots_; }
  // Lets at most `reads` ops (1 .. queue_depth()) into the device from now on; the rest wait
  // in the queue, where cancel_queued() can still withdraw them. Ops already in the device
  // stay there. Raising it starts queued ops at the next submit/flush/wait.
  void set_depth_limit(uint32_t reads) { depth_limit_ = std::clamp<uint32_t>(reads, 1, device_slots_); }
  uint32_t depth_limit() const { return depth_limit_; }
  // Withdraws the ops tagged `tag` that wait for a device slot (queued, or requeued after a
  // short read); wait() never returns them. Ops in the device are left to complete. Returns
  // how many were withdrawn.
  uint64_t cancel_queued(uint64_t tag);

 protected:
  Storage(std::string path, uint64_t size_bytes, uint64_t alignment, uint32_t device_slots)
      : path_(std::move(path)),
        size_bytes_(size_bytes),
        alignment_(alignment),
        device_slots_(device_slots),
        depth_limit_(device_slots) {}

  // Backend hooks. device_start reads op->length - op->done bytes at op->offset + op->done
  // into op->buffer + op->done. device_reap returns one raw result (bytes read or -errno) of a
  // started op; false when none is available (block == false) — it must not block when no op
  // is in the device.
  virtual void device_start(ReadOp* op) = 0;
  virtual void device_flush() {}
  virtual bool device_reap(bool block, ReadOp** op, int64_t* result) = 0;
  // Called by derived destructors: waits for every op in the device.
  void drain_device();

 private:
  void pump();
  void push_front(ReadOp* op);

  std::string path_;
  uint64_t size_bytes_ = 0;
  uint64_t alignment_ = 1;
  uint32_t device_slots_ = 1;
  uint32_t depth_limit_ = 1;  // <= device_slots_
  uint32_t in_device_ = 0;
  uint64_t in_flight_ = 0;
  ReadOp* queue_head_ = nullptr;  // waiting for a device slot, FIFO
  ReadOp* queue_tail_ = nullptr;
};

// Opens `path` read-only with the backend the options and HETMOE_IO ask for. kAuto tries
// io_uring and, when it cannot be set up, falls back to the pread pool and says so once on
// stderr with the reason. Throws hetmoe::Error if the file cannot be opened, or if io_uring
// was forced and cannot be set up.
std::unique_ptr<Storage> open_storage(const std::filesystem::path& path, const StorageOptions& options = {});

// "read of 1048576 bytes at offset 4096 of PATH (io_uring) failed: Input/output error
// (errno 5)" plus the likely cause.
std::string describe_read_error(const Storage& storage, const ReadOp& op);
// What to check for an errno from io_uring setup or a read.
std::string likely_cause(int error, bool during_setup);

// Reads [offset, offset + length) synchronously through `storage`, which must have nothing
// else in flight, into `buffer` (any alignment: bounced when needed); throws hetmoe::Error with
// describe_read_error() on failure.
void read_exact(Storage& storage, uint64_t offset, uint64_t length, uint8_t* buffer);

}  // namespace hetmoe::io
