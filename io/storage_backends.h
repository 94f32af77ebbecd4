// The real backends behind open_storage() (io/storage.h). Internal to io/.
#pragma once

#include <memory>

#include "io/storage.h"

namespace hetmoe::io {

struct OpenFile {
  int fd = -1;  // owned by the backend once created
  std::string path;
  uint64_t size_bytes = 0;
  uint64_t alignment = 1;  // 4096 with O_DIRECT
};

// nullptr with *setup_errno set when io_uring cannot be set up; the fd stays the caller's then.
std::unique_ptr<Storage> create_uring_storage(const OpenFile& file, const StorageOptions& options,
                                              int* setup_errno);
std::unique_ptr<Storage> create_pread_storage(const OpenFile& file, const StorageOptions& options);

// Prints `message` to stderr the first time a given `key` is seen in this process.
void notice_once(int key, const std::string& message);

}  // namespace hetmoe::io
