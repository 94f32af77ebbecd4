// CUDA FP8 E4M3 block-scaled dequantisation (W = fp8(Q) * S[i/128, j/128]) to BF16 or FP32.
// Kernel-header rule: raw device pointers, sizes and a stream; no framework types.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace hetmoe::gpu {

// codes: f8_e4m3 [rows, cols]; scale_inv: f32 [ceil(rows/block), ceil(cols/block)];
// out: f32 [rows, cols]. All device pointers. Returns the launch status.
cudaError_t dequant_fp8_block_f32(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols,
                                  int block, float* out, cudaStream_t stream);
// Same, writing bf16 (as raw uint16_t bits, round-to-nearest-even).
cudaError_t dequant_fp8_block_bf16(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols,
                                   int block, uint16_t* out, cudaStream_t stream);

}  // namespace hetmoe::gpu
