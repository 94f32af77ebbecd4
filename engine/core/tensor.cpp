#include "engine/core/tensor.h"

#include <cassert>

#include "engine/core/error.h"

namespace hetmoe {

Shape::Shape(std::initializer_list<int64_t> sizes) {
  check(sizes.size() <= size_t(kMaxDims), "tensor rank above " + std::to_string(kMaxDims));
  for (int64_t size : sizes) dims[size_t(rank++)] = size;
}

int64_t Shape::numel() const {
  int64_t count = 1;
  for (int axis = 0; axis < rank; ++axis) count *= dims[size_t(axis)];
  return count;
}

bool Shape::operator==(const Shape& other) const {
  if (rank != other.rank) return false;
  for (int axis = 0; axis < rank; ++axis)
    if (dims[size_t(axis)] != other.dims[size_t(axis)]) return false;
  return true;
}

std::string Shape::to_string() const {
  std::string text = "[";
  for (int axis = 0; axis < rank; ++axis) text += (axis ? ", " : "") + std::to_string(dims[size_t(axis)]);
  return text + "]";
}

TensorView::TensorView(DType dtype, Shape shape, void* data) : dtype_(dtype), shape_(shape), data_(data) {
  int64_t stride = 1;
  for (int axis = shape.rank - 1; axis >= 0; --axis) {
    strides_[size_t(axis)] = stride;
    stride *= shape[axis];
  }
}

TensorView::TensorView(DType dtype, Shape shape, std::array<int64_t, kMaxDims> strides, void* data)
    : dtype_(dtype), shape_(shape), strides_(strides), data_(data) {}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int axis = shape_.rank - 1; axis >= 0; --axis) {
    if (shape_[axis] != 1 && strides_[size_t(axis)] != expected) return false;
    expected *= shape_[axis];
  }
  return true;
}

uint64_t TensorView::nbytes() const { return *dtype_bytes(dtype_, uint64_t(numel())); }

TensorView TensorView::row(int64_t index) const {
  assert(rank() == 2 && dtype_ != DType::kI4);
  check(index >= 0 && index < dim(0), "row " + std::to_string(index) + " out of range " + shape_.to_string());
  auto* base = static_cast<char*>(data_) + index * stride(0) * (dtype_bits(dtype_) / 8);
  return TensorView(dtype_, Shape{dim(1)}, {stride(1), 0, 0, 0}, base);
}

}  // namespace hetmoe
