// fake_tensor_quant / tensor_quant: validation, broadcast layout, device dispatch and autograd.
// Kernels never validate; everything a user can get wrong is checked here.
#include "qdqbert/ops/fake_quant.h"

#include <torch/torch.h>

#include <cmath>

#include "ops/cpu/fake_quant_kernel.h"
#include "qdqbert/build_config.h"
#include "qdqbert/nn/quant_descriptor.h"

#if QDQBERT_CUDA_DISPATCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "ops/cuda/fake_quant_kernel.h"
#endif

namespace qdqbert::ops {
namespace {

constexpr float kTinyAmax = 1.0f / (1 << 24);

void check_num_bits(int64_t num_bits, bool is_unsigned) {
  const int64_t min_bits = nn::min_num_bits(is_unsigned);
  TORCH_CHECK_VALUE(num_bits >= min_bits && num_bits <= nn::kMaxBits, "qdqbert fake quant: num_bits must be in [",
                    min_bits, ", ", nn::kMaxBits, "], got ", num_bits);
}

bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

// x-side checks against an amax of the given shape (no tensor ops: cheap enough for every call).
void check_input(const at::Tensor& x, at::IntArrayRef amax_sizes, int64_t amax_numel) {
  TORCH_CHECK(x.defined(), "qdqbert fake quant: input tensor is undefined");
  TORCH_CHECK_TYPE(is_supported_float(x.scalar_type()),
                   "qdqbert fake quant: input must be float, double, half or bfloat16, got ", x.scalar_type());
  const int64_t adim = static_cast<int64_t>(amax_sizes.size());
  TORCH_CHECK_VALUE(adim <= x.dim() || amax_numel == 1, "qdqbert fake quant: amax of shape ", amax_sizes,
                    " has more dims than the input of shape ", x.sizes());
  if (amax_numel == 1) return;
  for (int64_t i = 0; i < adim; ++i) {
    const int64_t xs = x.size(x.dim() - adim + i);
    TORCH_CHECK_VALUE(amax_sizes[i] == 1 || amax_sizes[i] == xs, "qdqbert fake quant: amax of shape ", amax_sizes,
                      " does not broadcast to the input of shape ", x.sizes());
  }
}

void check_unsigned_input(const at::Tensor& x, bool is_unsigned) {
  if (is_unsigned && x.numel() > 0) {
    TORCH_CHECK_VALUE(x.min().item<double>() >= 0.0,
                      "qdqbert fake quant: negative values encountered in unsigned quantization (min ",
                      x.min().item<double>(), ")");
  }
}

// amax-side checks; returns amax as float32 on `device` (0-d when it has one element).
at::Tensor checked_amax_values(const at::Tensor& amax, c10::Device device, int64_t num_bits, bool is_unsigned) {
  TORCH_CHECK(amax.defined(), "qdqbert fake quant: amax is undefined (no stored amax and none computed)");
  TORCH_CHECK_TYPE(at::isFloatingType(amax.scalar_type()), "qdqbert fake quant: amax must be floating point, got ",
                   amax.scalar_type());
  check_num_bits(num_bits, is_unsigned);
  at::Tensor a = amax.detach().to(device, at::kFloat);
  if (a.numel() == 1) a = a.reshape({});
  if (a.numel() > 0) {
    if (!a.isfinite().all().item<bool>()) {
      TORCH_CHECK_VALUE(!a.isnan().any().item<bool>(), "qdqbert fake quant: amax contains NaN (shape ", amax.sizes(),
                        "); was the quantizer calibrated with data, and are its inputs finite?");
      TORCH_CHECK_VALUE(false, "qdqbert fake quant: amax contains Inf (shape ", amax.sizes(),
                        "); every output would be NaN (are the inputs finite?)");
    }
    TORCH_CHECK_VALUE(a.min().item<float>() >= 0.f, "qdqbert fake quant: negative values in amax (min ",
                      a.min().item<float>(), ")");
  }
  return a;
}

// Validates x and amax, returns amax as a float32 tensor on x's device.
at::Tensor checked_amax(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits, bool is_unsigned) {
  TORCH_CHECK(x.defined(), "qdqbert fake quant: input tensor is undefined");  // x first, then amax
  TORCH_CHECK(amax.defined(), "qdqbert fake quant: amax is undefined (no stored amax and none computed)");
  check_input(x, amax.sizes(), amax.numel());
  at::Tensor a = checked_amax_values(amax, x.device(), num_bits, is_unsigned);
  check_unsigned_input(x, is_unsigned);
  return a;
}

// scale = max_bound / amax (0 where amax <= 2^-24); divisor = scale reported (1 there).
std::pair<at::Tensor, at::Tensor> scale_and_divisor(const at::Tensor& amax_f32, double max_bound_v) {
  at::Tensor bound = at::scalar_tensor(max_bound_v, amax_f32.options());
  at::Tensor scale = bound / amax_f32;
  at::Tensor tiny = amax_f32 <= kTinyAmax;
  at::Tensor mult = scale.masked_fill(tiny, 0.0);
  at::Tensor div = scale.masked_fill(tiny, 1.0);
  return {mult.contiguous(), div.contiguous()};
}

detail::BroadcastLayout make_layout(at::IntArrayRef x_sizes, const at::Tensor& amax) {
  detail::BroadcastLayout l;
  const int64_t nd = static_cast<int64_t>(x_sizes.size());
  TORCH_CHECK_VALUE(nd <= detail::kMaxDims, "qdqbert fake quant: inputs with more than ", detail::kMaxDims,
                    " dims are not supported, got ", nd);
  l.numel = 1;
  for (auto s : x_sizes) l.numel *= s;
  if (nd == 0) return l;
  // Scale strides of amax expanded to x's shape (0 on broadcast dims); amax is contiguous.
  std::vector<int64_t> st(nd, 0);
  int64_t running = 1;
  for (int64_t i = nd - 1, j = amax.dim() - 1; i >= 0; --i, --j) {
    const int64_t asize = j >= 0 ? amax.size(j) : 1;
    st[i] = asize == 1 ? 0 : running;
    running *= asize;
  }
  int64_t k = nd - 1;
  if (st[k] == 0) {
    l.inner_varies = false;
    l.inner = 1;
    while (k >= 0 && st[k] == 0) l.inner *= x_sizes[k--];
  } else {
    l.inner_varies = true;
    l.inner = x_sizes[k];
    --k;
    while (k >= 0 && st[k] == l.inner) l.inner *= x_sizes[k--];
  }
  l.ndim_outer = static_cast<int>(k + 1);
  for (int64_t d = 0; d <= k; ++d) {
    l.outer_sizes[d] = x_sizes[d];
    l.outer_strides[d] = st[d];
  }
  return l;
}

// Runs the kernel: returns q/scale (fake) or q (integer) as float32 with x's shape.
at::Tensor run_kernel(const at::Tensor& x32, const at::Tensor& scale, const at::Tensor& divisor, double lo,
                      double hi, detail::QuantOutput output) {
  // One scale for every element: a dense permuted view (the attention's q/k/v heads, a transposed key) is
  // quantized in its memory order and the output keeps its strides, saving the copy to contiguous.
  const bool in_memory_order = scale.numel() == 1 && x32.is_non_overlapping_and_dense();
  at::Tensor x = in_memory_order ? x32 : x32.contiguous();
  at::Tensor out = in_memory_order ? at::empty_like(x) : at::empty_like(x, at::MemoryFormat::Contiguous);
  TORCH_INTERNAL_ASSERT(!in_memory_order || out.strides() == x.strides(), "qdqbert fake quant: stride mismatch");
  detail::QuantLaunch p;
  p.x = x.data_ptr<float>();
  p.out = out.data_ptr<float>();
  p.scale = scale.data_ptr<float>();
  p.divisor = divisor.data_ptr<float>();
  p.min_bound = static_cast<float>(lo);
  p.max_bound = static_cast<float>(hi);
  p.output = output;
  p.layout = in_memory_order ? make_layout({x.numel()}, scale) : make_layout(x.sizes(), scale);
  if (x.is_cpu()) {
    cpu::quantize(p);
  } else if (x.is_cuda()) {
#if QDQBERT_CUDA_DISPATCH
    c10::cuda::CUDAGuard guard(x.device());
    const std::string err = cuda::quantize(p, at::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err.empty(), "qdqbert fake quant: ", err);
#else
    TORCH_CHECK(false, "qdqbert was built without CUDA: cannot fake-quantize a tensor on ", x.device(),
                " (rebuild with nvcc and a CUDA LibTorch, QDQBERT_WITH_CUDA=AUTO|ON)");
#endif
  } else {
    TORCH_CHECK(false, "qdqbert fake quant: unsupported device ", x.device());
  }
  return out;
}

// Forward without autograd, from validated parameters. Double inputs use the composite reference formula
// in double, like the Python function; float/half/bfloat16 run the kernel in float32.
at::Tensor quantize_prepared(const at::Tensor& x, const PreparedAmax& p, detail::QuantOutput output) {
  const double hi = max_bound(p.num_bits, p.is_unsigned);
  const double lo = min_bound(p.num_bits, p.is_unsigned, p.narrow_range);
  if (x.scalar_type() == at::kDouble) {
    at::Tensor s = p.scale.to(at::kDouble);
    at::Tensor q = at::clamp(at::round(x * s), lo, hi);
    return output == detail::QuantOutput::kFake ? q / p.divisor.to(at::kDouble) : q;
  }
  at::Tensor out = run_kernel(x.to(at::kFloat), p.scale, p.divisor, lo, hi, output);
  return x.scalar_type() == at::kFloat ? out : out.to(x.scalar_type());
}

PreparedAmax prepare_checked(const at::Tensor& a, int64_t num_bits, bool is_unsigned, bool narrow_range) {
  PreparedAmax p;
  p.amax = a;
  std::tie(p.scale, p.divisor) = scale_and_divisor(a, max_bound(num_bits, is_unsigned));
  p.num_bits = num_bits;
  p.is_unsigned = is_unsigned;
  p.narrow_range = narrow_range;
  return p;
}

at::Tensor quantize_forward(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits, bool is_unsigned,
                            bool narrow_range, detail::QuantOutput output) {
  at::Tensor a = checked_amax(x, amax, num_bits, is_unsigned);
  return quantize_prepared(x, prepare_checked(a, num_bits, is_unsigned, narrow_range), output);
}

// x and grad as the fused CPU backward kernels read them: float32 on the CPU, in one memory order. A
// per-tensor amax lets a dense permuted view (the attention's heads) keep its order; otherwise contiguous.
// Returns false where the composite formula must run instead (other devices and dtypes).
bool fused_backward_inputs(const at::Tensor& x, const at::Tensor& grad, bool per_tensor, at::Tensor& xc,
                           at::Tensor& gc) {
  if (!x.is_cpu() || !grad.is_cpu() || x.scalar_type() != at::kFloat || grad.scalar_type() != at::kFloat ||
      x.sizes() != grad.sizes()) {
    return false;
  }
  const bool same_order = per_tensor && x.is_non_overlapping_and_dense() && grad.strides() == x.strides();
  xc = same_order ? x : x.contiguous();
  gc = same_order ? grad : grad.contiguous();
  return true;
}

// Straight-through estimator with clipping: grad passes where |x| <= amax. One pass on the CPU.
at::Tensor ste_backward(const at::Tensor& x, const at::Tensor& amax, const at::Tensor& grad) {
  at::Tensor xc, gc;
  const at::Tensor a = amax.to(at::kFloat).contiguous();
  if (!fused_backward_inputs(x, grad, a.numel() == 1, xc, gc) || !a.is_cpu()) {
    return at::where(x.abs() <= amax, grad, at::zeros({}, grad.options()));
  }
  at::Tensor out = at::empty_like(xc);
  detail::SteLaunch p;
  p.x = xc.data_ptr<float>();
  p.grad = gc.data_ptr<float>();
  p.out = out.data_ptr<float>();
  p.amax = a.data_ptr<float>();
  p.layout = a.numel() == 1 ? make_layout({xc.numel()}, a) : make_layout(xc.sizes(), a);
  cpu::ste_backward(p);
  return out;
}

struct QuantizeFunction : public torch::autograd::Function<QuantizeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& amax,
                            int64_t num_bits, bool is_unsigned, bool narrow_range, bool integer_output) {
    at::Tensor out =
        quantize_forward(x, amax, num_bits, is_unsigned, narrow_range,
                         integer_output ? detail::QuantOutput::kInteger : detail::QuantOutput::kFake);
    ctx->save_for_backward({x, amax.detach().to(x.device())});
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    return {ste_backward(saved[0], saved[1], grads[0]), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

// Learned step size: the forward of QuantizeFunction, plus the derivative of the output in amax.
struct LearnedQuantizeFunction : public torch::autograd::Function<LearnedQuantizeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& amax,
                            int64_t num_bits, bool is_unsigned, bool narrow_range, double grad_scale) {
    at::Tensor out = quantize_forward(x, amax.detach(), num_bits, is_unsigned, narrow_range, detail::QuantOutput::kFake);
    ctx->save_for_backward({x, amax.detach()});
    ctx->saved_data["bits"] = num_bits;
    ctx->saved_data["unsigned"] = is_unsigned;
    ctx->saved_data["narrow"] = narrow_range;
    ctx->saved_data["grad_scale"] = grad_scale;
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& grad = grads[0];
    const bool is_unsigned = ctx->saved_data["unsigned"].toBool();
    const int64_t bits = ctx->saved_data["bits"].toInt();
    const double hi = max_bound(bits, is_unsigned);
    const double lo = min_bound(bits, is_unsigned, ctx->saved_data["narrow"].toBool());
    const at::Tensor a = saved[1].to(x.device(), at::kFloat).reshape({});
    const double grad_scale = ctx->saved_data["grad_scale"].toDouble();
    const float amax = a.item<float>();
    at::Tensor xc, gc;
    if (amax > kTinyAmax && fused_backward_inputs(x, grad, /*per_tensor=*/true, xc, gc)) {
      at::Tensor grad_x = at::empty_like(xc);
      detail::LearnedBackwardLaunch p;
      p.x = xc.data_ptr<float>();
      p.grad = gc.data_ptr<float>();
      p.out = grad_x.data_ptr<float>();
      p.numel = xc.numel();
      p.amax = amax;
      p.scale = static_cast<float>(hi) / amax;
      p.min_bound = static_cast<float>(lo);
      p.max_bound = static_cast<float>(hi);
      const double sum = cpu::learned_backward(p);
      at::Tensor grad_a = at::scalar_tensor(sum * grad_scale / hi, at::kDouble)
                              .reshape(saved[1].sizes())
                              .to(saved[1].scalar_type());
      return {grad_x, grad_a, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    at::Tensor grad_x = ste_backward(x, a, grad);
    at::Tensor grad_a;
    if (amax <= kTinyAmax) {
      grad_a = at::zeros_like(saved[1]);  // the output is 0 whatever amax is
    } else {
      at::NoGradGuard no_grad;
      const at::Tensor u = x.to(at::promote_types(x.scalar_type(), at::kFloat)) * (hi / a);
      const at::Tensor r = at::round(u);
      const at::Tensor inside = (r >= lo).logical_and_(r <= hi);
      const at::Tensor d = r.clamp(lo, hi).sub_(u.mul_(inside));
      grad_a = (d.mul_(grad).sum() * (grad_scale / hi))
                   .reshape(saved[1].sizes())
                   .to(saved[1].scalar_type());
    }
    return {grad_x, grad_a, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor quantize(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits, bool is_unsigned,
                    bool narrow_range, bool integer_output) {
  if (x.defined() && x.requires_grad() && at::GradMode::is_enabled()) {
    return QuantizeFunction::apply(x, amax, num_bits, is_unsigned, narrow_range, integer_output);
  }
  return quantize_forward(x, amax, num_bits, is_unsigned, narrow_range,
                          integer_output ? detail::QuantOutput::kInteger : detail::QuantOutput::kFake);
}

}  // namespace

PreparedAmax prepare_amax(const at::Tensor& amax, c10::Device device, int64_t num_bits, bool is_unsigned,
                          bool narrow_range) {
  return prepare_checked(checked_amax_values(amax, device, num_bits, is_unsigned), num_bits, is_unsigned, narrow_range);
}

at::Tensor fake_tensor_quant(const at::Tensor& x, const PreparedAmax& p) {
  TORCH_CHECK(p.amax.defined(), "qdqbert fake quant: PreparedAmax is empty (use prepare_amax)");
  check_input(x, p.amax.sizes(), p.amax.numel());
  TORCH_CHECK_VALUE(x.device() == p.amax.device(), "qdqbert fake quant: input on ", x.device(),
                    " but the prepared amax is on ", p.amax.device());
  if (x.requires_grad() && at::GradMode::is_enabled()) {
    return quantize(x, p.amax, p.num_bits, p.is_unsigned, p.narrow_range, /*integer_output=*/false);
  }
  check_unsigned_input(x, p.is_unsigned);
  return quantize_prepared(x, p, detail::QuantOutput::kFake);
}

namespace {
// A per-tensor PreparedAmax on the CPU as the kernels take it.
detail::ScalarQuant scalar_quant(const PreparedAmax& p) {
  detail::ScalarQuant q;
  q.scale = *p.scale.data_ptr<float>();  // float32, one element (prepare_amax)
  q.divisor = *p.divisor.data_ptr<float>();
  q.min_bound = static_cast<float>(min_bound(p.num_bits, p.is_unsigned, p.narrow_range));
  q.max_bound = static_cast<float>(max_bound(p.num_bits, p.is_unsigned));
  return q;
}
}  // namespace

bool can_quantize_in_place(const at::Tensor& x, const PreparedAmax& p) {
  return x.defined() && p.amax.defined() && x.is_cpu() && p.amax.is_cpu() && x.scalar_type() == at::kFloat &&
         p.scale.numel() == 1 && !(x.requires_grad() && at::GradMode::is_enabled()) &&
         x.is_non_overlapping_and_dense() && !p.is_unsigned;
}

at::Tensor& fake_tensor_quant_(at::Tensor& x, const PreparedAmax& p) {
  TORCH_CHECK_VALUE(can_quantize_in_place(x, p), "qdqbert fake quant in place: needs a dense float32 CPU tensor "
                    "that does not require grad and a signed per-tensor amax, got ", x.scalar_type(), " on ",
                    x.device(), " with amax of shape ", p.amax.sizes());
  cpu::quantize_inplace(x.data_ptr<float>(), x.numel(), scalar_quant(p));
  if (!x.is_inference()) x.unsafeGetTensorImpl()->bump_version();  // inference tensors have no version
  return x;
}

bool same_quantization(const PreparedAmax& a, const PreparedAmax& b) {
  if (a.num_bits != b.num_bits || a.is_unsigned != b.is_unsigned || a.narrow_range != b.narrow_range ||
      a.scale.sizes() != b.scale.sizes() || a.scale.device() != b.scale.device()) {
    return false;
  }
  if (a.scale.is_cpu() && a.scale.numel() == 1) {  // the common case, without a dispatch per call
    return *a.scale.data_ptr<float>() == *b.scale.data_ptr<float>() &&
           *a.divisor.data_ptr<float>() == *b.divisor.data_ptr<float>();
  }
  return at::equal(a.scale, b.scale) && at::equal(a.divisor, b.divisor);
}

at::Tensor fake_quant_add(const at::Tensor& a, const PreparedAmax& pa, const at::Tensor& b, const PreparedAmax& pb) {
  const bool needs_grad = at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad());
  const bool fused = !needs_grad && a.is_cpu() && b.is_cpu() && a.scalar_type() == at::kFloat &&
                     b.scalar_type() == at::kFloat && a.sizes() == b.sizes() && a.strides() == b.strides() &&
                     a.is_non_overlapping_and_dense() && pa.scale.numel() == 1 && pb.scale.numel() == 1 &&
                     pa.amax.is_cpu() && pb.amax.is_cpu();
  if (!fused) return fake_tensor_quant(a, pa) + fake_tensor_quant(b, pb);
  check_input(a, pa.amax.sizes(), pa.amax.numel());
  check_input(b, pb.amax.sizes(), pb.amax.numel());
  check_unsigned_input(a, pa.is_unsigned);
  check_unsigned_input(b, pb.is_unsigned);
  at::Tensor out = at::empty_like(a);
  TORCH_INTERNAL_ASSERT(out.strides() == a.strides(), "qdqbert fake_quant_add: stride mismatch");
  detail::QuantAddLaunch p;
  p.a = a.data_ptr<float>();
  p.b = b.data_ptr<float>();
  p.out = out.data_ptr<float>();
  p.numel = a.numel();
  p.qa = scalar_quant(pa);
  p.qb = scalar_quant(pb);
  cpu::quantize_add(p);
  return out;
}

double max_bound(int64_t num_bits, bool is_unsigned) {
  return std::ldexp(1.0, static_cast<int>(num_bits - 1 + (is_unsigned ? 1 : 0))) - 1.0;
}

double min_bound(int64_t num_bits, bool is_unsigned, bool narrow_range) {
  if (is_unsigned) return 0.0;
  const double hi = max_bound(num_bits, is_unsigned);
  return narrow_range ? -hi : -hi - 1.0;
}

at::Tensor fake_tensor_quant(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits, bool is_unsigned,
                             bool narrow_range) {
  return quantize(x, amax, num_bits, is_unsigned, narrow_range, /*integer_output=*/false);
}

at::Tensor fake_tensor_quant_learned(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits, bool is_unsigned,
                                     bool narrow_range, double grad_scale) {
  TORCH_CHECK(amax.defined(), "qdqbert fake quant: amax is undefined (no stored amax and none computed)");
  TORCH_CHECK_VALUE(amax.numel() == 1, "qdqbert fake quant: a learned amax must be per tensor (one element), got shape ",
                    amax.sizes());
  TORCH_CHECK_VALUE(std::isfinite(grad_scale), "qdqbert fake quant: grad_scale must be finite, got ", grad_scale);
  const bool grad = at::GradMode::is_enabled() && ((x.defined() && x.requires_grad()) || amax.requires_grad());
  if (grad) {
    return LearnedQuantizeFunction::apply(x, amax, num_bits, is_unsigned, narrow_range, grad_scale);
  }
  return quantize(x, amax.detach(), num_bits, is_unsigned, narrow_range, /*integer_output=*/false);
}

std::tuple<at::Tensor, at::Tensor> tensor_quant(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits,
                                                bool is_unsigned, bool narrow_range) {
  at::Tensor out = quantize(x, amax, num_bits, is_unsigned, narrow_range, /*integer_output=*/true);
  at::Tensor a = amax.detach().to(x.device(), at::kFloat);
  if (a.numel() == 1 && amax.dim() == 0) a = a.reshape({});
  return {out, scale_and_divisor(a, max_bound(num_bits, is_unsigned)).second};
}

at::Tensor fake_quant_torch_native(const at::Tensor& x, const at::Tensor& amax, int64_t num_bits,
                                   bool is_unsigned) {
  TORCH_CHECK(x.defined() && amax.defined(), "qdqbert torch-native fake quant: undefined input or amax");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat,
                   "qdqbert torch-native fake quant (ONNX export mode) needs float32 input, got ", x.scalar_type(),
                   "; export in fp32");
  check_num_bits(num_bits, is_unsigned);
  const int64_t bound = (int64_t{1} << (num_bits - 1 + (is_unsigned ? 1 : 0))) - 1;
  const int64_t qmin = is_unsigned ? 0 : -bound - 1;
  at::Tensor a = amax.detach().to(x.device(), at::kFloat);
  TORCH_CHECK_VALUE(a.isfinite().all().item<bool>() && a.min().item<float>() >= 0.f,
                    "qdqbert torch-native fake quant: amax must be finite and non-negative");
  if (a.numel() == 1) {
    const double scale = static_cast<double>(a.item<float>()) / static_cast<double>(bound);
    return at::fake_quantize_per_tensor_affine(x, scale, 0, qmin, bound);
  }
  at::Tensor sq = a.squeeze();
  TORCH_CHECK_VALUE(sq.dim() == 1, "qdqbert torch-native fake quant: amax of shape ", amax.sizes(),
                    " varies along more than one axis; torch (and ONNX) support a single quantization axis");
  int64_t axis = -1;
  for (int64_t i = 0; i < a.dim(); ++i) {
    if (a.size(i) == sq.size(0)) {
      axis = i + (x.dim() - a.dim());
      break;
    }
  }
  at::Tensor scale = sq / static_cast<float>(bound);
  at::Tensor zp = at::zeros(scale.sizes(), scale.options().dtype(at::kInt));
  return at::fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, bound);
}

at::Tensor amax_along_axis(const at::Tensor& amax, int64_t axis, int64_t ndim) {
  TORCH_CHECK_VALUE(amax.dim() == 1, "amax_along_axis: expected a 1-D amax, got shape ", amax.sizes());
  const int64_t ax = axis < 0 ? axis + ndim : axis;
  TORCH_CHECK_INDEX(ax >= 0 && ax < ndim, "amax_along_axis: axis ", axis, " out of range for ", ndim, " dims");
  std::vector<int64_t> shape(ndim, 1);
  shape[ax] = amax.size(0);
  return amax.reshape(shape);
}

at::Tensor reduce_amax_keep(const at::Tensor& x, const std::vector<int64_t>& keep_axes) {
  at::NoGradGuard no_grad;
  at::Tensor a = x.detach().abs();
  std::vector<int64_t> reduce;
  for (int64_t i = 0; i < x.dim(); ++i) {
    bool keep = false;
    for (auto k : keep_axes) keep = keep || k == i;
    if (!keep) reduce.push_back(i);
  }
  if (keep_axes.empty() || static_cast<int64_t>(reduce.size()) == x.dim()) return a.max();
  if (reduce.empty()) return a;
  return at::amax(a, reduce, /*keepdim=*/true);
}

at::Tensor reduce_amax(const at::Tensor& x, std::optional<std::vector<int64_t>> axis, bool keepdims) {
  TORCH_CHECK_VALUE(x.defined(), "reduce_amax: undefined tensor");
  at::NoGradGuard no_grad;
  at::Tensor a = x.detach().abs();
  if (!axis) return a.max();
  const int64_t nd = x.dim();
  TORCH_CHECK_VALUE(static_cast<int64_t>(axis->size()) <= nd, "reduce_amax: cannot reduce more axes (",
                    c10::IntArrayRef(*axis), ") than the tensor's dims (shape ", x.sizes(), ")");
  for (const int64_t ax : *axis) {
    TORCH_CHECK_INDEX(ax >= -nd && ax < nd, "reduce_amax: axis ", ax, " is out of range [", -nd, ", ", nd,
                      ") for shape ", x.sizes());
    // Each reduction keeps its dim, so the remaining (possibly negative) axes still index the input.
    a = at::amax(a, {ax}, /*keepdim=*/true);
  }
  if (!keepdims || a.numel() == 1) a = a.squeeze();
  return a;
}

}  // namespace qdqbert::ops
