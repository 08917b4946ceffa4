#include "qdqbert/workflow/quant_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <regex>
#include <set>

#include "qdqbert/ops/fake_quant.h"

namespace qdqbert::workflow {

nn::QuantDescriptor QuantTrainerOptions::input_desc() const {
  return nn::QuantDescriptor().with_num_bits(aprec).with_calib_method(calibrator == "max" ? "max" : "histogram");
}

nn::QuantDescriptor QuantTrainerOptions::weight_desc() const {
  nn::QuantDescriptor d = nn::QuantDescriptor().with_num_bits(wprec);
  if (!quant_per_tensor) d.with_axis(std::vector<int64_t>{0});
  return d;
}

CalibrationOptions QuantTrainerOptions::calibration() const {
  CalibrationOptions o;
  o.method = calibrator;
  o.amax_options.percentile = percentile;
  return o;
}

std::vector<std::string> set_quantizer_disabled(TaskModel& model, const std::vector<std::string>& patterns,
                                                bool disabled) {
  std::vector<std::regex> res;
  for (const auto& p : patterns) {
    try {
      res.emplace_back(p);
    } catch (const std::regex_error& e) {
      TORCH_CHECK_VALUE(false, "invalid quantizer regex '", p, "': ", e.what());
    }
  }
  std::vector<std::string> touched;
  for (auto& [name, q] : named_quantizers(model.module())) {
    // Python matches the owning QuantLinear's name for its two quantizers, and the quantizer's own
    // name otherwise; searching the full quantizer name covers both.
    const auto dot = name.rfind('.');
    const std::string owner = dot == std::string::npos ? name : name.substr(0, dot);
    const bool linear_child = name.size() > 16 && (name.compare(dot + 1, std::string::npos, "_input_quantizer") == 0 ||
                                                   name.compare(dot + 1, std::string::npos, "_weight_quantizer") == 0);
    for (const auto& re : res) {
      if (std::regex_search(linear_child ? owner : name, re)) {
        disabled ? q->disable() : q->enable();
        touched.push_back(name);
        break;
      }
    }
  }
  return touched;
}

std::vector<std::string> fuse_qkv(TaskModel& model) {
  std::vector<std::string> log;
  auto fuse3 = [&](std::vector<nn::TensorQuantizer> qs, const std::string& what) {
    for (auto& q : qs) {
      if (!q->has_amax()) {
        log.push_back("fuse_qkv: " + what + ": no amax, skipped");
        return;
      }
      if (q->amax().numel() != 1) {
        log.push_back("fuse_qkv: " + what + ": per-channel amax kept (a fused QKV GEMM keeps per-row scales)");
        return;
      }
    }
    float amax = 0.f;
    for (auto& q : qs) amax = std::max(amax, q->amax().item<float>());
    for (auto& q : qs) q->set_amax(at::scalar_tensor(amax, at::kFloat));
    log.push_back("fuse_qkv: " + what + " amax=" + std::to_string(amax));
  };
  for (const auto& item : model.module().named_modules("", false)) {
    auto sa = std::dynamic_pointer_cast<QDQBertSelfAttentionImpl>(item.value());
    if (!sa) continue;
    const std::string n = item.key();
    fuse3({sa->query->input_quantizer, sa->key->input_quantizer, sa->value->input_quantizer},
          n + ".{query,key,value}._input_quantizer");
    fuse3({sa->matmul_q_input_quantizer, sa->matmul_k_input_quantizer, sa->matmul_v_input_quantizer},
          n + ".matmul_{q,k,v}_input_quantizer");
    fuse3({sa->query->weight_quantizer, sa->key->weight_quantizer, sa->value->weight_quantizer},
          n + ".{query,key,value}._weight_quantizer");
  }
  return log;
}

std::vector<std::string> clip_gelu(TaskModel& model, double maxval) {
  std::vector<std::string> log;
  for (auto& [name, q] : named_quantizers(model.module())) {
    const std::string suffix = "output.dense._input_quantizer";
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    if (name.find("attention.output.dense") != std::string::npos) continue;
    if (!q->has_amax()) continue;
    const float before = q->amax().max().item<float>();
    q->set_amax(q->amax().clamp_max(maxval));
    log.push_back("clip_gelu: " + name + " amax " + std::to_string(before) + " -> " +
                  std::to_string(q->amax().max().item<float>()));
  }
  return log;
}

std::vector<std::string> recalibrate_weights(TaskModel& model) {
  std::vector<std::string> log;
  torch::NoGradGuard g;
  for (const auto& item : model.module().named_modules("", false)) {
    auto lin = std::dynamic_pointer_cast<nn::QuantLinearImpl>(item.value());
    if (!lin) continue;
    auto& q = lin->weight_quantizer;
    std::vector<int64_t> keep = q->axis() ? *q->axis() : std::vector<int64_t>{};
    q->set_amax(ops::reduce_amax(lin->weight, keep), /*allow_shape_change=*/true);
    log.push_back("recalibrate_weights: " + item.key());
  }
  return log;
}

std::vector<std::string> configure_model(TaskModel& model, const QuantTrainerOptions& o, bool calib) {
  std::vector<std::string> log;
  auto note = [&](const std::string& what, const std::vector<std::string>& names) {
    log.push_back(what + ": " + std::to_string(names.size()) + " quantizers");
  };
  if (!calib) {
    if (o.quant_disable) note("quant-disable", set_quantizer_disabled(model, {""}, true));
    if (!o.quant_disable_keyword.empty()) {
      note("quant-disable-keyword", set_quantizer_disabled(model, o.quant_disable_keyword, true));
    }
    if (!o.quant_disable_layer_module.empty()) {
      note("quant-disable-layer-module",
           set_quantizer_disabled(model, {"layer\\.\\d+\\." + o.quant_disable_layer_module}, true));
    }
    if (!o.quant_enable_layer_module.empty()) {
      note("quant-enable-layer-module",
           set_quantizer_disabled(model, {"layer\\.\\d+\\." + o.quant_enable_layer_module}, false));
    }
    if (o.recalibrate_weights) {
      auto l = recalibrate_weights(model);
      log.insert(log.end(), l.begin(), l.end());
    }
    if (o.fuse_qkv) {
      auto l = fuse_qkv(model);
      log.insert(log.end(), l.begin(), l.end());
    }
  }
  if (o.clip_gelu > 0) {
    auto l = clip_gelu(model, o.clip_gelu);
    log.insert(log.end(), l.begin(), l.end());
  }
  return log;
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double base, const std::string& schedule) {
  if (warmup > 0 && step < warmup) return base * static_cast<double>(step) / static_cast<double>(warmup);
  const double progress =
      total > warmup ? static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup)) : 1.0;
  if (schedule == "cosine") return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
  TORCH_CHECK_VALUE(schedule == "linear", "unknown lr schedule '", schedule, "' (linear or cosine)");
  return base * std::max(0.0, 1.0 - progress);
}

std::vector<std::pair<std::vector<at::Tensor>, double>> decay_groups(TaskModel& model, double weight_decay) {
  std::vector<at::Tensor> decay, no_decay;
  std::set<const void*> seen;
  for (const auto& p : model.module().named_parameters()) {
    if (!p.value().requires_grad() || !seen.insert(p.value().unsafeGetTensorImpl()).second) continue;
    const std::string& n = p.key();
    const bool nd = n.find("bias") != std::string::npos || n.find("LayerNorm.weight") != std::string::npos ||
                    n.find("clip_value") != std::string::npos;
    (nd ? no_decay : decay).push_back(p.value());
  }
  return {{decay, weight_decay}, {no_decay, 0.0}};
}

}  // namespace qdqbert::workflow
