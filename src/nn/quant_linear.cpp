#include "qdqbert/nn/quant_linear.h"

#include <torch/torch.h>

#include <cmath>

namespace qdqbert::nn {

QuantLinearImpl::QuantLinearImpl(QuantLinearOptions options_) : options(std::move(options_)) {
  desc_input_ = options.quant_desc_input() ? *options.quant_desc_input() : default_quant_desc_input();
  desc_weight_ = options.quant_desc_weight() ? *options.quant_desc_weight() : default_quant_desc_weight();
  TORCH_CHECK_VALUE(desc_input_.fake_quant && desc_weight_.fake_quant,
                    "QuantLinear: only fake quantization is supported (descriptor with fake_quant=False)");
  TORCH_CHECK_VALUE(options.in_features() > 0 && options.out_features() > 0,
                    "QuantLinear: in_features and out_features must be positive, got ", options.in_features(), ", ",
                    options.out_features());
  reset();
}

void QuantLinearImpl::reset() {
  weight = register_parameter("weight", torch::empty({options.out_features(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty({options.out_features()}));
  } else {
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  }
  input_quantizer = register_module("_input_quantizer", TensorQuantizer(TensorQuantizerOptions(desc_input_)));
  weight_quantizer = register_module("_weight_quantizer", TensorQuantizer(TensorQuantizerOptions(desc_weight_)));
  cached_weight_ = at::Tensor();
  reset_parameters();
}

void QuantLinearImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

at::Tensor QuantLinearImpl::quantized_weight() {
  auto& wq = *weight_quantizer;
  const bool cacheable = !is_training() && !(at::GradMode::is_enabled() && weight.requires_grad()) &&
                         wq.is_enabled() && wq.is_quant_enabled() && !wq.is_calib_enabled() && !wq.learns_range();
  if (!cacheable) {
    cached_weight_ = at::Tensor();
    return wq.forward(weight);
  }
  const auto quantizer_now = wq.fingerprint();
  if (cached_weight_.defined() && cached_ptr_ == weight.data_ptr() && cached_version_ == weight._version() &&
      cached_for_ == quantizer_now && cached_weight_.device() == weight.device()) {
    return cached_weight_;
  }
  cached_weight_ = wq.forward(weight);
  cached_ptr_ = weight.data_ptr();
  cached_version_ = weight._version();
  cached_for_ = quantizer_now;
  return cached_weight_;
}

void QuantLinearImpl::check_input(const at::Tensor& input) const {
  TORCH_CHECK_VALUE(input.dim() >= 1 && input.size(-1) == options.in_features(), "QuantLinear: input of shape ",
                    input.sizes(), " does not end in in_features=", options.in_features());
}

// forward and forward_consuming check the input before the quantizer sees it (so that a wrong shape is
// named as QuantLinear's, not as a quantizer's), then go through forward_quantized_input, whose second check
// of the same shape costs two integer comparisons.
at::Tensor QuantLinearImpl::forward(const at::Tensor& input) {
  check_input(input);
  return forward_quantized_input(input_quantizer->forward(input));
}

at::Tensor QuantLinearImpl::forward_consuming(at::Tensor input) {
  check_input(input);
  return forward_quantized_input(input_quantizer->forward_consuming(std::move(input)));
}

at::Tensor QuantLinearImpl::forward_quantized_input(const at::Tensor& qx) {
  check_input(qx);
  return torch::nn::functional::linear(qx, quantized_weight(), bias);
}

void QuantLinearImpl::prune(const at::Tensor& index, int64_t dim) {
  TORCH_CHECK_VALUE(dim == 0 || dim == 1, "QuantLinear::prune: dim must be 0 or 1, got ", dim);
  torch::NoGradGuard no_grad;
  at::Tensor idx = index.to(weight.device(), at::kLong);
  at::Tensor w = weight.index_select(dim, idx).clone().set_requires_grad(weight.requires_grad());
  parameters_["weight"] = w;
  weight = w;
  if (dim == 0) {
    if (bias.defined()) {
      at::Tensor b = bias.index_select(0, idx).clone().set_requires_grad(bias.requires_grad());
      parameters_["bias"] = b;
      bias = b;
    }
    options.out_features(idx.numel());
    at::Tensor amax = weight_quantizer->amax();
    if (amax.defined() && amax.dim() >= 1 && amax.size(0) > 1) {
      weight_quantizer->set_amax(amax.index_select(0, idx.to(amax.device())), /*allow_shape_change=*/true);
    }
  } else {
    options.in_features(idx.numel());
    at::Tensor amax = weight_quantizer->amax();
    if (amax.defined() && amax.dim() == 2 && amax.size(1) > 1) {
      weight_quantizer->set_amax(amax.index_select(1, idx.to(amax.device())), /*allow_shape_change=*/true);
    }
  }
  cached_weight_ = at::Tensor();
}

void QuantLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "qdqbert::nn::QuantLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << (bias.defined() ? "True" : "False") << ")";
}

}  // namespace qdqbert::nn
