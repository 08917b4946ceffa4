#include "qdqbert/workflow/calibrate.h"

#include <torch/torch.h>

#include "qdqbert/distributed/distributed.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/nn/quantizer_select.h"

namespace qdqbert::workflow {

namespace {
// Weights (unless calibrate_weights is off) and the inputs of linears, matmuls and residual adds; a
// quantizer of role "other" is never calibrated.
bool selected(const nn::QuantizerInfo& info, const CalibrationOptions& o) {
  if (!info.quantizer->calibrator()) return false;
  switch (info.role) {
    case nn::QuantizerRole::kLinearWeight:
      if (!o.calibrate_weights) return false;
      break;
    case nn::QuantizerRole::kLinearInput:
    case nn::QuantizerRole::kMatmulInput:
    case nn::QuantizerRole::kResidualAddInput:
      break;
    case nn::QuantizerRole::kOther:
      return false;
  }
  return !o.filter || o.filter(info.name);
}
}  // namespace

std::vector<std::string> enable_calibration(TaskModel& model, const CalibrationOptions& o) {
  std::vector<std::string> names;
  // Several processes (distributed::init): the calibrators merge what each rank collects (calibrator.h).
  const auto sync = distributed::calibration_sync();
  for (auto& info : nn::list_quantizers(model.module())) {
    if (!selected(info, o)) continue;
    const auto& name = info.name;
    auto& q = info.quantizer;
    q->calibrator()->reset();
    q->calibrator()->set_sync(sync);
    q->enable_calib();
    q->disable_quant();
    names.push_back(name);
  }
  return names;
}

CalibrationReport finish_calibration(TaskModel& model, const CalibrationOptions& o) {
  CalibrationReport report;
  auto quantizers = nn::list_quantizers(model.module());
  for (auto& info : quantizers) {
    if (!selected(info, o) || !info.quantizer->is_calib_enabled()) continue;
    calib::Calibrator& c = *info.quantizer->calibrator();
    c.merge_across_processes();  // a collective in the same order on every rank; no-op alone
    c.set_sync(nullptr);
    if (!c.has_data()) report.no_data.push_back(info.name);
  }
  if (o.strict && !report.no_data.empty()) {
    std::string all;
    for (const auto& n : report.no_data) all += "\n  " + n;
    TORCH_CHECK(false, "calibration: ", report.no_data.size(), " quantizer(s) saw no data (not reached by the ",
                "calibration batches?):", all);
  }
  for (auto& info : quantizers) {
    const auto& name = info.name;
    auto& q = info.quantizer;
    if (!selected(info, o) || !q->is_calib_enabled()) continue;
    if (q->calibrator()->has_data()) {
      const bool histogram = q->calibrator()->kind() == calib::CalibratorKind::kHistogram;
      if (histogram) {
        TORCH_CHECK_VALUE(o.method != "max", "calibration: quantizer '", name,
                          "' has a HistogramCalibrator; use percentile, mse or entropy (or build it with "
                          "calib_method max)");
        q->load_calib_amax(o.method, o.amax_options, true, name);
      } else {
        q->load_calib_amax("", {}, true, name);
      }
      report.calibrated.push_back(name);
    }
    q->enable_quant();
    q->disable_calib();
  }
  return report;
}

CalibrationReport calibrate(TaskModel& model, const std::vector<ModelInputs>& batches, const CalibrationOptions& o) {
  if (distributed::world_size() > 1) {
    // Histogram ranges are agreed batch by batch: every rank must run as many batches.
    const auto n = static_cast<int64_t>(batches.size());
    at::Tensor t = at::tensor({n, -n}, at::kLong);
    distributed::all_reduce(t, distributed::ReduceOp::kMax);
    TORCH_CHECK_VALUE(t[0].item<int64_t>() == -t[1].item<int64_t>(), "calibration: ", distributed::error_prefix(),
                      "the ranks have different numbers of calibration batches (", -t[1].item<int64_t>(), " to ",
                      t[0].item<int64_t>(), "); give each rank its part of every global batch (shard_batch)");
  }
  TORCH_CHECK_VALUE(!batches.empty(), "calibration: no calibration batches");
  auto& m = model.module();
  const bool was_training = m.is_training();
  m.eval();
  enable_calibration(model, o);
  {
    torch::NoGradGuard no_grad;
    for (const auto& b : batches) model.run(b);
  }
  CalibrationReport r = finish_calibration(model, o);
  m.train(was_training);
  return r;
}

std::vector<ModelInputs> read_calibration_batches(const std::string& path) {
  auto data = io::load_safetensors(path);
  std::vector<ModelInputs> batches;
  for (int k = 0;; ++k) {
    const std::string p = "batch" + std::to_string(k) + "_";
    ModelInputs in;
    bool any = false;
    for (const auto& [name, t] : data) {
      if (name.rfind(p, 0) != 0) continue;
      TORCH_CHECK_VALUE(in.set(name.substr(p.size()), t), "calibration data '", path, "': unknown tensor '", name,
                        "' (expected batch<k>_<forward argument>)");
      any = true;
    }
    if (!any) break;
    batches.push_back(in);
  }
  TORCH_CHECK_VALUE(!batches.empty(), "calibration data '", path, "' holds no batch0_* tensors");
  return batches;
}

}  // namespace qdqbert::workflow
