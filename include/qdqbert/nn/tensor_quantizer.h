#pragma once
/// \file
/// TensorQuantizer — mirrors `pytorch_quantization.nn.TensorQuantizer` (2.1.2), plus the Clip module
/// it owns when amax is learned.

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qdqbert/calib/calibrator.h"
#include "qdqbert/nn/quant_descriptor.h"
#include "qdqbert/ops/fake_quant.h"

namespace qdqbert::nn {

/// Learnable clip bounds (Python `pytorch_quantization.nn.Clip` with learn_min/learn_max):
/// parameters `clip_value_min` / `clip_value_max` (float32, 0-d).
class ClipImpl : public torch::nn::Cloneable<ClipImpl> {
 public:
  ClipImpl(double clip_value_min = -1.0, double clip_value_max = 1.0);
  void reset() override;
  /// max(min(x, clip_value_max), clip_value_min); x gets the gradient where min < x < max, the bounds
  /// the summed gradient where x <= min / x >= max.
  at::Tensor forward(const at::Tensor& x);

  at::Tensor clip_value_min;
  at::Tensor clip_value_max;

 private:
  double init_min_, init_max_;
};
TORCH_MODULE(Clip);

/// A trainable per-tensor range for learned step size quantization (beyond the toolkit): parameter
/// `log_amax` (float32, 0-d), so that an optimizer step changes amax by a ratio, alike for ranges of 0.5
/// and of 200. Present only while a quantizer learns its amax this way (registered as "learned_range").
class LearnedRangeImpl : public torch::nn::Cloneable<LearnedRangeImpl> {
 public:
  explicit LearnedRangeImpl(double amax = 1.0);
  void reset() override;
  /// exp(log_amax), differentiable.
  at::Tensor amax() const;

  at::Tensor log_amax;

 private:
  double init_amax_;
};
TORCH_MODULE(LearnedRange);

/// How a quantizer learns its range in QAT (TensorQuantizer::start_learning_amax).
enum class RangeLearning {
  kClip,  ///< the toolkit's learn_amax: trainable Clip bounds before the quantizer; their gradient is the
          ///< summed gradient of the clipped values only, so a range can widen or narrow to clip less or
          ///< more but never trades clipping against the rounding error of a coarse step (PACT-like)
  kLsq,   ///< learned step size (LSQ): the fake-quant output's own derivative in amax (rounding error
          ///< inside the range, the clipped bound outside; ops::fake_tensor_quant_learned), on log(amax)
};
/// Whether a parameter name (as named_parameters gives it) is a learned range: a Clip bound or a
/// LearnedRange's log_amax. Optimizers keep these out of weight decay and gradient clipping.
bool is_range_parameter(const std::string& name);

/// "clip" or "lsq"; anything else is an error naming both.
RangeLearning parse_range_learning(const std::string& name);
std::string to_string(RangeLearning how);

/// Constructor options (Python `TensorQuantizer(quant_desc, disabled, if_quant, if_clip, if_calib)`).
struct TensorQuantizerOptions {
  /* implicit */ TensorQuantizerOptions(QuantDescriptor quant_desc = QuantDescriptor())
      : quant_desc_(std::move(quant_desc)) {}
  TORCH_ARG(QuantDescriptor, quant_desc);
  TORCH_ARG(bool, disabled) = false;
  TORCH_ARG(bool, if_quant) = true;
  TORCH_ARG(bool, if_clip) = false;
  TORCH_ARG(bool, if_calib) = false;
  /// Treat negative axes as counted from the end. The reference (2.1.2) does not: `axis=-1` matches no
  /// dimension and gives a per-tensor amax. Off by default to reproduce it (a warning is logged).
  TORCH_ARG(bool, normalize_negative_axes) = false;
};

/// Which fake-quant implementation the forward uses.
enum class FakeQuantMode {
  kReference,    ///< qdqbert::ops::fake_tensor_quant — the training/calibration numerics of the toolkit
  kTorchNative,  ///< torch::fake_quantize_per_*_affine, full range, as exported to ONNX (use_fb_fake_quant)
};

/// The tensor quantizer: disabled → identity; calib → feed the calibrator; clip (learn_amax) → clip;
/// quant → fake (or real) quantize with the stored `_amax` or a dynamic per-call amax.
class TensorQuantizerImpl : public torch::nn::Cloneable<TensorQuantizerImpl> {
 public:
  explicit TensorQuantizerImpl(TensorQuantizerOptions options = {});
  TensorQuantizerImpl(const TensorQuantizerImpl& other);
  TensorQuantizerImpl& operator=(const TensorQuantizerImpl& other);
  TensorQuantizerImpl(TensorQuantizerImpl&&) = default;
  TensorQuantizerImpl& operator=(TensorQuantizerImpl&&) = default;

  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  /// forward(x) for an activation the caller hands over (std::move) and no longer reads: when nothing else
  /// can see it (this handle is the only one on its tensor and its storage) and static_prepared applies,
  /// the result is written over x (ops::fake_tensor_quant_); otherwise it is forward(x). Same bits either way.
  at::Tensor forward_consuming(at::Tensor x);
  /// One line like the Python repr: "qdqbert::nn::TensorQuantizer(8bit fake per-tensor amax=dynamic ...)".
  void pretty_print(std::ostream& stream) const override;
  /// The Python `extra_repr()` string alone.
  std::string extra_repr() const;

  // Switches (Python method names).
  void disable() { disabled_ = true; ++state_version_; }
  void enable() { disabled_ = false; ++state_version_; }
  void enable_quant() { if_quant_ = true; ++state_version_; }
  void disable_quant() { if_quant_ = false; ++state_version_; }
  void enable_calib();
  void disable_calib() { if_calib_ = false; ++state_version_; }
  void enable_clip();
  void disable_clip();

  bool is_enabled() const { return !disabled_; }
  bool is_quant_enabled() const { return if_quant_; }
  bool is_calib_enabled() const { return if_calib_; }
  bool is_clip_enabled() const { return if_clip_; }

  /// Computes amax with the calibrator and stores it in `_amax` (Python `load_calib_amax`). With
  /// strict=false a calibrator that saw no data sets amax to NaN (which the op then refuses to use);
  /// strict=true raises an error naming `name` (the quantizer's module path, when known).
  void load_calib_amax(const std::string& method = "", const calib::ComputeAmaxOptions& options = {},
                       bool strict = true, const std::string& name = "");
  /// Copies the stored amax into the clip bounds (Python `init_learn_amax`).
  void init_learn_amax();
  /// Starts learning the range of a calibrated quantizer (QAT `--learn-amax`) from its stored per-tensor
  /// amax. kClip: trainable clip bounds ±amax, as a learn_amax descriptor followed by `init_learn_amax`
  /// would give. kLsq: a `learned_range` submodule whose exp(log_amax) the forward uses as its amax (the
  /// stored `_amax` is left as it was until freeze_learned_amax). Errors: no stored amax, a per-channel
  /// amax, already learning.
  void start_learning_amax(RangeLearning how = RangeLearning::kClip);
  /// Ends it: `_amax` = the learned range (max(-clip_value_min, clip_value_max), or exp(log_amax)) and the
  /// learner is removed, so the quantizer saves, loads and exports like a calibrated one with that amax.
  /// Error when not learning its amax.
  void freeze_learned_amax();
  /// Learning its range either way (learn_amax() covers the toolkit's Clip learner only).
  bool learns_range() const { return learn_amax_ || learned_range; }

  // Properties.
  int64_t num_bits() const { return num_bits_; }
  void set_num_bits(int64_t v);
  bool is_unsigned() const { return unsigned_; }
  void set_unsigned(bool v);
  bool narrow_range() const { return narrow_range_; }
  void set_narrow_range(bool v) { narrow_range_ = v; ++state_version_; }
  bool fake_quant() const { return fake_quant_; }
  bool learn_amax() const { return learn_amax_; }
  const std::optional<std::vector<int64_t>>& axis() const { return axis_; }
  /// Changes the quantization axis (nullopt = per tensor); recreates the calibrator and drops a
  /// stored amax whose shape no longer fits.
  void set_axis(std::optional<std::vector<int64_t>> axis);
  std::optional<double> scale_amax() const { return scale_amax_; }
  /// The stored `_amax` (undefined = dynamic).
  at::Tensor amax() const { return amax_; }
  bool has_amax() const { return amax_.defined(); }
  /// Sets `_amax`: registers the buffer if absent, else copies in place; a shape change is an error
  /// unless `allow_shape_change`.
  void set_amax(const at::Tensor& value, bool allow_shape_change = false);
  void set_amax(double value) { set_amax(at::scalar_tensor(value, at::kFloat)); }
  /// Removes the stored amax (back to dynamic amax).
  void clear_amax();
  /// amax / max_bound (undefined under dynamic amax).
  at::Tensor step_size() const;
  /// 2^(num_bits - 1 + unsigned) - 1.
  double maxbound() const;
  /// The scale of the last real (non-fake) quantization; 1.0 in fake-quant mode (Python `scale`).
  at::Tensor scale() const { return scale_; }
  /// The amax a forward on `x` would use (stored, learned by LSQ, or computed dynamically, times scale_amax).
  at::Tensor effective_amax(const at::Tensor& x) const;

  calib::Calibrator* calibrator() const { return calibrator_.get(); }
  /// Replaces the calibrator (e.g. to change the histogram's num_bins).
  void set_calibrator(std::unique_ptr<calib::Calibrator> c) { calibrator_ = std::move(c); }

  FakeQuantMode fake_quant_mode() const { return mode_; }
  void set_fake_quant_mode(FakeQuantMode m) { mode_ = m; ++state_version_; }

  /// Monotonic counter bumped by every change of settings or amax through this class's setters.
  uint64_t state_version() const { return state_version_; }

  /// Identifies what forward() computes for a given input on a given device: state_version() plus the
  /// amax tensor's identity, storage and in-place version counter, so amax changes that bypass the
  /// setters (load_state_dict's copy_, an in-place edit of amax(), .to()) change it too. The caches
  /// of derived values (QuantLinear's fake-quantized weight, the prepared static amax) key on it.
  struct Fingerprint {
    uint64_t state = 0;
    const void* amax_impl = nullptr;
    const void* amax_data = nullptr;
    int64_t amax_version = -1;
    bool operator==(const Fingerprint& o) const {
      return state == o.state && amax_impl == o.amax_impl && amax_data == o.amax_data && amax_version == o.amax_version;
    }
  };
  Fingerprint fingerprint() const;

  /// When forward(x) is, in the current state, exactly ops::fake_tensor_quant(x, P) for a fixed P (enabled,
  /// quantizing, not calibrating, fake quant in the reference mode, a stored amax, no learned range):
  /// P prepared for `device`; else nullptr. Fused paths use it (a residual add quantizing both inputs in
  /// one pass, one input shared by several quantizers with the same P) and stay bit-identical to forward.
  const ops::PreparedAmax* static_prepared(c10::Device device);

  const TensorQuantizerOptions& options() const { return options_; }

  /// Present only when learn_amax (registered as "clip").
  Clip clip{nullptr};
  /// Present only while learning the range with RangeLearning::kLsq (registered as "learned_range").
  LearnedRange learned_range{nullptr};

 private:
  std::vector<int64_t> reduce_keep_axes(int64_t ndim) const;
  /// The static amax prepared for `device`, recomputed only when the fingerprint or the device change.
  const ops::PreparedAmax& prepared_amax(c10::Device device);

  TensorQuantizerOptions options_;
  int64_t num_bits_ = 8;
  bool fake_quant_ = true;
  std::optional<std::vector<int64_t>> axis_;
  std::optional<double> scale_amax_;
  bool learn_amax_ = false;
  bool unsigned_ = false;
  bool narrow_range_ = false;
  bool disabled_ = false;
  bool if_quant_ = true;
  bool if_clip_ = false;
  bool if_calib_ = false;
  FakeQuantMode mode_ = FakeQuantMode::kReference;
  at::Tensor amax_;
  at::Tensor scale_;
  std::unique_ptr<calib::Calibrator> calibrator_;
  uint64_t state_version_ = 0;
  ops::PreparedAmax prepared_;
  Fingerprint prepared_for_;
};
TORCH_MODULE(TensorQuantizer);

}  // namespace qdqbert::nn

namespace qdqbert {
/// Every TensorQuantizer of a module tree with its full dotted name, in registration order.
std::vector<std::pair<std::string, nn::TensorQuantizer>> named_quantizers(torch::nn::Module& root);
}  // namespace qdqbert
