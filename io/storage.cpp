#include "io/storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/core/error.h"
#include "io/aligned_buffer.h"
#include "io/storage_backends.h"

namespace hetmoe::io {
namespace {

// EAGAIN / EINTR requeues of one op without progress before it fails: a device that never
// makes progress must give an error, not a hang.
constexpr uint32_t kMaxRetries = 1000;

StorageBackend backend_from_environment(StorageBackend requested) {
  const char* value = std::getenv("HETMOE_IO");
  if (value == nullptr || *value == '\0' || requested != StorageBackend::kAuto) return requested;
  const std::string_view text = value;
  if (text == "pread") return StorageBackend::kPread;
  if (text == "uring" || text == "io_uring") return StorageBackend::kUring;
  if (text == "auto") return StorageBackend::kAuto;
  throw Error("HETMOE_IO=" + std::string(text) + " is not a storage backend",
              {.hint = "use pread, io_uring or auto"});
}

}  // namespace

void notice_once(int key, const std::string& message) {
  // One flag per kind of notice, for the whole process: a fallback is said once, not per store.
  static std::atomic<uint32_t> said{0};
  const uint32_t bit = 1u << (key & 31);
  if ((said.fetch_or(bit) & bit) == 0) std::fprintf(stderr, "hetmoe: %s\n", message.c_str());
}

void Storage::submit(ReadOp* op) {
  op->error = 0;
  op->done = 0;
  op->retries = 0;
  op->next = nullptr;
  if (queue_tail_ != nullptr) {
    queue_tail_->next = op;
  } else {
    queue_head_ = op;
  }
  queue_tail_ = op;
  ++in_flight_;
  pump();
}

void Storage::push_front(ReadOp* op) {
  op->next = queue_head_;
  queue_head_ = op;
  if (queue_tail_ == nullptr) queue_tail_ = op;
}

void Storage::pump() {
  while (in_device_ < depth_limit_ && queue_head_ != nullptr) {
    ReadOp* op = queue_head_;
    queue_head_ = op->next;
    if (queue_head_ == nullptr) queue_tail_ = nullptr;
    op->next = nullptr;
    ++in_device_;
    device_start(op);
  }
}

uint64_t Storage::cancel_queued(uint64_t tag) {
  uint64_t removed = 0;
  ReadOp* kept_tail = nullptr;
  for (ReadOp** link = &queue_head_; *link != nullptr;) {
    ReadOp* op = *link;
    if (op->tag == tag) {
      *link = op->next;
      op->next = nullptr;
      ++removed;
    } else {
      kept_tail = op;
      link = &op->next;
    }
  }
  queue_tail_ = kept_tail;
  in_flight_ -= removed;
  return removed;
}

void Storage::flush() {
  pump();
  device_flush();
}

ReadOp* Storage::wait(bool block) {
  for (;;) {
    flush();
    if (in_device_ == 0) return nullptr;  // nothing in flight (pump() filled the device)
    ReadOp* op = nullptr;
    int64_t result = 0;
    if (!device_reap(block, &op, &result)) return nullptr;
    --in_device_;
    if (result == -EAGAIN || result == -EINTR) {
      if (++op->retries <= kMaxRetries) {
        push_front(op);  // requeue: same bytes again
        continue;
      }
      result = -result;
      op->error = int32_t(result);
    } else if (result < 0) {
      op->error = int32_t(-result);
    } else if (result == 0) {
      op->error = ENODATA;  // end of file before `length` bytes
    } else {
      op->done += uint64_t(result);
      op->retries = 0;
      if (op->done < op->length) {
        push_front(op);  // short read: requeue the rest
        continue;
      }
    }
    --in_flight_;
    return op;
  }
}

void Storage::drain_device() {
  queue_head_ = queue_tail_ = nullptr;
  while (in_device_ > 0) {
    ReadOp* op = nullptr;
    int64_t result = 0;
    if (!device_reap(true, &op, &result)) break;
    --in_device_;
  }
  in_flight_ = 0;
}

std::string likely_cause(int error, bool during_setup) {
  switch (error) {
    case EPERM:
    case EACCES:
      return during_setup
                 ? "io_uring is disabled or blocked: check sysctl kernel.io_uring_disabled (0 allows it) "
                   "and the seccomp profile (Docker's default profile blocks io_uring_setup)"
                 : "permission denied: check the store file's permissions";
    case ENOSYS:
      return "this kernel has no io_uring (Linux 5.6+ is needed) or a seccomp filter answers ENOSYS";
    case ENOMEM:
      return during_setup ? "the kernel could not allocate the ring or pin registered buffers: raise "
                            "RLIMIT_MEMLOCK (ulimit -l, or LimitMEMLOCK= for systemd services) or lower the "
                            "queue depth / --dram-budget"
                          : "the kernel is out of memory";
    case EINVAL:
      return during_setup ? "the kernel rejected the io_uring parameters (too old for this setup?)"
                          : "invalid read: with O_DIRECT offset, length and buffer must be aligned to the "
                            "device's logical block size, and the filesystem must support O_DIRECT; "
                            "HETMOE_IO=pread reads without io_uring";
    case EIO:
      return "device I/O error: check dmesg and the drive's health (nvme smart-log, smartctl)";
    case ENODATA:
      return "the read reached the end of the file: the store is truncated; re-create it with hetmoe pack";
    case EFAULT:
      return "bad buffer address (a registered buffer that does not cover the read?)";
    case EBADF:
      return "the store's file descriptor is not valid (closed under the reader?)";
    case EAGAIN:
      return "the device kept answering EAGAIN: it is overloaded; lower the queue depth";
    case EINTR:
      return "the read kept being interrupted by signals";
    default:
      return {};
  }
}

std::string describe_read_error(const Storage& storage, const ReadOp& op) {
  std::string text = "read of " + std::to_string(op.length) + " bytes at offset " +
                     std::to_string(op.offset) + " of " + storage.path() + " (" +
                     std::string(storage.backend()) + ") failed after " + std::to_string(op.done) +
                     " bytes: " + std::strerror(op.error) + " (errno " + std::to_string(op.error) + ")";
  const std::string cause = likely_cause(op.error, false);
  if (!cause.empty()) text += "; likely cause: " + cause;
  return text;
}

void read_exact(Storage& storage, uint64_t offset, uint64_t length, uint8_t* buffer) {
  if (length == 0) return;
  check(storage.in_flight() == 0, "read_exact on a storage with reads in flight");
  const uint64_t align = storage.alignment();
  const bool aligned = offset % align == 0 && length % align == 0 && uintptr_t(buffer) % align == 0;
  AlignedBuffer bounce;
  ReadOp op;
  op.offset = offset / align * align;
  op.length = aligned ? length : round_up(offset + length, align) - op.offset;
  if (!aligned) bounce = AlignedBuffer(op.length);
  op.buffer = aligned ? buffer : bounce.data();
  storage.submit(&op);
  ReadOp* done = nullptr;
  while ((done = storage.wait(true)) != nullptr && done != &op) {
  }
  check(done == &op,
        "read at offset " + std::to_string(offset) + " of " + storage.path() + " never completed");
  const uint64_t needed = offset + length - op.offset;
  // A rounded-up read may run past the end of the file: only the bytes asked for matter.
  if (op.error != 0 && !(op.error == ENODATA && op.done >= needed))
    throw Error(describe_read_error(storage, op));
  if (!aligned) std::memcpy(buffer, bounce.data() + (offset - op.offset), length);
}

std::unique_ptr<Storage> open_storage(const std::filesystem::path& path, const StorageOptions& options) {
  const StorageBackend backend = backend_from_environment(options.backend);
  OpenFile file{.path = path.string()};
  file.fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC | (options.direct ? O_DIRECT : 0));
  if (file.fd >= 0 && options.direct) file.alignment = kPageBytes;
  if (file.fd < 0 && options.direct && errno == EINVAL) {
    // The filesystem does not do O_DIRECT (some FUSE / overlay setups): read through the page cache.
    file.fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (!options.quiet)
      notice_once(0, file.path + ": the filesystem refuses O_DIRECT; reading through the page cache");
  }
  check(file.fd >= 0, std::string("cannot open: ") + std::strerror(errno), {.path = file.path});
  struct stat st {};
  if (fstat(file.fd, &st) != 0) {
    const int e = errno;
    ::close(file.fd);
    throw Error(std::string("cannot stat: ") + std::strerror(e), {.path = file.path});
  }
  file.size_bytes = uint64_t(st.st_size);

  if (backend != StorageBackend::kPread) {
    int setup_errno = 0;
    if (auto storage = create_uring_storage(file, options, &setup_errno)) return storage;
    const std::string reason = std::string(std::strerror(setup_errno)) + " (errno " +
                               std::to_string(setup_errno) +
                               "); likely cause: " + likely_cause(setup_errno, true);
    if (backend == StorageBackend::kUring) {
      ::close(file.fd);
      throw Error("io_uring cannot be set up: " + reason,
                  {.path = file.path, .hint = "HETMOE_IO=pread uses a pread thread pool"});
    }
    if (!options.quiet)
      notice_once(1, "io_uring cannot be set up: " + reason + "; using a pread thread pool instead");
  }
  return create_pread_storage(file, options);
}

}  // namespace hetmoe::io
