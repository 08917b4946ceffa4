#pragma once
/// \file
/// The C++ counterpart of the Hugging Face research example's `quant_trainer.py`: quantizer options with
/// the same flag names, model configuration (disable by keyword / layer module, fuse q/k/v amax, clip GELU
/// output, recalibrate weights) and the training pieces for quantization-aware fine-tuning.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "qdqbert/models/qdqbert.h"
#include "qdqbert/nn/quant_descriptor.h"
#include "qdqbert/workflow/calibrate.h"

namespace qdqbert::workflow {

/// The quantization flags of quant_trainer.py (same names on the example binaries).
struct QuantTrainerOptions {
  int64_t wprec = 8;                  ///< --wprec: weight bits
  int64_t aprec = 8;                  ///< --aprec: activation bits
  bool quant_per_tensor = false;      ///< --quant-per-tensor: per-tensor weights (axis None)
  bool quant_disable = false;         ///< --quant-disable: every quantizer off
  std::vector<std::string> quant_disable_keyword;  ///< --quant-disable-keyword REGEX...
  std::string quant_disable_layer_module;          ///< --quant-disable-layer-module: r"layer.\d+." + module
  std::string quant_enable_layer_module;           ///< --quant-enable-layer-module
  std::string calibrator = "max";     ///< --calibrator max|percentile|mse|entropy
  double percentile = 99.99;          ///< --percentile (Python's default when unset)
  int64_t num_calib_batch = 4;        ///< --num-calib-batch (honoured; the Python example ignores it)
  bool fuse_qkv = false;              ///< --fuse-qkv: q/k/v share one amax (TensorRT's fused QKV GEMM)
  double clip_gelu = 0.0;             ///< --clip-gelu N: clamp the amax after GELU (0 = off)
  bool recalibrate_weights = false;   ///< --recalibrate-weights: weight amax = max|W| again

  /// Input / weight descriptors (Python `set_default_quantizers`): histogram calibrators for the
  /// histogram methods, per-row weights unless --quant-per-tensor.
  nn::QuantDescriptor input_desc() const;
  nn::QuantDescriptor weight_desc() const;
  /// Calibration options for calibrate()/finish_calibration().
  CalibrationOptions calibration() const;
};

/// Python `configure_model`: applies disable/enable rules, then (outside calibration) weight
/// recalibration and q/k/v fusion, and GELU clipping. Returns a log of what it did (one line each).
std::vector<std::string> configure_model(TaskModel& model, const QuantTrainerOptions& options, bool calib = false);

/// Quantizer attributes to set: the keyword arguments of Python's set_quantizer_by_name / set_quantizers
/// (`_disabled=True`, `_num_bits=4`, ...). Unset fields are left as they are. Limited to what
/// TensorQuantizer can change after construction (no `fake_quant`, `learn_amax` or `axis`).
struct QuantizerSettings {
  std::optional<bool> disabled;      ///< `_disabled`: disable() / enable()
  std::optional<int64_t> num_bits;   ///< `_num_bits` (1..22)
  std::optional<bool> is_unsigned;   ///< `_unsigned`
  std::optional<bool> narrow_range;  ///< `_narrow_range`
  std::optional<bool> if_quant;      ///< `_if_quant`: enable_quant() / disable_quant()
  std::optional<bool> if_calib;      ///< `_if_calib`: enable_calib() (needs a calibrator) / disable_calib()
  std::optional<bool> if_clip;       ///< `_if_clip`: enable_clip() (needs learn_amax) / disable_clip()

  /// The set fields as Python logs them: " _disabled=True _num_bits=4" (empty when none is set).
  std::string repr() const;
  /// Applies the set fields to `q` (num_bits, unsigned, narrow_range, quant, calib, clip, then disabled).
  void apply(nn::TensorQuantizerImpl& q) const;
};

/// Mirrors quant_trainer.py `set_quantizer_by_name(model, names, **kwargs)`: walks the modules in
/// registration order; a module owning `_input_quantizer` / `_weight_quantizer` (a QuantLinear) whose
/// name regex-searches one of `names` gets `settings` on both quantizers, and any other module whose
/// name ends with `_quantizer` and matches gets them on itself. A QuantLinear's quantizers are modules
/// too (`...query._input_quantizer`), so a quantizer is set when its owner's name OR its own full name
/// matches: "_input_quantizer" reaches every input quantizer (QuantLinear, matmul_*, add_*), "query$"
/// both quantizers of every query projection. Python's `which=` keyword is not taken (use
/// set_quantizers): the own-name branch ignores it there anyway. Returns the quantizer names touched,
/// each once, in module order. Error for an invalid regex (nothing is changed then).
std::vector<std::string> set_quantizer_by_name(TaskModel& model, const std::vector<std::string>& names,
                                               const QuantizerSettings& settings);

/// set_quantizer_by_name with only `disabled` set (`--quant-disable`, `--quant-disable-keyword`,
/// `--quant-{disable,enable}-layer-module`). Returns the names touched.
std::vector<std::string> set_quantizer_disabled(TaskModel& model, const std::vector<std::string>& patterns,
                                                bool disabled);

/// quant_trainer.py `set_quantizers(name, mod, which="both", **kwargs)` applied to every module owning
/// `_input_quantizer` / `_weight_quantizer` (every QuantLinear). As in Python only those two quantizers
/// are touched: "input" does NOT reach the matmul_* / add_* input quantizers (use set_quantizer_by_name
/// with "_input_quantizer" for all of them). `which`: "input", "weight" or "both"; anything else is an
/// error (Python silently sets nothing). Returns the quantizer names touched.
std::vector<std::string> set_quantizers(TaskModel& model, const std::string& which, const QuantizerSettings& settings);

/// quant_trainer.py `expand_amax`: every weight quantizer with an axis that holds a per-tensor amax gets a
/// per-channel amax with that value in each channel, shaped like a per-channel calibration of the weight
/// ([out_features, 1] for axis 0). Outputs do not change. Departures, each reported in the log: a
/// quantizer without amax is skipped (Python raises), and an amax that is already per-channel is kept
/// (Python would multiply it by ones(out) into a wrongly broadcast shape). Python's result is a 1-D
/// [out] tensor, which would broadcast along the last weight dim; ours keeps the channel dim in place.
std::vector<std::string> expand_amax(TaskModel& model);

/// quant_trainer.py `print_model_summary(model, name_width, line_width=180, ignore)`: one line per module
/// with a `weight` and quantizers, "{name:<W} Act:{input extra_repr} Wgt:{weight extra_repr}", W the longest
/// name of any module with a `weight` (as Python computes it). A line longer than `line_width` is split:
/// "{name:<W} Act:..." then "{'':<W} Wgt:...". Modules whose name contains one of `ignore` are skipped.
/// Modules with a weight but no quantizer (LayerNorm, embeddings, plain heads) are skipped where Python
/// raises on `None.extra_repr()`; a missing one of the two prints as "None". Python logs; we write lines.
void print_model_summary(TaskModel& model, std::ostream& os, int64_t line_width = 180,
                         const std::vector<std::string>& ignore = {});

/// pytorch_quantization.calib `calibrate_weights(model, method="percentile", perchannel=True,
/// percentile=99.99, num_bins=2048)` (2.1.2): for every module with a `weight` and a `_weight_quantizer`,
/// amax from the weight itself, ignoring the quantizer's calibrator, per output channel (dim 0,
/// shape [out, 1, ...]) or per tensor (0-d):
///   - "max": max|W| (per channel: reduce_amax over every dim but 0, like the reference);
///   - "percentile" / "mse": a fresh NumPy-style histogram of |W| per channel (or of the whole tensor)
///     with `num_bins` equal bins over [min|W|, max|W|], then the reference's `_compute_amax_percentile`
///     (the left edge of the bin where the CDF reaches `percentile`) or `_compute_amax_mse` (start_bin
///     128, stride 1, the quantizer's num_bits / unsigned, narrow range).
/// Like the reference's amax setter, a stored amax of another shape is an error (checked for every module
/// before any amax is written). Departures: "max" per tensor works (the reference raises), and per
/// tensor honours `num_bins` (the reference hard-codes 2048 there). Errors: unknown method, num_bins < 1,
/// "mse" with num_bins <= 128 (no candidate bin), percentile outside [0, 100], inf/NaN weights.
/// Cost: "mse" evaluates (num_bins - 128) candidates per channel. Returns one log line per module.
std::vector<std::string> calibrate_weights(TaskModel& model, const std::string& method = "percentile",
                                           bool perchannel = true, double percentile = 99.99, int64_t num_bins = 2048);

/// q/k/v share one amax: the QuantLinear input quantizers of query/key/value, the matmul q/k/v input
/// quantizers, and per-tensor weight quantizers. Quantizers without an amax are reported and skipped.
std::vector<std::string> fuse_qkv(TaskModel& model);
/// Clamps the amax of each FFN output dense input (`encoder.layer.N.output.dense._input_quantizer`, the
/// GELU output) to `maxval`: the linear-input quantizers whose owner path ends with "output.dense" and
/// does not contain "attention.output.dense". Quantizers without an amax are skipped.
std::vector<std::string> clip_gelu(TaskModel& model, double maxval);
/// quant_trainer.py `recalibrate_weights`: weight amax = max|W| over the dims not in the weight
/// quantizer's axis (per row for axis 0, per tensor without axis), from the current weights.
std::vector<std::string> recalibrate_weights(TaskModel& model);

/// Learning-rate schedule with linear warmup: "linear" decay to 0 or "cosine".
double lr_at(int64_t step, int64_t total_steps, int64_t warmup_steps, double base_lr, const std::string& schedule);

/// The documented shuffle of the training loops (squad_qa, distill_qat): Fisher-Yates over 0..n-1 with
/// j = rng() % (i + 1), i from n - 1 down. mt19937_64's output is fixed by the standard, so (unlike
/// std::shuffle) the order is the same with every standard library.
std::vector<int64_t> permutation(int64_t n, std::mt19937_64& rng);

/// Parameter groups like the HF Trainer: no weight decay for biases and LayerNorm weights.
std::vector<std::pair<std::vector<at::Tensor>, double>> decay_groups(TaskModel& model, double weight_decay);

}  // namespace qdqbert::workflow
