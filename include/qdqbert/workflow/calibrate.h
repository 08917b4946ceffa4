#pragma once
/// \file
/// Calibration driver (the C++ counterpart of the HF research example's quant_trainer
/// enable_calibration / finish_calibration): put the quantizers in calibration mode, run batches,
/// compute amax with the chosen method, switch quantization back on.
///
/// Several processes (distributed::init with WORLD_SIZE > 1): each rank runs its part of every calibration
/// batch (distributed::shard_batch / ShardedSampler), the calibrators merge what the ranks collected
/// (calib::CalibrationSync: max exactly, histograms bit for bit as one process on the global batches), and every
/// rank ends with the same amax. calibrate() checks that the ranks run as many batches; enable_calibration and
/// finish_calibration are collectives (every rank calls them, with the same model).

#include <functional>
#include <string>
#include <vector>

#include "qdqbert/calib/calibrator.h"
#include "qdqbert/models/qdqbert.h"

namespace qdqbert::workflow {

struct CalibrationOptions {
  /// "max", "percentile", "mse" or "entropy". Histogram methods need quantizers built with
  /// calib_method "histogram"; "max" works with either calibrator type... for MaxCalibrators.
  std::string method = "max";
  calib::ComputeAmaxOptions amax_options;
  /// Calibrate the weight quantizers too (with their own calibrator, max).
  bool calibrate_weights = true;
  /// Error (listing the names) when some quantizer saw no data; otherwise those are left dynamic.
  bool strict = true;
  /// Only quantizers whose full name matches this predicate take part (empty = all with a calibrator).
  std::function<bool(const std::string&)> filter;
};

struct CalibrationReport {
  std::vector<std::string> calibrated;  ///< quantizer names that received an amax
  std::vector<std::string> no_data;     ///< quantizers that saw no tensor (left as they were)
};

/// Switches every selected quantizer to calibration (calib on, quant off). Selected: it has a calibrator,
/// its role (nn/quantizer_select.h) is linear input, matmul input, residual-add input or (with
/// calibrate_weights) linear weight, and `filter` accepts its name. Role "other" is never calibrated.
std::vector<std::string> enable_calibration(TaskModel& model, const CalibrationOptions& options = {});
/// Computes and loads amax for the selected quantizers, then switches them back (quant on, calib off).
CalibrationReport finish_calibration(TaskModel& model, const CalibrationOptions& options = {});
/// enable_calibration → run each batch through model.run() in eval mode under no_grad → finish_calibration.
CalibrationReport calibrate(TaskModel& model, const std::vector<ModelInputs>& batches,
                            const CalibrationOptions& options = {});

/// Reads a calibration file: safetensors with `batch<k>_<forward argument>` tensors (k = 0, 1, ... in
/// order, as `qdqbert-cli calibrate --calib-data` and the reference fixtures' calib.safetensors hold
/// them). Error naming the file for an unknown argument name or when there is no `batch0_*` tensor.
std::vector<ModelInputs> read_calibration_batches(const std::string& path);

}  // namespace qdqbert::workflow
