// Weight matrices repacked for the expert kernels (cpu/packed_gemm.h), one layout per format.
//
// Every format shares the panel structure: the matrix [rows, cols] (rows = output features) is
// cut into panels of 16 rows (the last one zero-padded) and, along cols, into groups of 128
// (the last one zero-padded). A panel is one contiguous byte range, so a kernel streams it
// front to back, and inside it the 16 rows of one k step sit side by side: a 64-byte load
// feeds one vector of 16 outputs. docs/KERNELS.md draws the byte layout of each format:
//
//   kFP8   the shipped E4M3 codes unchanged (block scales ×256, see below), 4 consecutive k
//          per row in a 32-bit lane (as INT8), 2048 B per group
//   kBF16  bf16 pairs (k, k+1) per row in a 32-bit lane, 4096 B per group
//   kINT8  q + 128 as u8, 4 consecutive k per row in a 32-bit lane (vpdpbusd order), plus 16
//          f32 scales: 2112 B per group
//   kINT4  q + 8 as nibbles, two k-quads per 64 bytes (low / high nibble), plus 16 f32
//          scales: 1088 B per group
//
// INT8 / INT4 are symmetric per group of 128 along k (scale = amax / qmax, round to nearest
// even), requantised from the dequantised source weights with engine/core/dtype.h's
// quantize_int8 / quantize_int4. Raw pointers and sizes only (kernel-header rule).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "cpu/linear.h"

namespace hetmoe::cpu {

enum class PackedFormat : uint8_t { kFP8, kBF16, kINT8, kINT4 };

std::string_view packed_format_name(PackedFormat format);
std::optional<PackedFormat> parse_packed_format(std::string_view name);

inline constexpr int64_t kPanelRows = 16;
inline constexpr int64_t kGroupCols = 128;  // FP8 scale block, INT group, BF16 summation block

// FP8 and INT8 group bytes: quad c = k / 4 of a group is 64 bytes, row r's 4 codes k..k+3 in
// its 32-bit lane r (byte 4r + k % 4).
inline constexpr int64_t quad_byte(int64_t row_in_panel, int64_t k_in_group) {
  return (k_in_group / 4) * 64 + 4 * row_in_panel + k_in_group % 4;
}

struct PackedLayout {
  PackedFormat format = PackedFormat::kFP8;
  int64_t rows = 0;          // output features
  int64_t cols = 0;          // input features
  int64_t panels = 0;        // ceil(rows / 16)
  int64_t groups = 0;        // ceil(cols / 128)
  int64_t header_bytes = 0;  // per panel, before its groups (FP8: the panel's block scales)
  int64_t group_bytes = 0;   // per (panel, group)
  int64_t panel_bytes = 0;   // header_bytes + groups * group_bytes (a multiple of 64)
  int64_t k_padded() const { return groups * kGroupCols; }
  uint64_t bytes() const { return uint64_t(panels) * uint64_t(panel_bytes); }
};

PackedLayout packed_layout(PackedFormat format, int64_t rows, int64_t cols);

struct PackedMatrix {
  PackedLayout layout;
  const uint8_t* data = nullptr;  // layout.bytes(), 64-byte aligned
  const uint8_t* panel(int64_t p) const { return data + p * layout.panel_bytes; }
};

// 64-byte aligned, zero-initialised bytes (what packed matrices live in).
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(uint64_t size);
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  uint64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  uint64_t size_ = 0;
};

// Repacks `source` into `format`, writing layout.bytes() at `out` (64-byte aligned).
// FP8 from an FP8 checkpoint copies the codes and scales (exact; the checkpoint's 128×128
// blocks are required); FP8 from BF16/F32 quantises 128×128 blocks with scale = amax / 448.
// BF16 rounds the dequantised values (exact for a BF16 source). Throws hetmoe::Error on a NaN
// FP8 code or non-finite scale (kernels decode codes without a NaN check).
void pack_matrix(const WeightMatrix& source, PackedFormat format, uint8_t* out);

// The exact value of every weight the kernels use, row `row` (cols values): the reference
// the kernel tests compute with.
void packed_row_values(const PackedMatrix& matrix, int64_t row, double* out);

// --- activations ------------------------------------------------------------------------------
// What the kernels read for x: f32 rows zero-padded to k_padded (FP8, BF16), or for INT8 / INT4
// symmetric int8 per (token, group of 128): scale = amax / 127, q = RNE(x * 127 / amax), and
// comp = -offset * sum(q) (offset 128 for INT8, 8 for INT4: the weights are stored unsigned,
// so u8·s8 dot products carry offset·sum(q) extra). Rows beyond `tokens` up to
// `tokens_padded` are zero.
// Rows are k_padded + 64 bytes apart: with DeepSeek's 7168 columns a row of f32 is 7 × 4 KiB,
// and the 8 token rows a prefill block reads would all fall into the same L1 sets.
struct ActivationView {
  int64_t tokens_padded = 0;
  int64_t k_padded = 0;
  int64_t groups = 0;
  int64_t x_stride = 0;           // floats between token rows of x
  int64_t q_stride = 0;           // bytes between token rows of q
  const float* x = nullptr;       // f32 [tokens_padded, x_stride], k_padded used (FP8, BF16)
  const int8_t* q = nullptr;      // s8  [tokens_padded, q_stride], k_padded used (INT8, INT4)
  const float* scale = nullptr;   // f32 [tokens_padded, groups]             (INT8, INT4)
  const int32_t* comp = nullptr;  // i32 [tokens_padded, groups]             (INT8, INT4)
};

struct ActivationBuffers {
  std::vector<float> x;
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> comp;
  ActivationView view;
};

// x: f32 [tokens, cols] with row stride x_stride. Fills `out` for a matrix of `layout`; `isa`
// only picks how fast the (ISA-independent) quantisation runs.
void prepare_activations(const PackedLayout& layout, const float* x, int64_t tokens, int64_t x_stride,
                         int64_t tokens_padded, ActivationBuffers& out, Isa isa = Isa::kScalar);

// One group of activations (n ≤ 128 values, the rest of the 128 taken as zero) quantised as
// above; the one definition every kernel path and the tests share.
void quantize_activation_group(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum);

}  // namespace hetmoe::cpu
