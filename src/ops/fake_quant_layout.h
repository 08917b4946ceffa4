#pragma once
// Internal: how a (broadcast) amax/scale tensor maps onto a contiguous input, shared by the CPU and
// CUDA kernels. Torch-free so the .cu files can include it.

#include <cstdint>

namespace qdqbert::ops::detail {

constexpr int kMaxDims = 12;

/// The input is split into rows of `inner` contiguous elements. Within a row the scale index is
/// constant (`inner_varies == false`) or advances by one per element. The row's first scale index is
/// the dot product of the row's multi-index over `outer_sizes` with `outer_strides`.
struct BroadcastLayout {
  int64_t numel = 0;
  int64_t inner = 1;
  bool inner_varies = false;
  int ndim_outer = 0;
  int64_t outer_sizes[kMaxDims] = {};
  int64_t outer_strides[kMaxDims] = {};
};

/// What the kernel writes: q / divisor (fake quant) or q (tensor_quant's integer grid values).
enum class QuantOutput { kFake, kInteger };

/// Parameters of one launch. `scale` multiplies x (0 where amax <= 2^-24); `divisor` is the reported
/// scale that fake quant divides by (1 where amax <= 2^-24).
struct QuantLaunch {
  const float* x = nullptr;
  float* out = nullptr;
  const float* scale = nullptr;
  const float* divisor = nullptr;
  float min_bound = 0.f;
  float max_bound = 0.f;
  QuantOutput output = QuantOutput::kFake;
  BroadcastLayout layout;
};

/// The straight-through backward of one launch: out = |x| <= amax ? grad : 0, with `amax` laid out as the
/// forward's scale (the same BroadcastLayout).
struct SteLaunch {
  const float* x = nullptr;
  const float* grad = nullptr;
  float* out = nullptr;
  const float* amax = nullptr;
  BroadcastLayout layout;
};

/// The learned-step-size backward over `numel` elements with one amax: out = the straight-through
/// gradient as SteLaunch's, and the returned sum of grad * (clamp(r) - u [lo <= r <= hi]) over the
/// elements (u = x * scale, r = round_half_even(u), scale = max_bound / amax), for amax's gradient.
struct LearnedBackwardLaunch {
  const float* x = nullptr;
  const float* grad = nullptr;
  float* out = nullptr;
  int64_t numel = 0;
  float amax = 0.f, scale = 0.f, min_bound = 0.f, max_bound = 0.f;
};

/// One per-tensor fake quantization: clamp(round(x * scale), min_bound, max_bound) / divisor.
struct ScalarQuant {
  float scale = 0.f, divisor = 1.f, min_bound = 0.f, max_bound = 0.f;
};

/// out = fake(a) + fake(b) over `numel` floats (the residual add of a quantized model in one pass).
struct QuantAddLaunch {
  const float* a = nullptr;
  const float* b = nullptr;
  float* out = nullptr;
  int64_t numel = 0;
  ScalarQuant qa, qb;
};

/// First scale index of row `row`.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline int64_t row_scale_offset(const BroadcastLayout& l, int64_t row) {
  int64_t offset = 0;
  for (int d = l.ndim_outer - 1; d >= 0; --d) {
    const int64_t size = l.outer_sizes[d];
    offset += (row % size) * l.outer_strides[d];
    row /= size;
  }
  return offset;
}

}  // namespace qdqbert::ops::detail
