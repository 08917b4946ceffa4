// CUDA fake-quant kernel: 64-bit grid-stride loop, the caller's stream, every launch checked. The
// arithmetic is the CPU kernel's, operation for operation (multiply, clamp, round-half-even,
// copysign, IEEE division), so fp32 outputs are bit-identical to the CPU reference.
#include "ops/cuda/fake_quant_kernel.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace qdqbert::ops::cuda {
namespace {

__device__ __forceinline__ float quant_one(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return copysignf(rintf(v), v);
}

__global__ void quantize_kernel(detail::QuantLaunch p) {
  const auto& l = p.layout;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < l.numel; i += stride) {
    const int64_t row = i / l.inner;
    const int64_t pos = i - row * l.inner;
    const int64_t idx = detail::row_scale_offset(l, row) + (l.inner_varies ? pos : 0);
    // __fmul_rn / __fdiv_rn: IEEE round-to-nearest, never contracted into an FMA or approximated.
    const float q = quant_one(__fmul_rn(p.x[i], p.scale[idx]), p.min_bound, p.max_bound);
    p.out[i] = p.output == detail::QuantOutput::kFake ? __fdiv_rn(q, p.divisor[idx]) : q;
  }
}

std::string error_text(cudaError_t err, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string quantize(const detail::QuantLaunch& p, void* stream) {
  if (p.layout.numel == 0) return {};
  constexpr int kThreads = 256;
  const int64_t wanted = (p.layout.numel + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(std::min<int64_t>(wanted, 65535 * 8));
  quantize_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return error_text(err, "qdqbert fake-quant kernel launch");
  return {};
}

std::string quantize_host(const detail::QuantLaunch& p, int64_t num_scales, int device) {
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return error_text(err, "cudaSetDevice");
  const size_t n_bytes = static_cast<size_t>(p.layout.numel) * sizeof(float);
  const size_t s_bytes = static_cast<size_t>(num_scales) * sizeof(float);
  float *x = nullptr, *out = nullptr, *scale = nullptr, *divisor = nullptr;
  std::string msg;
  auto check = [&](cudaError_t e, const char* what) {
    if (e != cudaSuccess && msg.empty()) msg = error_text(e, what);
    return msg.empty();
  };
  if (check(cudaMalloc(&x, n_bytes + 1), "cudaMalloc") && check(cudaMalloc(&out, n_bytes + 1), "cudaMalloc") &&
      check(cudaMalloc(&scale, s_bytes + 1), "cudaMalloc") && check(cudaMalloc(&divisor, s_bytes + 1), "cudaMalloc") &&
      check(cudaMemcpy(x, p.x, n_bytes, cudaMemcpyHostToDevice), "cudaMemcpy") &&
      check(cudaMemcpy(scale, p.scale, s_bytes, cudaMemcpyHostToDevice), "cudaMemcpy") &&
      check(cudaMemcpy(divisor, p.divisor, s_bytes, cudaMemcpyHostToDevice), "cudaMemcpy")) {
    detail::QuantLaunch d = p;
    d.x = x;
    d.out = out;
    d.scale = scale;
    d.divisor = divisor;
    msg = quantize(d, nullptr);
    if (msg.empty() && check(cudaDeviceSynchronize(), "kernel execution")) {
      check(cudaMemcpy(p.out, out, n_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    }
  }
  cudaFree(x);
  cudaFree(out);
  cudaFree(scale);
  cudaFree(divisor);
  return msg;
}

}  // namespace qdqbert::ops::cuda
