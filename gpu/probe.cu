// GPU measurements for the hardware profile (gpu/probe.h). Every rate is the best repetition,
// timed with CUDA events on one stream; buffers are freed on every path (RAII below).
#include "gpu/probe.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace hetmoe::gpu {
namespace {

std::string cuda_error(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) p = nullptr;
  }
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct Timer {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  Timer() {
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
  }
  // Best seconds per call of `body` (enqueues one unit of work on `stream`) over repetitions
  // filling at least `seconds`. Returns 0 when a call fails.
  template <class Body>
  double best(double seconds, Body body) {
    if (!body() || cudaStreamSynchronize(stream) != cudaSuccess) return 0;  // warm-up
    double best_seconds = 1e30, spent = 0;
    for (int rep = 0; rep < 1000 && (rep < 3 || spent < seconds); ++rep) {
      cudaEventRecord(start, stream);
      if (!body()) return 0;
      cudaEventRecord(stop, stream);
      if (cudaEventSynchronize(stop) != cudaSuccess) return 0;
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      best_seconds = std::min(best_seconds, double(ms) * 1e-3);
      spent += double(ms) * 1e-3;
    }
    return best_seconds;
  }
};

__global__ void empty_kernel() {}

double measure_hbm(Timer& timer, uint64_t free_bytes, double seconds) {
  const size_t bytes = size_t(std::min<uint64_t>(uint64_t(1) << 30, free_bytes / 4));
  DeviceBuffer a(bytes), b(bytes);
  if (!a.p || !b.p) return 0;
  cudaMemset(a.p, 1, bytes);
  const double t = timer.best(seconds, [&] {
    return cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, timer.stream) == cudaSuccess;
  });
  return t > 0 ? 2.0 * double(bytes) / t : 0;  // each byte read once and written once
}

double measure_h2d(Timer& timer, double seconds) {
  const size_t bytes = size_t(256) << 20;
  void* host = nullptr;
  if (cudaMallocHost(&host, bytes) != cudaSuccess) return 0;
  DeviceBuffer device(bytes);
  double rate = 0;
  if (device.p) {
    const double t = timer.best(seconds, [&] {
      return cudaMemcpyAsync(device.p, host, bytes, cudaMemcpyHostToDevice, timer.stream) == cudaSuccess;
    });
    rate = t > 0 ? double(bytes) / t : 0;
  }
  cudaFreeHost(host);
  return rate;
}

double measure_launch(Timer& timer) {
  const int calls = 2000;
  empty_kernel<<<1, 1, 0, timer.stream>>>();
  cudaStreamSynchronize(timer.stream);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) {
    empty_kernel<<<1, 1, 0, timer.stream>>>();
    cudaStreamSynchronize(timer.stream);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls;
}

// D[M,N] = A[K,M]ᵀ · B[K,N] (the "TN" layout FP8 GEMMs require), BF16 output, FP32 compute.
// Returns FLOP/s, or 0 with `why` set when cuBLASLt has no algorithm for the types.
double measure_gemm(Timer& timer, cudaDataType_t in_type, double seconds, std::string& why) {
  constexpr int64_t n = 8192;
  const size_t in_bytes = size_t(n * n) * (in_type == CUDA_R_16BF ? 2 : 1);
  DeviceBuffer a(in_bytes), b(in_bytes), d(size_t(n * n) * 2), workspace(size_t(64) << 20);
  if (!a.p || !b.p || !d.p || !workspace.p) {
    why = "out of device memory for 8192³ operands";
    return 0;
  }
  cudaMemset(a.p, 0, in_bytes);  // zeros: the rate does not depend on the values
  cudaMemset(b.p, 0, in_bytes);
  cublasLtHandle_t handle = nullptr;
  if (cublasLtCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    why = "cublasLtCreate failed";
    return 0;
  }
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  double rate = 0;
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  const float alpha = 1.0f, beta = 0.0f;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  size_t workspace_bytes = size_t(64) << 20;
  if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)) ==
          CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)) ==
          CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&la, in_type, n, n, n) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&lb, in_type, n, n, n) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, n, n, n) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                           sizeof(workspace_bytes)) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, ld, ld, pref, 1, &result, &found) ==
          CUBLAS_STATUS_SUCCESS &&
      found > 0) {
    const double t = timer.best(seconds, [&] {
      return cublasLtMatmul(handle, op, &alpha, a.p, la, b.p, lb, &beta, d.p, ld, d.p, ld, &result.algo,
                            workspace.p, workspace_bytes, timer.stream) == CUBLAS_STATUS_SUCCESS;
    });
    rate = t > 0 ? 2.0 * double(n) * double(n) * double(n) / t : 0;
    if (rate == 0) why = "cublasLtMatmul failed";
  } else {
    why = "cuBLASLt offers no algorithm for these types on this device";
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (ld) cublasLtMatrixLayoutDestroy(ld);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (op) cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(handle);
  return rate;
}

GpuMeasurement measure_device(int index, double seconds) {
  GpuMeasurement m;
  m.index = index;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, index);
  cudaSetDevice(index);
  cudaFree(nullptr);  // create the context, so free memory below excludes it
  m.name = prop.name;
  m.sm_major = prop.major;
  m.sm_minor = prop.minor;
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  m.memory_bytes = total_bytes;
  m.reserved_bytes = total_bytes - free_bytes;
  Timer timer;
  m.hbm_bytes_per_second = measure_hbm(timer, free_bytes, seconds);
  m.pcie_h2d_bytes_per_second = measure_h2d(timer, seconds);
  m.launch_overhead_seconds = measure_launch(timer);
  std::string why;
  m.bf16_flops_per_second = measure_gemm(timer, CUDA_R_16BF, seconds, why);
  if (m.bf16_flops_per_second == 0) m.notes.push_back("BF16 GEMM not measured: " + why);
  if (prop.major * 10 + prop.minor >= 89) {
    m.fp8_flops_per_second = measure_gemm(timer, CUDA_R_8F_E4M3, seconds, why);
    if (m.fp8_flops_per_second == 0) m.notes.push_back("FP8 GEMM not measured: " + why);
  } else {
    m.notes.push_back("no FP8 tensor cores before sm_89: FP8 weights run as BF16");
  }
  return m;
}

}  // namespace

GpuProbeResult probe_gpus(double seconds_per_test) {
  GpuProbeResult result;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    result.status = "no CUDA device usable (" + cuda_error(e) + ")";
    return result;
  }
  if (count == 0) {
    result.status = "no CUDA device";
    return result;
  }
  for (int i = 0; i < count; ++i) result.gpus.push_back(measure_device(i, seconds_per_test));
  result.status = std::to_string(count) + (count == 1 ? " device" : " devices");
  return result;
}

}  // namespace hetmoe::gpu
