// Element types hetmoe reads, writes and computes in, and their scalar conversions.
//
// The scalar conversions here are the reference every vectorised kernel is tested against.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace hetmoe {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kI32,
  kU32,
  kI64,
  kU64,
  kF8E4M3,  // OCP FP8 E4M3 "fn": no infinities, NaN = 0x7F / 0xFF, max finite 448
  kF8E5M2,
  kF16,
  kBF16,
  kF32,
  kF64,
  kI4,  // hetmoe's own: two's-complement nibbles, two per byte, element 2i in the low nibble
};

// Bits per element (4 for kI4, 8 for FP8, ...).
int dtype_bits(DType dtype);
// The safetensors spelling ("F8_E4M3", "BF16", ...); kI4 is "I4", which safetensors lacks.
std::string_view dtype_name(DType dtype);
// Parses a safetensors dtype string; nullopt for anything hetmoe does not know.
std::optional<DType> parse_dtype(std::string_view name);

// Bytes needed for `count` elements, rounded up to whole bytes. Returns nullopt on overflow.
std::optional<uint64_t> dtype_bytes(DType dtype, uint64_t count);

// --- FP8 E4M3 -------------------------------------------------------------------------------
// Exact decode of all 256 codes (a table built at compile time).
float fp8_e4m3_to_float(uint8_t code);
// Round-to-nearest-even encode. Finite values beyond ±448 saturate to ±448 (the checkpoint's
// block scales make |w/scale| <= 448, so saturation only absorbs rounding at the top); NaN -> 0x7F.
uint8_t fp8_e4m3_from_float(float value);
// The decode table itself, for kernels that gather from it.
const float* fp8_e4m3_table();

// --- BF16 / FP16 ----------------------------------------------------------------------------
inline float bf16_to_float(uint16_t bits) {
  uint32_t word = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}
// Round-to-nearest-even; NaN stays a (quiet) NaN.
uint16_t bf16_from_float(float value);
float fp16_to_float(uint16_t bits);
uint16_t fp16_from_float(float value);

// --- INT8 / INT4 with symmetric per-group scales ---------------------------------------------
// x ≈ q * scale, scale = amax(group) / qmax (qmax 127 for INT8, 7 for INT4), q rounded to
// nearest even and clamped to [-qmax, qmax]. A group of zeros gets scale 0.
// `values.size()` must be a multiple of `group`; `scales` holds values.size() / group floats.
void quantize_int8(std::span<const float> values, int group, std::span<int8_t> quants,
                   std::span<float> scales);
void dequantize_int8(std::span<const int8_t> quants, std::span<const float> scales, int group,
                     std::span<float> values);
// INT4 with qmax 7: `quants` one value per int8 (what the packed kernels' repack wants), or
// `packed`, values.size() / 2 bytes (values.size() must be even). Same values and scales.
void quantize_int4_values(std::span<const float> values, int group, std::span<int8_t> quants,
                          std::span<float> scales);
void quantize_int4(std::span<const float> values, int group, std::span<uint8_t> packed,
                   std::span<float> scales);
void dequantize_int4(std::span<const uint8_t> packed, std::span<const float> scales, int group,
                     std::span<float> values);
inline int int4_at(const uint8_t* packed, uint64_t index) {
  uint8_t byte = packed[index / 2];
  int nibble = (index & 1) ? (byte >> 4) : (byte & 0xF);
  return nibble >= 8 ? nibble - 16 : nibble;
}

// Converts `count` elements of a float-like dtype (F8_E4M3, BF16, F16, F32) to float.
void convert_to_float(DType dtype, const void* source, uint64_t count, float* destination);

}  // namespace hetmoe
