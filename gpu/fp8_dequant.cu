#include "gpu/fp8_dequant.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

namespace hetmoe::gpu {
namespace {

// One thread per 4 consecutive elements of a row; rows map to blockIdx.y (grid-stride over
// rows for large matrices). The scale index changes at most once per 4 elements only when
// block is not a multiple of 4, so each element looks its scale up itself.
template <typename OutT>
__global__ void dequant_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scale_inv,
                               int64_t rows, int64_t cols, int block, OutT* __restrict__ out) {
  const int64_t scale_cols = (cols + block - 1) / block;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float* scales = scale_inv + (row / block) * scale_cols;
    for (int64_t col = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4; col < cols;
         col += int64_t(gridDim.x) * blockDim.x * 4) {
      for (int k = 0; k < 4 && col + k < cols; ++k) {
        __nv_fp8_e4m3 code;
        code.__x = codes[row * cols + col + k];
        const float value = float(code) * scales[(col + k) / block];
        if constexpr (sizeof(OutT) == 2) {
          const __nv_bfloat16 half = __float2bfloat16_rn(value);
          out[row * cols + col + k] = *reinterpret_cast<const uint16_t*>(&half);
        } else {
          out[row * cols + col + k] = value;
        }
      }
    }
  }
}

template <typename OutT>
cudaError_t launch(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols, int block,
                   OutT* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  if (block <= 0) return cudaErrorInvalidValue;
  const int threads = 256;
  const int64_t blocks_x = (cols / 4 + threads) / threads;
  const dim3 grid(unsigned(blocks_x < 1024 ? blocks_x : 1024), unsigned(rows < 65535 ? rows : 65535));
  dequant_kernel<OutT><<<grid, threads, 0, stream>>>(codes, scale_inv, rows, cols, block, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t dequant_fp8_block_f32(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols,
                                  int block, float* out, cudaStream_t stream) {
  return launch(codes, scale_inv, rows, cols, block, out, stream);
}

cudaError_t dequant_fp8_block_bf16(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols,
                                   int block, uint16_t* out, cudaStream_t stream) {
  return launch(codes, scale_inv, rows, cols, block, out, stream);
}

}  // namespace hetmoe::gpu
