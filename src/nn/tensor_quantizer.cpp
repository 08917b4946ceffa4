#include "qdqbert/nn/tensor_quantizer.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "nn/module_access.h"
#include "qdqbert/ops/fake_quant.h"
#include "qdqbert/strings.h"

namespace qdqbert::nn {

// ----------------------------------------------------------------------------------------------
// Clip
// ----------------------------------------------------------------------------------------------
namespace {
struct ClipFunction : public torch::autograd::Function<ClipFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cmin,
                            const at::Tensor& cmax) {
    ctx->save_for_backward({x, cmin, cmax});
    return at::max(at::min(x, cmax), cmin);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto s = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    at::Tensor min_mask = (s[0] > s[1]).to(g.scalar_type());
    at::Tensor max_mask = (s[0] < s[2]).to(g.scalar_type());
    at::Tensor gx = g * min_mask * max_mask;
    at::Tensor gmin = (g * (1. - min_mask)).sum().reshape(s[1].sizes());
    at::Tensor gmax = (g * (1. - max_mask)).sum().reshape(s[2].sizes());
    return {gx, gmin, gmax};
  }
};
}  // namespace

ClipImpl::ClipImpl(double clip_value_min, double clip_value_max) : init_min_(clip_value_min), init_max_(clip_value_max) {
  reset();
}

void ClipImpl::reset() {
  clip_value_min = register_parameter("clip_value_min", at::scalar_tensor(init_min_, at::kFloat));
  clip_value_max = register_parameter("clip_value_max", at::scalar_tensor(init_max_, at::kFloat));
}

at::Tensor ClipImpl::forward(const at::Tensor& x) { return ClipFunction::apply(x, clip_value_min, clip_value_max); }

// ----------------------------------------------------------------------------------------------
// LearnedRange
// ----------------------------------------------------------------------------------------------
LearnedRangeImpl::LearnedRangeImpl(double amax) : init_amax_(amax) {
  TORCH_CHECK_VALUE(std::isfinite(amax) && amax > 0, "LearnedRange: amax must be positive and finite, got ", amax);
  reset();
}

void LearnedRangeImpl::reset() {
  log_amax = register_parameter("log_amax", at::scalar_tensor(std::log(init_amax_), at::kFloat));
}

at::Tensor LearnedRangeImpl::amax() const { return log_amax.exp(); }

bool is_range_parameter(const std::string& name) {
  for (const char* leaf : {"clip.clip_value_min", "clip.clip_value_max", "learned_range.log_amax"}) {
    if (name == leaf || ends_with(name, std::string(".") + leaf)) return true;
  }
  return false;
}

RangeLearning parse_range_learning(const std::string& name) {
  if (name == "lsq") return RangeLearning::kLsq;
  TORCH_CHECK_VALUE(name == "clip", "unknown range learning '", name, "' (clip or lsq)");
  return RangeLearning::kClip;
}

std::string to_string(RangeLearning how) { return how == RangeLearning::kLsq ? "lsq" : "clip"; }

// ----------------------------------------------------------------------------------------------
// TensorQuantizer
// ----------------------------------------------------------------------------------------------
TensorQuantizerImpl::TensorQuantizerImpl(TensorQuantizerOptions options) : options_(std::move(options)) {
  const QuantDescriptor& d = options_.quant_desc();
  d.validate();
  num_bits_ = d.num_bits;
  fake_quant_ = d.fake_quant;
  axis_ = d.axis;
  scale_amax_ = d.scale_amax;
  learn_amax_ = d.learn_amax;
  unsigned_ = d.is_unsigned;
  narrow_range_ = d.narrow_range;
  disabled_ = options_.disabled();
  if_quant_ = options_.if_quant();
  if_calib_ = options_.if_calib();
  if (fake_quant_) scale_ = at::scalar_tensor(1.0, at::kDouble);
  if (d.amax) {
    at::Tensor a = at::tensor(*d.amax, at::kFloat);
    amax_ = d.amax_is_scalar ? a.reshape({}) : a;
  }
  std::vector<int64_t> cal_axis = axis_ ? *axis_ : std::vector<int64_t>{};
  if (d.calib_method == "histogram") {
    calibrator_ = std::make_unique<calib::HistogramCalibrator>(num_bits_, cal_axis, unsigned_);
  } else if (d.calib_method == "max") {
    calibrator_ = std::make_unique<calib::MaxCalibrator>(num_bits_, cal_axis, unsigned_);
  }
  reset();
  if (learn_amax_) enable_clip();
  if (options_.if_clip()) enable_clip();
}

TensorQuantizerImpl::TensorQuantizerImpl(const TensorQuantizerImpl& o)
    :
#if TORCH_VERSION_MAJOR < 2
      // LibTorch 1.x: Module is a virtual base of Cloneable, initialised by the most-derived class.
      torch::nn::Module(o),
#endif
      torch::nn::Cloneable<TensorQuantizerImpl>(o),
      clip(o.clip),
      learned_range(o.learned_range),
      options_(o.options_),
      num_bits_(o.num_bits_),
      fake_quant_(o.fake_quant_),
      axis_(o.axis_),
      scale_amax_(o.scale_amax_),
      learn_amax_(o.learn_amax_),
      unsigned_(o.unsigned_),
      narrow_range_(o.narrow_range_),
      disabled_(o.disabled_),
      if_quant_(o.if_quant_),
      if_clip_(o.if_clip_),
      if_calib_(o.if_calib_),
      mode_(o.mode_),
      amax_(o.amax_),
      scale_(o.scale_),
      calibrator_(o.calibrator_ ? o.calibrator_->clone() : nullptr),
      state_version_(o.state_version_) {}

TensorQuantizerImpl& TensorQuantizerImpl::operator=(const TensorQuantizerImpl& o) {
  if (this != &o) {
    TensorQuantizerImpl tmp(o);
    *this = std::move(tmp);
  }
  return *this;
}

void TensorQuantizerImpl::reset() {
  // A defined amax gets its own storage (reset() runs on copies made by clone()).
  amax_ = register_buffer("_amax", amax_.defined() ? amax_.detach().clone() : at::Tensor());
  if (learn_amax_) {
    double init = 1.0;
    if (options_.quant_desc().amax) {
      init = 0.0;
      for (float v : *options_.quant_desc().amax) init = std::max(init, static_cast<double>(v));
    }
    clip = register_module("clip", Clip(-init, init));
  }
}

void TensorQuantizerImpl::enable_calib() {
  TORCH_CHECK(calibrator_ != nullptr, "TensorQuantizer: calibrator was not created (calib_method '",
              options_.quant_desc().calib_method, "'), cannot enable calibration");
  if_calib_ = true;
  ++state_version_;
}

void TensorQuantizerImpl::enable_clip() {
  TORCH_CHECK_VALUE(learn_amax_, "TensorQuantizer: learn_amax is False. Cannot enable clip.");
  clip->clip_value_min.set_requires_grad(true);
  clip->clip_value_max.set_requires_grad(true);
  if_clip_ = true;
  ++state_version_;
}

void TensorQuantizerImpl::disable_clip() {
  if (clip) {
    clip->clip_value_min.set_requires_grad(false);
    clip->clip_value_max.set_requires_grad(false);
  }
  if_clip_ = false;
  ++state_version_;
}

void TensorQuantizerImpl::set_num_bits(int64_t v) {
  num_bits_ = v;
  if (calibrator_) calibrator_->set_num_bits(v);
  ++state_version_;
}

void TensorQuantizerImpl::set_unsigned(bool v) {
  unsigned_ = v;
  if (calibrator_) calibrator_->set_unsigned(v);
  ++state_version_;
}

void TensorQuantizerImpl::set_axis(std::optional<std::vector<int64_t>> axis) {
  axis_ = std::move(axis);
  std::vector<int64_t> cal_axis = axis_ ? *axis_ : std::vector<int64_t>{};
  if (calibrator_) {
    if (calibrator_->kind() == calib::CalibratorKind::kHistogram) {
      TORCH_CHECK_VALUE(cal_axis.empty(), "TensorQuantizer::set_axis: a histogram calibrator is per tensor only");
      auto* h = static_cast<calib::HistogramCalibrator*>(calibrator_.get());
      calibrator_ = std::make_unique<calib::HistogramCalibrator>(num_bits_, cal_axis, unsigned_, h->num_bins(),
                                                                 h->skip_zeros());
    } else {
      calibrator_ = std::make_unique<calib::MaxCalibrator>(num_bits_, cal_axis, unsigned_);
    }
  }
  if (amax_.defined() && amax_.numel() != 1) clear_amax();
  ++state_version_;
}

void TensorQuantizerImpl::set_amax(const at::Tensor& value, bool allow_shape_change) {
  TORCH_CHECK_VALUE(value.defined(), "TensorQuantizer::set_amax: undefined tensor");
  at::Tensor v = value.detach().to(at::kFloat);
  if (!amax_.defined()) {
    at::Tensor t = v.clone();
    detail::set_buffer(*this, "_amax", t);
    amax_ = t;
  } else if (amax_.sizes() != v.sizes()) {
    TORCH_CHECK_VALUE(allow_shape_change, "TensorQuantizer::set_amax: changing the shape of amax from ",
                      amax_.sizes(), " to ", v.sizes(), " is not allowed");
    at::Tensor t = v.to(amax_.device()).clone();
    detail::set_buffer(*this, "_amax", t);
    amax_ = t;
  } else {
    at::NoGradGuard no_grad;
    amax_.copy_(v);
  }
  ++state_version_;
}

void TensorQuantizerImpl::clear_amax() {
  detail::set_buffer(*this, "_amax", at::Tensor());
  amax_ = at::Tensor();
  ++state_version_;
}

void TensorQuantizerImpl::load_calib_amax(const std::string& method, const calib::ComputeAmaxOptions& options,
                                          bool strict, const std::string& name) {
  const std::string who = name.empty() ? std::string("TensorQuantizer") : "quantizer '" + name + "'";
  TORCH_CHECK(calibrator_ != nullptr, who, ": calibrator not created (calib_method '",
              options_.quant_desc().calib_method, "')");
  at::Tensor a = calibrator_->compute_amax(method, options);
  if (!a.defined()) {
    TORCH_CHECK(!strict, who, ": its ", calibrator_->name(),
                " saw no data, so no amax can be computed (was this module reached by the calibration batches?)");
    TORCH_WARN(who, ": calibrator saw no data; amax set to NaN");
    a = at::scalar_tensor(std::nan(""), at::kFloat);
  }
  set_amax(a, /*allow_shape_change=*/true);
}

void TensorQuantizerImpl::init_learn_amax() {
  TORCH_CHECK(learn_amax_, "TensorQuantizer: called init_learn_amax with learn_amax=False");
  TORCH_CHECK(amax_.defined(), "TensorQuantizer: init_learn_amax needs a stored amax");
  at::NoGradGuard no_grad;
  at::Tensor init = amax_.numel() != 1 ? amax_.max() : amax_.reshape({});
  clip->clip_value_min.copy_(-init);
  clip->clip_value_max.copy_(init);
  ++state_version_;
}

void TensorQuantizerImpl::start_learning_amax(RangeLearning how) {
  TORCH_CHECK_VALUE(!learns_range(), "TensorQuantizer: already learning its amax");
  TORCH_CHECK_VALUE(amax_.defined(), "TensorQuantizer: learning amax needs a calibrated (stored) amax to start from");
  TORCH_CHECK_VALUE(amax_.numel() == 1 && !axis_,
                    "TensorQuantizer: learning amax needs a per-tensor amax (the clip bounds are scalars), got shape ",
                    amax_.sizes());
  const double a = amax_.item<double>();
  TORCH_CHECK_VALUE(std::isfinite(a) && a > 0, "TensorQuantizer: learning amax needs a positive finite amax, got ", a);
  if (how == RangeLearning::kLsq) {
    learned_range = register_module("learned_range", LearnedRange(a));
    if (amax_.device() != learned_range->log_amax.device()) learned_range->to(amax_.device());
    ++state_version_;
    return;
  }
  learn_amax_ = true;
  clip = register_module("clip", Clip(-a, a));
  if (amax_.device() != clip->clip_value_min.device()) clip->to(amax_.device());
  enable_clip();
  ++state_version_;
}

void TensorQuantizerImpl::freeze_learned_amax() {
  TORCH_CHECK_VALUE((learn_amax_ && clip) || learned_range,
                    "TensorQuantizer: freeze_learned_amax on a quantizer that does not learn its amax");
  if (learned_range) {
    at::Tensor a;
    {
      at::NoGradGuard no_grad;
      a = learned_range->amax().detach().clone();
    }
    unregister_module("learned_range");
    learned_range = nullptr;
    set_amax(a.reshape(amax_.sizes()).to(amax_.device()), /*allow_shape_change=*/true);
    return;
  }
  at::Tensor a;
  {
    at::NoGradGuard no_grad;
    a = at::max(-clip->clip_value_min, clip->clip_value_max).detach().clone();
  }
  disable_clip();
  unregister_module("clip");
  clip = nullptr;
  learn_amax_ = false;
  set_amax(amax_.defined() ? a.reshape(amax_.sizes()).to(amax_.device()) : a, /*allow_shape_change=*/true);
  ++state_version_;
}

at::Tensor TensorQuantizerImpl::step_size() const {
  if (!amax_.defined()) return {};
  return amax_ / maxbound();
}

double TensorQuantizerImpl::maxbound() const { return ops::max_bound(num_bits_, unsigned_); }

std::vector<int64_t> TensorQuantizerImpl::reduce_keep_axes(int64_t ndim) const {
  std::vector<int64_t> keep = *axis_;
  bool negative = false;
  for (auto& a : keep) {
    if (a < 0) {
      negative = true;
      if (options_.normalize_negative_axes()) a += ndim;
    }
    // An axis past the input's rank would otherwise match nothing and silently quantize per tensor.
    TORCH_CHECK_INDEX(a < ndim && (a >= 0 || !options_.normalize_negative_axes()), "TensorQuantizer ",
                      options_.quant_desc().str(), ": axis ", c10::IntArrayRef(*axis_), " is out of range for a ",
                      ndim, "-dimensional input");
  }
  if (negative && !options_.normalize_negative_axes()) {
    TORCH_WARN_ONCE("TensorQuantizer: negative axis in ", c10::IntArrayRef(*axis_),
                    " matches no dimension (pytorch-quantization 2.1.2 behaviour reproduced): the dynamic amax is "
                    "reduced over every dim. Set TensorQuantizerOptions::normalize_negative_axes(true) to count "
                    "negative axes from the end.");
  }
  return keep;
}

at::Tensor TensorQuantizerImpl::effective_amax(const at::Tensor& x) const {
  at::Tensor amax;
  if (learned_range) {
    amax = learned_range->amax().reshape(amax_.sizes());
  } else if (amax_.defined()) {
    amax = amax_;
  } else if (!axis_) {
    amax = ops::reduce_amax_keep(x, {});
  } else {
    amax = ops::reduce_amax_keep(x, reduce_keep_axes(x.dim()));
  }
  if (scale_amax_) amax = amax.detach() * *scale_amax_;
  return amax;
}

TensorQuantizerImpl::Fingerprint TensorQuantizerImpl::fingerprint() const {
  Fingerprint f;
  f.state = state_version_;
  if (amax_.defined()) {
    f.amax_impl = amax_.unsafeGetTensorImpl();
    f.amax_data = amax_.data_ptr();
    f.amax_version = static_cast<int64_t>(amax_._version());
  }
  return f;
}

const ops::PreparedAmax& TensorQuantizerImpl::prepared_amax(c10::Device device) {
  const Fingerprint now = fingerprint();
  if (!prepared_.amax.defined() || !(prepared_for_ == now) || prepared_.amax.device() != device) {
    at::NoGradGuard no_grad;
    prepared_ = ops::prepare_amax(effective_amax(at::Tensor()), device, num_bits_, unsigned_, narrow_range_);
    prepared_for_ = now;
  }
  return prepared_;
}

const ops::PreparedAmax* TensorQuantizerImpl::static_prepared(c10::Device device) {
  // The conditions of forward()'s first fast path.
  if (disabled_ || if_calib_ || !if_quant_ || !fake_quant_ || mode_ != FakeQuantMode::kReference || learns_range() ||
      !amax_.defined()) {
    return nullptr;
  }
  return &prepared_amax(device);
}

at::Tensor TensorQuantizerImpl::forward_consuming(at::Tensor x) {
  if (x.defined() && x.has_storage() && x.use_count() == 1 && x.storage().use_count() == 1) {
    const ops::PreparedAmax* p = static_prepared(x.device());
    if (p != nullptr && ops::can_quantize_in_place(x, *p)) return ops::fake_tensor_quant_(x, *p);
  }
  return forward(x);
}

at::Tensor TensorQuantizerImpl::forward(const at::Tensor& x) {
  if (disabled_) return x;
  if (if_calib_) {
    TORCH_CHECK(calibrator_ != nullptr, "TensorQuantizer: calibrator was not created");
    calibrator_->collect(x);
  }
  if (if_quant_) {
    // A static amax in the reference mode: validated and turned into a scale once (prepared_amax).
    if (fake_quant_ && mode_ == FakeQuantMode::kReference && !learns_range() && amax_.defined() && x.defined()) {
      return ops::fake_tensor_quant(x, prepared_amax(x.device()));
    }
    if (learned_range && fake_quant_ && mode_ == FakeQuantMode::kReference) {
      return ops::fake_tensor_quant_learned(x, effective_amax(x), num_bits_, unsigned_, narrow_range_);
    }
    at::Tensor in = x;
    at::Tensor amax;
    if (learn_amax_) {
      in = clip->forward(x);
      amax = at::max(-clip->clip_value_min, clip->clip_value_max).detach();
    } else {
      amax = effective_amax(x);
    }
    if (!fake_quant_) {
      auto [out, scale] = ops::tensor_quant(in, amax, num_bits_, unsigned_);
      scale_ = scale;
      return out;
    }
    if (mode_ == FakeQuantMode::kTorchNative) return ops::fake_quant_torch_native(in, amax, num_bits_, unsigned_);
    return ops::fake_tensor_quant(in, amax, num_bits_, unsigned_, narrow_range_);
  }
  if (if_clip_) {
    TORCH_CHECK(learn_amax_, "TensorQuantizer: clip without learning amax is not implemented");
    return clip->forward(x);
  }
  return x;
}

namespace {
std::string fmt4(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}
}  // namespace

std::string TensorQuantizerImpl::extra_repr() const {
  if (disabled_) return "disabled";
  std::string s = std::string(unsigned_ ? "unsigned " : "") + std::to_string(num_bits_) + "bit";
  if (narrow_range_) s += " narrow";
  if (fake_quant_) s += " fake";
  if (axis_) {
    s += " axis=" + axis_repr(*axis_, options_.quant_desc().axis_is_int);
  } else {
    s += " per-tensor";
  }
  s += " amax=";
  if (!amax_.defined()) {
    s += "dynamic";
  } else if (amax_.numel() == 1) {
    s += fmt4(amax_.item<double>());
  } else {
    s += "[" + fmt4(amax_.min().item<double>()) + ", " + fmt4(amax_.max().item<double>()) + "](" +
         std::to_string(amax_.numel()) + ")";
  }
  if (scale_amax_ && *scale_amax_ != 0.0) s += " *" + py_float_repr(*scale_amax_);
  if (learns_range()) s += " learned";
  if (calibrator_) s += " calibrator=" + calibrator_->name();
  if (scale_.defined() && scale_.numel() == 1) s += " scale=" + py_float_repr(scale_.item<double>());
  if (if_quant_) s += " quant";
  if (if_clip_) s += " clip";
  if (if_calib_) s += " calib";
  return s;
}

void TensorQuantizerImpl::pretty_print(std::ostream& stream) const {
  stream << "qdqbert::nn::TensorQuantizer(" << extra_repr() << ")";
}

}  // namespace qdqbert::nn

namespace qdqbert {

std::vector<std::pair<std::string, nn::TensorQuantizer>> named_quantizers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, nn::TensorQuantizer>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    if (auto q = std::dynamic_pointer_cast<nn::TensorQuantizerImpl>(item.value())) {
      out.emplace_back(item.key(), nn::TensorQuantizer(q));
    }
  }
  return out;
}

}  // namespace qdqbert
