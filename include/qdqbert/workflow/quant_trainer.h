#pragma once
/// \file
/// The C++ counterpart of the Hugging Face research example's `quant_trainer.py`: quantizer options with
/// the same flag names, model configuration (disable by keyword / layer module, fuse q/k/v amax, clip GELU
/// output, recalibrate weights) and the training pieces for quantization-aware fine-tuning.

#include <functional>
#include <optional>
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

/// Sets `disabled` on every quantizer whose name (or owning QuantLinear's name) matches one of `patterns`
/// (regex search), like Python's set_quantizer_by_name. Returns the names touched.
std::vector<std::string> set_quantizer_disabled(TaskModel& model, const std::vector<std::string>& patterns,
                                                bool disabled);

/// q/k/v share one amax: the QuantLinear input quantizers of query/key/value, the matmul q/k/v input
/// quantizers, and per-tensor weight quantizers. Quantizers without an amax are reported and skipped.
std::vector<std::string> fuse_qkv(TaskModel& model);
/// Clamps the amax of each `output.dense._input_quantizer` (the GELU output) to `maxval`.
std::vector<std::string> clip_gelu(TaskModel& model, double maxval);
/// Weight amax = max|W| per row (or per tensor) from the current weights.
std::vector<std::string> recalibrate_weights(TaskModel& model);

/// Learning-rate schedule with linear warmup: "linear" decay to 0 or "cosine".
double lr_at(int64_t step, int64_t total_steps, int64_t warmup_steps, double base_lr, const std::string& schedule);

/// Parameter groups like the HF Trainer: no weight decay for biases and LayerNorm weights.
std::vector<std::pair<std::vector<at::Tensor>, double>> decay_groups(TaskModel& model, double weight_decay);

}  // namespace qdqbert::workflow
