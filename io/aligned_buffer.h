// Page-aligned memory for O_DIRECT reads: anonymous mappings (transparent huge pages asked
// for when large), freed on destruction. Zero-filled.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hetmoe::io {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t bytes);  // throws hetmoe::Error if the mapping fails
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t bytes_ = 0;
};

inline constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t round_up(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace hetmoe::io
