#pragma once
/// \file
/// Fake quantization ops — the C++ twin of pytorch_quantization.tensor_quant
/// (`fake_tensor_quant`, `tensor_quant`) plus the torch-native full-range mode used for ONNX export.
///
/// Semantics (pytorch-quantization 2.1.2):
///   max_bound = 2^(num_bits - 1 + unsigned) - 1
///   min_bound = 0 (unsigned) | -max_bound (narrow_range) | -max_bound - 1
///   scale     = max_bound / amax (float32); where amax <= 2^-24 the scale is 0 (outputs 0), reported as 1
///   q         = clamp(round_half_even(x * scale), min_bound, max_bound)
///   fake      = q / scale
/// amax is broadcast against x: a 0-d / 1-element tensor is per-tensor; per-channel amax has size-1 dims
/// everywhere except the channel axis or axes (e.g. [C,1,1], [1,1,C], [C,1,D]).
/// Half and bfloat16 inputs are computed in float32 and returned in the input dtype.
/// Gradient: straight-through estimator with clipping, grad_x = grad_y where |x| <= amax, else 0.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

namespace qdqbert::ops {

/// Largest representable code: 2^(num_bits - 1 + unsigned) - 1.
double max_bound(int64_t num_bits, bool is_unsigned);
/// Smallest representable code: 0 (unsigned), -max_bound (narrow range) or -max_bound - 1.
double min_bound(int64_t num_bits, bool is_unsigned, bool narrow_range);

/// Mirrors `pytorch_quantization.tensor_quant.fake_tensor_quant` (differentiable).
at::Tensor fake_tensor_quant(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits = 8,
                             bool is_unsigned = false, bool narrow_range = true);

/// A static amax validated and turned into kernel parameters once (float32 amax on its device, scale
/// and divisor), for quantizers that apply the same amax call after call: the per-call amax checks and
/// the small tensor ops that derive the scale (about 10 us of a 16 us call on a 128 x 384 activation)
/// are paid once. Results are bit-identical to fake_tensor_quant(x, amax, ...).
struct PreparedAmax {
  at::Tensor amax;     ///< float32, on the device given to prepare_amax; 0-d when per-tensor
  at::Tensor scale;    ///< max_bound / amax (0 where amax <= 2^-24)
  at::Tensor divisor;  ///< scale as reported (1 where amax <= 2^-24)
  int64_t num_bits = 8;
  bool is_unsigned = false;
  bool narrow_range = true;
};

/// Validates `amax` (floating point, no NaN, non-negative; valid num_bits) and prepares it for `device`.
PreparedAmax prepare_amax(const at::Tensor& amax, c10::Device device, int64_t num_bits = 8, bool is_unsigned = false,
                          bool narrow_range = true);

/// fake_tensor_quant with prepared parameters; x must be on the prepared device and broadcast against
/// the amax. Differentiable (same straight-through estimator) when x requires grad.
at::Tensor fake_tensor_quant(const at::Tensor& x, const PreparedAmax& p);

/// fake_tensor_quant(x, p) written over x (returns x; its version counter is bumped): for an activation
/// nothing else reads, it saves the output buffer and a third of the memory traffic. Bit-identical to
/// fake_tensor_quant. Requires a float32 CPU tensor that does not require grad (with grad mode on), with
/// a per-tensor amax and a dense memory order; `can_quantize_in_place` says whether it applies.
at::Tensor& fake_tensor_quant_(at::Tensor& x, const PreparedAmax& p);
bool can_quantize_in_place(const at::Tensor& x, const PreparedAmax& p);

/// True when a and b quantize every input identically: the same bit width, signedness, range and scale
/// and divisor values (so one quantized tensor may serve several quantizers).
bool same_quantization(const PreparedAmax& a, const PreparedAmax& b);

/// fake_tensor_quant(a, pa) + fake_tensor_quant(b, pb): the residual add of a quantized model in one pass
/// over memory instead of three, bit-identical to the two calls and the add. For inference: when a or b
/// requires grad (with grad mode on) it takes the unfused, differentiable path. The fused kernel runs on
/// the CPU for float32 inputs of one shape and one dense memory order with per-tensor amax; anything else
/// takes the unfused path too.
at::Tensor fake_quant_add(const at::Tensor& a, const PreparedAmax& pa, const at::Tensor& b, const PreparedAmax& pb);

/// fake_tensor_quant with a trainable per-tensor amax (learned step size, Esser et al. 2020, "LSQ"): the
/// forward is bit-identical to fake_tensor_quant(x, amax.detach(), ...); the backward gives x the same
/// straight-through gradient, and `amax` (0-d or one element) the derivative of the output itself,
///   d fake / d amax = (clamp(r, lo, hi) - u [lo <= r <= hi]) / max_bound,  u = x * max_bound / amax, r = round(u)
/// i.e. (fake - x) / amax inside the range (the rounding error: a smaller range gives finer steps) and
/// ±bound / max_bound where x is clipped (a larger range clips less), summed over x and multiplied by
/// `grad_scale`. Beyond the toolkit, whose learned range (Clip) only sees the clipped values and so can
/// never trade clipping for resolution.
at::Tensor fake_tensor_quant_learned(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits = 8,
                                     bool is_unsigned = false, bool narrow_range = true, double grad_scale = 1.0);

/// Mirrors `pytorch_quantization.tensor_quant.tensor_quant`: returns (integer-valued outputs, scale).
/// The outputs are differentiable with the same straight-through estimator as fake_tensor_quant.
std::tuple<at::Tensor, at::Tensor> tensor_quant(const at::Tensor& x, const at::Tensor& amax,
                                                int64_t num_bits = 8, bool is_unsigned = false,
                                                bool narrow_range = true);

/// The "torch-native" fake quantization the reference switches to for ONNX export
/// (`TensorQuantizer.use_fb_fake_quant`): torch::fake_quantize_per_tensor_affine /
/// per_channel_affine with full range [-bound-1, bound] (signed) or [0, bound] (unsigned),
/// scale = amax / bound, zero point 0. Per-channel amax must vary along exactly one axis.
at::Tensor fake_quant_torch_native(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits = 8,
                                   bool is_unsigned = false);

/// Reshapes a 1-D per-channel amax of size x.size(axis) to broadcast along `axis` of a rank-`ndim`
/// tensor (negative axes count from the end), e.g. amax [C], axis 0, ndim 3 -> [C,1,1].
at::Tensor amax_along_axis(const at::Tensor& amax, int64_t axis, int64_t ndim);

/// max|x| reduced over every dim NOT in `keep_axes` (the axes to keep; reduced dims stay as size-1
/// dims); per-tensor (0-d) when keep_axes is empty or matches no dim. As in the reference's callers
/// (`MaxCalibrator.collect`, `TensorQuantizer._get_amax`: `reduce_axis = [i for i in range(dim) if i not
/// in axis]`), negative entries match no dimension; normalize them first to count from the end.
/// This is the complement of Python's `quant_utils.reduce_amax`, which takes the axes to reduce (see
/// reduce_amax below); e.g. keep {0} on a [C, K] tensor gives [C, 1].
at::Tensor reduce_amax_keep(const at::Tensor& x, const std::vector<int64_t>& keep_axes);

/// Mirrors `pytorch_quantization.utils.quant_utils.reduce_amax(input, axis=None, keepdims=True)`
/// (2.1.2): max|x| over the axes to REDUCE, without gradient.
///   - axis nullopt: every dim, a 0-d result (keepdims is ignored, as in the reference);
///   - otherwise each axis in [-dim, dim) (negative counts from the end) is reduced with its dim kept,
///     then, when !keepdims or the result has one element, every size-1 dim is squeezed (so a
///     one-element result is always 0-d, and keepdims=false also drops size-1 dims that were not
///     reduced — the reference's `squeeze_()`); an empty list reduces nothing.
/// A one-element list follows the reference's tuple path (Python's bare-int `axis` keeps the
/// one-element shape instead). Errors: more axes than dims (the reference's ValueError) or an axis
/// out of range.
at::Tensor reduce_amax(const at::Tensor& x, std::optional<std::vector<int64_t>> axis = std::nullopt,
                       bool keepdims = true);

}  // namespace qdqbert::ops
