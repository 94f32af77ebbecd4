// A non-owning view of a tensor: dtype, shape, strides (in elements) and a pointer.
//
// Views never allocate or free; whoever made the memory (an mmap'd checkpoint, an arena,
// a cache slot) owns it and outlives the view.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "engine/core/dtype.h"

namespace hetmoe {

inline constexpr int kMaxDims = 4;

struct Shape {
  int rank = 0;
  std::array<int64_t, kMaxDims> dims{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> sizes);

  int64_t operator[](int axis) const { return dims[size_t(axis)]; }
  int64_t numel() const;
  bool operator==(const Shape& other) const;
  std::string to_string() const;  // "[576, 7168]"
};

class TensorView {
 public:
  TensorView() = default;
  // A contiguous (row-major) view.
  TensorView(DType dtype, Shape shape, void* data);
  TensorView(DType dtype, Shape shape, std::array<int64_t, kMaxDims> strides, void* data);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t dim(int axis) const { return shape_[axis]; }
  int64_t stride(int axis) const { return strides_[size_t(axis)]; }
  int64_t numel() const { return shape_.numel(); }
  bool is_contiguous() const;
  // Bytes spanned by a contiguous view (I4 rounds up to whole bytes).
  uint64_t nbytes() const;

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  // Row `index` of a 2-D view as a 1-D view (dense dtypes only).
  TensorView row(int64_t index) const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::array<int64_t, kMaxDims> strides_{};
  void* data_ = nullptr;
};

}  // namespace hetmoe
