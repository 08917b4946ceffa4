#pragma once
// Host-callable entry points of the CUDA fake-quant kernel. Torch-free: raw device pointers and
// cuda_runtime only, so this library builds against any LibTorch (or none).
#include "ops/fake_quant_layout.h"

#include <string>

namespace qdqbert::ops::cuda {

/// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();

/// Launches the kernel on `stream` (a cudaStream_t, passed as void* to keep CUDA types out of this
/// header). All pointers in `p` are device pointers. Returns an empty string on success, otherwise
/// the CUDA error text.
std::string quantize(const detail::QuantLaunch& p, void* stream);

/// Test support: copies host buffers to the device, runs `quantize` on the default stream of
/// `device`, copies the result back. `p` holds host pointers; the scale/divisor arrays have
/// `num_scales` entries. Returns an empty string on success, otherwise the CUDA error text.
std::string quantize_host(const detail::QuantLaunch& p, int64_t num_scales, int device);

}  // namespace qdqbert::ops::cuda
