#pragma once
/// \file
/// QuantLinear — mirrors `pytorch_quantization.nn.QuantLinear`: a Linear whose input and weight pass
/// through TensorQuantizers (`_input_quantizer`, `_weight_quantizer`) before F.linear.

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "qdqbert/nn/tensor_quantizer.h"

namespace qdqbert::nn {

struct QuantLinearOptions {
  QuantLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  /// Descriptors; std::nullopt = the process-wide defaults at construction time (as in Python).
  TORCH_ARG(std::optional<QuantDescriptor>, quant_desc_input) = std::nullopt;
  TORCH_ARG(std::optional<QuantDescriptor>, quant_desc_weight) = std::nullopt;
};

class QuantLinearImpl : public torch::nn::Cloneable<QuantLinearImpl> {
 public:
  QuantLinearImpl(int64_t in_features, int64_t out_features)
      : QuantLinearImpl(QuantLinearOptions(in_features, out_features)) {}
  explicit QuantLinearImpl(QuantLinearOptions options);

  void reset() override;
  /// nn.Linear initialisation: kaiming_uniform(a=sqrt(5)) weight, uniform(±1/sqrt(in)) bias.
  void reset_parameters();
  at::Tensor forward(const at::Tensor& input);
  /// forward() for an input that its input quantizer has already quantized (one quantized tensor shared
  /// by several layers that read the same input with the same quantization).
  at::Tensor forward_quantized_input(const at::Tensor& quantized_input);
  /// forward() for an input the caller hands over and no longer reads: quantized in place where the
  /// input quantizer allows (TensorQuantizer::forward_consuming).
  at::Tensor forward_consuming(at::Tensor input);
  void pretty_print(std::ostream& stream) const override;

  /// The weight after its quantizer. In eval mode without autograd the result is cached and reused
  /// until the weight, its amax or the quantizer's settings change (outputs are identical).
  at::Tensor quantized_weight();

  /// Keeps only the given output rows (dim 0 of the weight) or input columns (dim 1): used by head
  /// pruning. Per-row weight amax is pruned with the rows; the quantizers are kept.
  void prune(const at::Tensor& index, int64_t dim);

  QuantLinearOptions options;
  at::Tensor weight;
  at::Tensor bias;
  TensorQuantizer input_quantizer{nullptr};   ///< registered as "_input_quantizer"
  TensorQuantizer weight_quantizer{nullptr};  ///< registered as "_weight_quantizer"

 private:
  /// The input ends in in_features (the error names the shape).
  void check_input(const at::Tensor& input) const;
  QuantDescriptor desc_input_, desc_weight_;
  at::Tensor cached_weight_;
  const void* cached_ptr_ = nullptr;
  int64_t cached_version_ = 0;
  TensorQuantizerImpl::Fingerprint cached_for_;
};
TORCH_MODULE(QuantLinear);

}  // namespace qdqbert::nn
