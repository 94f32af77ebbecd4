#include "cpu/packed_matrix.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string>

#include "cpu/activation.h"
#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace hetmoe::cpu {
namespace {

int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Row `row` of the source, dequantised to f32 and zero-padded to `k_padded` values.
void source_row(const WeightMatrix& w, int64_t row, int64_t k_padded, float* out) {
  std::fill(out, out + k_padded, 0.0f);
  if (row < w.rows) weight_row(w, row, out, active_isa());  // every path decodes the same values
}

// FP8 codes and per-block scales of a BF16/F32 matrix: 128×128 blocks, scale = amax / 448,
// codes RNE(w / scale) as DeepSeek quantises. Returns codes [rows, cols] and scales
// [ceil(rows/128), ceil(cols/128)].
void quantize_fp8_blocks(const WeightMatrix& w, std::vector<uint8_t>& codes, std::vector<float>& scales) {
  const int64_t block = kGroupCols, row_blocks = (w.rows + block - 1) / block,
                col_blocks = (w.cols + block - 1) / block;
  std::vector<float> values(size_t(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) weight_row(w, r, &values[size_t(r * w.cols)], active_isa());
  scales.assign(size_t(row_blocks * col_blocks), 0.0f);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) {
      float& amax = scales[size_t((r / block) * col_blocks + c / block)];
      amax = std::max(amax, std::fabs(values[size_t(r * w.cols + c)]));
    }
  for (float& s : scales) s = s > 0.0f ? s / 448.0f : 1.0f;
  codes.resize(values.size());
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c)
      codes[size_t(r * w.cols + c)] = fp8_e4m3_from_float(
          values[size_t(r * w.cols + c)] / scales[size_t((r / block) * col_blocks + c / block)]);
}

void pack_fp8(const WeightMatrix& w, const PackedLayout& layout, uint8_t* out) {
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  std::vector<uint8_t> own_codes;
  std::vector<float> own_scales;
  if (w.format == WeightFormat::kFP8Block) {
    check(w.block == kGroupCols,
          "FP8 weights with " + std::to_string(w.block) + "x" + std::to_string(w.block) +
              " scale blocks cannot be repacked",
          {.hint = "the packed FP8 layout needs the 128x128 blocks DeepSeek ships"});
    codes = static_cast<const uint8_t*>(w.data);
    scales = w.scale_inv;
  } else {
    quantize_fp8_blocks(w, own_codes, own_scales);
    codes = own_codes.data();
    scales = own_scales.data();
  }
  const int64_t scale_cols = (w.cols + kGroupCols - 1) / kGroupCols;
  for (int64_t p = 0; p < layout.panels; ++p) {
    uint8_t* panel = out + p * layout.panel_bytes;
    // Block scales ×256: the kernels decode a code as its value / 256 (cpu/packed_gemm.h).
    float* header = reinterpret_cast<float*>(panel);
    for (int64_t g = 0; g < layout.groups; ++g) {
      const float scale = scales[size_t((p * kPanelRows / kGroupCols) * scale_cols + g)] * 256.0f;
      if (!std::isfinite(scale))
        throw Error("FP8 block scale is not finite (or overflows when multiplied by 256)",
                    {.hint = "the checkpoint's weight_scale_inv is corrupt"});
      header[g] = scale;
    }
    for (int64_t g = 0; g < layout.groups; ++g) {
      uint8_t* group = panel + layout.header_bytes + g * layout.group_bytes;
      for (int64_t r = 0; r < kPanelRows; ++r) {
        const int64_t row = p * kPanelRows + r;
        for (int64_t kk = 0; kk < kGroupCols; ++kk) {
          const int64_t k = g * kGroupCols + kk;
          uint8_t code = 0;
          if (row < w.rows && k < w.cols) code = codes[size_t(row * w.cols + k)];
          if ((code & 0x7F) == 0x7F)
            throw Error("FP8 weight at row " + std::to_string(row) + ", column " + std::to_string(k) + " is NaN",
                        {.hint = "the checkpoint is corrupt: shipped weights never hold NaN"});
          group[quad_byte(r, kk)] = code;
        }
      }
    }
  }
}

void pack_bf16(const WeightMatrix& w, const PackedLayout& layout, uint8_t* out) {
  const int64_t k_padded = layout.k_padded();
  std::vector<float> rows(size_t(kPanelRows * k_padded));
  for (int64_t p = 0; p < layout.panels; ++p) {
    for (int64_t r = 0; r < kPanelRows; ++r)
      source_row(w, p * kPanelRows + r, k_padded, &rows[size_t(r * k_padded)]);
    uint16_t* panel = reinterpret_cast<uint16_t*>(out + p * layout.panel_bytes);
    for (int64_t kp = 0; kp < k_padded / 2; ++kp)
      for (int64_t r = 0; r < kPanelRows; ++r)
        for (int64_t i = 0; i < 2; ++i)
          panel[(kp * kPanelRows + r) * 2 + i] = bf16_from_float(rows[size_t(r * k_padded + 2 * kp + i)]);
  }
}

void pack_int(const WeightMatrix& w, const PackedLayout& layout, uint8_t* out) {
  const bool int4 = layout.format == PackedFormat::kINT4;
  const int64_t k_padded = layout.k_padded();
  std::vector<float> row(static_cast<size_t>(k_padded));
  std::vector<int8_t> quants(size_t(kPanelRows * k_padded));
  std::vector<float> scales(size_t(kPanelRows * layout.groups));
  for (int64_t p = 0; p < layout.panels; ++p) {
    for (int64_t r = 0; r < kPanelRows; ++r) {
      source_row(w, p * kPanelRows + r, k_padded, row.data());
      std::span<float> row_scales(&scales[size_t(r * layout.groups)], size_t(layout.groups));
      int8_t* q = &quants[size_t(r * k_padded)];
      if (int4) {
        quantize_int4_values(row, int(kGroupCols), std::span<int8_t>(q, size_t(k_padded)), row_scales);
      } else {
        quantize_int8(row, int(kGroupCols), std::span<int8_t>(q, size_t(k_padded)), row_scales);
      }
    }
    uint8_t* panel = out + p * layout.panel_bytes;
    for (int64_t g = 0; g < layout.groups; ++g) {
      uint8_t* group = panel + g * layout.group_bytes;
      const int64_t k_base = g * kGroupCols;
      if (int4) {
        for (int64_t c = 0; c < kGroupCols / 8; ++c)
          for (int64_t r = 0; r < kPanelRows; ++r)
            for (int64_t i = 0; i < 4; ++i) {
              const int lo = quants[size_t(r * k_padded + k_base + 8 * c + i)] + 8;
              const int hi = quants[size_t(r * k_padded + k_base + 8 * c + 4 + i)] + 8;
              group[c * 64 + 4 * r + i] = uint8_t(lo | (hi << 4));
            }
      } else {
        for (int64_t c = 0; c < kGroupCols / 4; ++c)
          for (int64_t r = 0; r < kPanelRows; ++r)
            for (int64_t i = 0; i < 4; ++i)
              group[quad_byte(r, 4 * c + i)] = uint8_t(quants[size_t(r * k_padded + k_base + 4 * c + i)] + 128);
      }
      float* group_scales = reinterpret_cast<float*>(group + layout.group_bytes - 64);
      for (int64_t r = 0; r < kPanelRows; ++r) group_scales[r] = scales[size_t(r * layout.groups + g)];
    }
  }
}

}  // namespace

std::string_view packed_format_name(PackedFormat format) {
  switch (format) {
    case PackedFormat::kFP8:
      return "fp8";
    case PackedFormat::kBF16:
      return "bf16";
    case PackedFormat::kINT8:
      return "int8";
    case PackedFormat::kINT4:
      return "int4";
  }
  return "?";
}

std::optional<PackedFormat> parse_packed_format(std::string_view name) {
  for (PackedFormat f : {PackedFormat::kFP8, PackedFormat::kBF16, PackedFormat::kINT8, PackedFormat::kINT4})
    if (packed_format_name(f) == name) return f;
  return std::nullopt;
}

PackedLayout packed_layout(PackedFormat format, int64_t rows, int64_t cols) {
  assert(rows > 0 && cols > 0);
  PackedLayout layout{.format = format, .rows = rows, .cols = cols};
  layout.panels = (rows + kPanelRows - 1) / kPanelRows;
  layout.groups = (cols + kGroupCols - 1) / kGroupCols;
  switch (format) {
    case PackedFormat::kFP8:
      layout.header_bytes = round_up(layout.groups * 4, 64);
      layout.group_bytes = kPanelRows * kGroupCols;
      break;
    case PackedFormat::kBF16:
      layout.group_bytes = kPanelRows * kGroupCols * 2;
      break;
    case PackedFormat::kINT8:
      layout.group_bytes = kPanelRows * kGroupCols + 64;
      break;
    case PackedFormat::kINT4:
      layout.group_bytes = kPanelRows * kGroupCols / 2 + 64;
      break;
  }
  layout.panel_bytes = layout.header_bytes + layout.groups * layout.group_bytes;
  return layout;
}

AlignedBytes::AlignedBytes(uint64_t size) : size_(size) {
  const uint64_t rounded = uint64_t(round_up(int64_t(std::max<uint64_t>(size, 1)), 64));
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  check(p != nullptr, "out of memory allocating " + std::to_string(rounded) + " bytes for packed weights");
  std::memset(p, 0, rounded);
  data_.reset(p);
}

void AlignedBytes::Free::operator()(uint8_t* p) const {
  std::free(p);
}

void pack_matrix(const WeightMatrix& source, PackedFormat format, uint8_t* out) {
  const PackedLayout layout = packed_layout(format, source.rows, source.cols);
  std::memset(out, 0, layout.bytes());
  switch (format) {
    case PackedFormat::kFP8:
      return pack_fp8(source, layout, out);
    case PackedFormat::kBF16:
      return pack_bf16(source, layout, out);
    case PackedFormat::kINT8:
    case PackedFormat::kINT4:
      return pack_int(source, layout, out);
  }
}

void packed_row_values(const PackedMatrix& matrix, int64_t row, double* out) {
  const PackedLayout& l = matrix.layout;
  const int64_t p = row / kPanelRows, r = row % kPanelRows;
  const uint8_t* panel = matrix.panel(p);
  for (int64_t k = 0; k < l.cols; ++k) {
    const int64_t g = k / kGroupCols, kk = k % kGroupCols;
    const uint8_t* group = panel + l.header_bytes + g * l.group_bytes;
    switch (l.format) {
      case PackedFormat::kFP8: {
        const float scale = reinterpret_cast<const float*>(panel)[g];
        out[k] = double(fp8_e4m3_to_float(group[quad_byte(r, kk)])) * double(scale) / 256.0;
        break;
      }
      case PackedFormat::kBF16: {
        const uint16_t* values = reinterpret_cast<const uint16_t*>(group);
        out[k] = double(bf16_to_float(values[((kk / 2) * kPanelRows + r) * 2 + kk % 2]));
        break;
      }
      case PackedFormat::kINT8: {
        const float scale = reinterpret_cast<const float*>(group + l.group_bytes - 64)[r];
        out[k] = double(int(group[quad_byte(r, kk)]) - 128) * double(scale);
        break;
      }
      case PackedFormat::kINT4: {
        const float scale = reinterpret_cast<const float*>(group + l.group_bytes - 64)[r];
        const uint8_t byte = group[(kk / 8) * 64 + 4 * r + kk % 4];
        const int nibble = (kk % 8) < 4 ? (byte & 0xF) : (byte >> 4);
        out[k] = double(nibble - 8) * double(scale);
        break;
      }
    }
  }
}

void quantize_activation_group(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::isnan(x[i]) ? x[i] : std::max(amax, std::fabs(x[i]));
  int32_t total = 0;
  if (amax == 0.0f || !std::isfinite(amax)) {
    // Zeros (or a non-finite input, which then shows up as NaN in the scale and the output).
    std::fill(q, q + kGroupCols, int8_t(0));
    *scale = amax == 0.0f ? 0.0f : std::numeric_limits<float>::quiet_NaN();
    *sum = 0;
    return;
  }
  const float inverse = 127.0f / amax;
  for (int64_t i = 0; i < kGroupCols; ++i) {
    const float v = i < n ? std::nearbyint(x[i] * inverse) : 0.0f;
    const int value = int(std::clamp(v, -127.0f, 127.0f));
    q[i] = int8_t(value);
    total += value;
  }
  *scale = amax / 127.0f;
  *sum = total;
}

void prepare_activations(const PackedLayout& layout, const float* x, int64_t tokens, int64_t x_stride,
                         int64_t tokens_padded, ActivationBuffers& out, Isa isa) {
  const int64_t k_padded = layout.k_padded(), groups = layout.groups, cols = layout.cols;
  ActivationView& v = out.view;
  v = {.tokens_padded = tokens_padded,
       .k_padded = k_padded,
       .groups = groups,
       .x_stride = k_padded + 16,
       .q_stride = k_padded + 64};
  if (layout.format == PackedFormat::kFP8 || layout.format == PackedFormat::kBF16) {
    out.x.resize(size_t(tokens_padded * v.x_stride));
    for (int64_t t = 0; t < tokens_padded; ++t) {
      float* row = &out.x[size_t(t * v.x_stride)];
      if (t < tokens) {
        std::copy_n(x + t * x_stride, cols, row);
        std::fill(row + cols, row + k_padded, 0.0f);
      } else {
        std::fill(row, row + k_padded, 0.0f);
      }
    }
    v.x = out.x.data();
    return;
  }
  const int32_t offset = layout.format == PackedFormat::kINT8 ? 128 : 8;
  out.q.resize(size_t(tokens_padded * v.q_stride));
  out.scale.resize(size_t(tokens_padded * groups));
  out.comp.resize(size_t(tokens_padded * groups));
  for (int64_t t = 0; t < tokens_padded; ++t) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * kGroupCols;
      const int64_t n = t < tokens ? std::min(kGroupCols, cols - begin) : 0;
      int32_t sum = 0;
      quantize_activation_group(t < tokens ? x + t * x_stride + begin : nullptr, n,
                                &out.q[size_t(t * v.q_stride + begin)], &out.scale[size_t(t * groups + g)],
                                &sum, isa);
      out.comp[size_t(t * groups + g)] = -offset * sum;
    }
  }
  v.q = out.q.data();
  v.scale = out.scale.data();
  v.comp = out.comp.data();
}

}  // namespace hetmoe::cpu
