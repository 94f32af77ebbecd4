// pread thread-pool backend: the fallback when io_uring cannot be set up. Each worker does one
// pread per started op and reports the raw result; Storage requeues short reads and EINTR.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "io/storage_backends.h"

namespace hetmoe::io {
namespace {

// A fixed-capacity FIFO: at most device_slots ops are in the device, so nothing allocates per read.
template <typename T>
class Ring {
 public:
  explicit Ring(size_t capacity) : items_(capacity) {}
  bool empty() const { return count_ == 0; }
  void push_back(T item) {
    items_[(head_ + count_) % items_.size()] = std::move(item);
    ++count_;
  }
  T pop_front() {
    T item = std::move(items_[head_]);
    head_ = (head_ + 1) % items_.size();
    --count_;
    return item;
  }

 private:
  std::vector<T> items_;
  size_t head_ = 0, count_ = 0;
};

class PreadStorage final : public Storage {
 public:
  PreadStorage(const OpenFile& file, const StorageOptions& options)
      : Storage(file.path, file.size_bytes, file.alignment, std::max(1u, options.pread_threads)),
        fd_(file.fd),
        started_(std::max(1u, options.pread_threads)),
        finished_(std::max(1u, options.pread_threads)) {
    const uint32_t threads = std::max(1u, options.pread_threads);
    for (uint32_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~PreadStorage() override {
    drain_device();
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers_) worker.join();
    ::close(fd_);
  }

  std::string_view backend() const override { return "pread"; }

 protected:
  void device_start(ReadOp* op) override {
    {
      std::lock_guard lock(mutex_);
      started_.push_back(op);
    }
    work_ready_.notify_one();
  }

  bool device_reap(bool block, ReadOp** op, int64_t* result) override {
    std::unique_lock lock(mutex_);
    if (finished_.empty()) {
      if (!block) return false;
      done_ready_.wait(lock, [&] { return !finished_.empty(); });
    }
    std::tie(*op, *result) = finished_.pop_front();
    return true;
  }

 private:
  void work() {
    for (;;) {
      ReadOp* op = nullptr;
      {
        std::unique_lock lock(mutex_);
        work_ready_.wait(lock, [&] { return stop_ || !started_.empty(); });
        if (started_.empty()) return;  // stop_ and nothing left
        op = started_.pop_front();
      }
      const ssize_t n =
          ::pread(fd_, op->buffer + op->done, op->length - op->done, off_t(op->offset + op->done));
      const int64_t result = n >= 0 ? int64_t(n) : -int64_t(errno);
      {
        std::lock_guard lock(mutex_);
        finished_.push_back({op, result});
      }
      done_ready_.notify_one();
    }
  }

  int fd_;
  std::mutex mutex_;
  std::condition_variable work_ready_, done_ready_;
  Ring<ReadOp*> started_;
  Ring<std::pair<ReadOp*, int64_t>> finished_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<Storage> create_pread_storage(const OpenFile& file, const StorageOptions& options) {
  return std::make_unique<PreadStorage>(file, options);
}

}  // namespace hetmoe::io
