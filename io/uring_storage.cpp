// io_uring backend: one ring per storage, the store's fd registered as fixed file 0, cache and
// staging regions registered as fixed buffers, reads batched into one io_uring_submit.
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "engine/core/error.h"
#include "io/storage_backends.h"

namespace hetmoe::io {
namespace {

// The kernel caps one fixed buffer at 1 GiB.
constexpr uint64_t kMaxFixedBufferBytes = uint64_t(1) << 30;

class UringStorage final : public Storage {
 public:
  UringStorage(const OpenFile& file, const StorageOptions& options, io_uring ring)
      : Storage(file.path, file.size_bytes, file.alignment, std::max(1u, options.queue_depth)),
        ring_(ring),
        fd_(file.fd),
        batch_(std::max(1u, options.submit_batch)),
        use_fixed_buffers_(options.register_buffers),
        quiet_(options.quiet) {
    // A fixed file saves the fd lookup and reference count per read.
    fixed_file_ = io_uring_register_files(&ring_, &fd_, 1) == 0;
  }

  ~UringStorage() override {
    drain_device();
    io_uring_queue_exit(&ring_);
    ::close(fd_);
  }

  std::string_view backend() const override { return "io_uring"; }

  void register_buffers(std::span<const BufferRegion> regions) override {
    if (!use_fixed_buffers_ || regions.empty()) return;
    if (!fixed_.empty()) io_uring_unregister_buffers(&ring_);
    fixed_.clear();
    std::vector<iovec> iovecs;
    for (const BufferRegion& region : regions) {
      for (uint64_t at = 0; at < region.bytes; at += kMaxFixedBufferBytes) {
        const uint64_t bytes = std::min(kMaxFixedBufferBytes, region.bytes - at);
        iovecs.push_back({region.data + at, bytes});
        fixed_.push_back({region.data + at, bytes});
      }
    }
    const int rc = io_uring_register_buffers(&ring_, iovecs.data(), unsigned(iovecs.size()));
    if (rc < 0) {
      fixed_.clear();
      if (!quiet_)
        notice_once(2, std::string("io_uring could not register ") + std::to_string(iovecs.size()) +
                           " buffers: " + std::strerror(-rc) + "; likely cause: " + likely_cause(-rc, true) +
                           "; reading without fixed buffers");
      return;
    }
    std::sort(fixed_.begin(), fixed_.end(),
              [](const BufferRegion& a, const BufferRegion& b) { return a.data < b.data; });
    // io_uring numbers fixed buffers in registration order; keep that index after sorting.
    fixed_index_.assign(fixed_.size(), 0);
    for (size_t i = 0; i < fixed_.size(); ++i)
      for (size_t j = 0; j < iovecs.size(); ++j)
        if (iovecs[j].iov_base == fixed_[i].data) fixed_index_[i] = int(j);
  }

 protected:
  void device_start(ReadOp* op) override {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // the SQ ring is full of prepared entries: hand them over first
      submit_prepared();
      sqe = io_uring_get_sqe(&ring_);
      check(sqe != nullptr, "io_uring submission queue stays full", {.path = path()});
    }
    uint8_t* buffer = op->buffer + op->done;
    const unsigned bytes = unsigned(op->length - op->done);
    const uint64_t offset = op->offset + op->done;
    const int fd = fixed_file_ ? 0 : fd_;
    const int index = fixed_buffer_for(buffer, bytes);
    if (index >= 0) {
      io_uring_prep_read_fixed(sqe, fd, buffer, bytes, offset, index);
    } else {
      io_uring_prep_read(sqe, fd, buffer, bytes, offset);
    }
    if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, op);
    if (++prepared_ >= batch_) submit_prepared();
  }

  void device_flush() override { submit_prepared(); }

  bool device_reap(bool block, ReadOp** op, int64_t* result) override {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_peek_cqe(&ring_, &cqe);
    if (rc != 0 || cqe == nullptr) {
      if (!block) return false;
      submit_prepared();
      do {
        rc = io_uring_wait_cqe(&ring_, &cqe);
      } while (rc == -EINTR);
      check(rc == 0 && cqe != nullptr,
            std::string("io_uring_wait_cqe failed: ") + std::strerror(-rc) +
                "; likely cause: " + likely_cause(-rc, false),
            {.path = path()});
    }
    *op = static_cast<ReadOp*>(io_uring_cqe_get_data(cqe));
    *result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    return true;
  }

 private:
  void submit_prepared() {
    while (prepared_ > 0) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0) {
        prepared_ -= std::min<uint32_t>(prepared_, uint32_t(rc));
        if (rc == 0) break;  // nothing consumed; entries stay for the next call
        continue;
      }
      if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) continue;
      throw Error(std::string("io_uring_submit failed: ") + std::strerror(-rc) +
                      "; likely cause: " + likely_cause(-rc, false),
                  {.path = path()});
    }
  }

  int fixed_buffer_for(const uint8_t* buffer, uint64_t bytes) const {
    auto it = std::upper_bound(fixed_.begin(), fixed_.end(), buffer,
                               [](const uint8_t* p, const BufferRegion& r) { return p < r.data; });
    if (it == fixed_.begin()) return -1;
    --it;
    if (buffer + bytes > it->data + it->bytes) return -1;
    return fixed_index_[size_t(it - fixed_.begin())];
  }

  io_uring ring_;
  int fd_;
  uint32_t batch_;
  uint32_t prepared_ = 0;
  bool fixed_file_ = false;
  bool use_fixed_buffers_;
  bool quiet_;
  std::vector<BufferRegion> fixed_;  // sorted by address
  std::vector<int> fixed_index_;     // registration index of fixed_[i]
};

}  // namespace

std::unique_ptr<Storage> create_uring_storage(const OpenFile& file, const StorageOptions& options,
                                              int* setup_errno) {
  io_uring ring{};
  io_uring_params params{};
  // No SINGLE_ISSUER / COOP_TASKRUN: the ring may be created on one thread and driven from
  // another, and the pipeline polls completions without entering the kernel.
  params.cq_entries = 2 * std::max(1u, options.queue_depth);
  params.flags = IORING_SETUP_CQSIZE;
  const int rc = io_uring_queue_init_params(std::max(1u, options.queue_depth), &ring, &params);
  if (rc < 0) {
    *setup_errno = -rc;
    return nullptr;
  }
  return std::make_unique<UringStorage>(file, options, ring);
}

}  // namespace hetmoe::io
