#include "qdqbert/workflow/quant_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <set>
#include <sstream>

#include "qdqbert/calib/calibrator.h"
#include "qdqbert/error.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/ops/fake_quant.h"
#include "qdqbert/regex.h"
#include "qdqbert/strings.h"

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

namespace {

// The direct child `name` of `m` when it is a TensorQuantizer (Python: getattr(mod, name, None)).
std::shared_ptr<nn::TensorQuantizerImpl> child_quantizer(torch::nn::Module& m, const std::string& name) {
  const auto children = m.named_children();
  const auto* child = children.find(name);
  return child ? std::dynamic_pointer_cast<nn::TensorQuantizerImpl>(*child) : nullptr;
}

// The module's own `weight` parameter (Python: hasattr(mod, "weight")); undefined when absent.
at::Tensor own_weight(torch::nn::Module& m) {
  const auto params = m.named_parameters(/*recurse=*/false);
  const auto* w = params.find("weight");
  return w ? *w : at::Tensor();
}

std::vector<Regex> compile_patterns(const std::vector<std::string>& patterns) {
  std::vector<Regex> res;
  for (const auto& p : patterns) {
    try {
      res.emplace_back(p, "quantizer name pattern");
    } catch (const Error& e) {
      TORCH_CHECK_VALUE(false, e.what());
    }
  }
  return res;
}

bool search_any(const std::vector<Regex>& res, const std::string& name) {
  for (const auto& re : res) {
    if (re.search(name)) return true;
  }
  return false;
}

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

std::string amax_str(const at::Tensor& amax) {
  std::ostringstream os;
  if (amax.numel() == 1) {
    os << amax.item<double>();
  } else {
    os << "[" << amax.min().item<double>() << ", " << amax.max().item<double>() << "](" << amax.numel() << ")";
  }
  return os.str();
}

}  // namespace

std::string QuantizerSettings::repr() const {
  std::string s;
  auto py_bool = [](bool b) { return b ? "True" : "False"; };
  if (num_bits) s += " _num_bits=" + std::to_string(*num_bits);
  if (is_unsigned) s += std::string(" _unsigned=") + py_bool(*is_unsigned);
  if (narrow_range) s += std::string(" _narrow_range=") + py_bool(*narrow_range);
  if (if_quant) s += std::string(" _if_quant=") + py_bool(*if_quant);
  if (if_calib) s += std::string(" _if_calib=") + py_bool(*if_calib);
  if (if_clip) s += std::string(" _if_clip=") + py_bool(*if_clip);
  if (disabled) s += std::string(" _disabled=") + py_bool(*disabled);
  return s;
}

void QuantizerSettings::apply(nn::TensorQuantizerImpl& q) const {
  if (num_bits) q.set_num_bits(*num_bits);
  if (is_unsigned) q.set_unsigned(*is_unsigned);
  if (narrow_range) q.set_narrow_range(*narrow_range);
  if (if_quant) *if_quant ? q.enable_quant() : q.disable_quant();
  if (if_calib) *if_calib ? q.enable_calib() : q.disable_calib();
  if (if_clip) *if_clip ? q.enable_clip() : q.disable_clip();
  if (disabled) *disabled ? q.disable() : q.enable();
}

namespace {

void check_settings(const QuantizerSettings& s) {
  if (s.num_bits) {
    TORCH_CHECK_VALUE(*s.num_bits >= 1 && *s.num_bits <= 22, "QuantizerSettings: num_bits must be in [1, 22], got ",
                      *s.num_bits);
  }
}

}  // namespace

std::vector<std::string> set_quantizer_by_name(TaskModel& model, const std::vector<std::string>& names,
                                               const QuantizerSettings& settings) {
  check_settings(settings);
  const std::vector<Regex> res = compile_patterns(names);
  std::vector<std::string> touched;
  std::set<std::string> seen;
  auto apply_to = [&](nn::TensorQuantizerImpl& q, const std::string& qname) {
    settings.apply(q);
    if (seen.insert(qname).second) touched.push_back(qname);
  };
  for (const auto& item : model.module().named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    torch::nn::Module& mod = *item.value();
    auto in_q = child_quantizer(mod, "_input_quantizer");
    auto w_q = child_quantizer(mod, "_weight_quantizer");
    if (in_q || w_q) {
      // Python's first branch: the owner (QuantLinear) matches → set_quantizers(..., which="both").
      if (search_any(res, name)) {
        if (in_q) apply_to(*in_q, name + "._input_quantizer");
        if (w_q) apply_to(*w_q, name + "._weight_quantizer");
      }
    } else if (ends_with(name, "_quantizer")) {
      // Python's elif branch, which also reaches a QuantLinear's own quantizers by their full name.
      auto q = std::dynamic_pointer_cast<nn::TensorQuantizerImpl>(item.value());
      if (q && search_any(res, name)) apply_to(*q, name);
    }
  }
  return touched;
}

std::vector<std::string> set_quantizer_disabled(TaskModel& model, const std::vector<std::string>& patterns,
                                                bool disabled) {
  QuantizerSettings s;
  s.disabled = disabled;
  return set_quantizer_by_name(model, patterns, s);
}

std::vector<std::string> set_quantizers(TaskModel& model, const std::string& which, const QuantizerSettings& settings) {
  TORCH_CHECK_VALUE(which == "input" || which == "weight" || which == "both",
                    "set_quantizers: which must be 'input', 'weight' or 'both', got '", which, "'");
  check_settings(settings);
  const bool input = which != "weight", weight = which != "input";
  std::vector<std::string> touched;
  for (const auto& item : model.module().named_modules("", /*include_self=*/false)) {
    torch::nn::Module& mod = *item.value();
    auto in_q = child_quantizer(mod, "_input_quantizer");
    auto w_q = child_quantizer(mod, "_weight_quantizer");
    if (input && in_q) {
      settings.apply(*in_q);
      touched.push_back(item.key() + "._input_quantizer");
    }
    if (weight && w_q) {
      settings.apply(*w_q);
      touched.push_back(item.key() + "._weight_quantizer");
    }
  }
  return touched;
}

std::vector<std::string> expand_amax(TaskModel& model) {
  std::vector<std::string> log;
  torch::NoGradGuard g;
  for (const auto& item : model.module().named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    auto q = child_quantizer(*item.value(), "_weight_quantizer");
    if (!q || !q->axis()) continue;
    const at::Tensor w = own_weight(*item.value());
    if (!w.defined()) continue;
    if (!q->has_amax()) {
      log.push_back("expand_amax: " + name + ": no amax, skipped");
      continue;
    }
    // The shape a per-channel calibration of this weight gives: the quantizer's axes kept, size 1
    // elsewhere; negative axes count only where the quantizer itself counts them.
    std::vector<int64_t> shape(w.dim(), 1);
    bool any = false;
    for (int64_t a : *q->axis()) {
      if (a < 0 && q->options().normalize_negative_axes()) a += w.dim();
      if (a >= 0 && a < w.dim()) {
        shape[a] = w.size(a);
        any = true;
      }
    }
    const at::Tensor amax = q->amax();
    if (!any) {
      log.push_back("expand_amax: " + name + ": axis matches no weight dim, amax kept per tensor");
      continue;
    }
    if (amax.numel() != 1) {
      log.push_back("expand_amax: " + name + ": amax already per channel " + shape_str(amax) + ", kept");
      continue;
    }
    const at::Tensor expanded = amax.reshape({}) * at::ones(shape, amax.options());
    q->set_amax(expanded, /*allow_shape_change=*/true);
    log.push_back("expand_amax: " + name + " " + amax_str(amax) + " -> " + shape_str(expanded));
  }
  return log;
}

void print_model_summary(TaskModel& model, std::ostream& os, int64_t line_width,
                         const std::vector<std::string>& ignore) {
  const auto modules = model.module().named_modules("", /*include_self=*/false);
  size_t name_width = 0;
  for (const auto& item : modules) {
    if (own_weight(*item.value()).defined()) name_width = std::max(name_width, item.key().size());
  }
  auto pad = [&](const std::string& s) {
    return s + std::string(name_width > s.size() ? name_width - s.size() : 0, ' ');
  };
  for (const auto& item : modules) {
    const std::string& name = item.key();
    if (!own_weight(*item.value()).defined()) continue;
    auto in_q = child_quantizer(*item.value(), "_input_quantizer");
    auto w_q = child_quantizer(*item.value(), "_weight_quantizer");
    if (!in_q && !w_q) continue;
    bool skip = false;
    for (const auto& s : ignore) skip = skip || name.find(s) != std::string::npos;
    if (skip) continue;
    const std::string act = "Act:" + (in_q ? in_q->extra_repr() : std::string("None"));
    const std::string wgt = "Wgt:" + (w_q ? w_q->extra_repr() : std::string("None"));
    const std::string line = pad(name) + " " + act + " " + wgt;
    if (static_cast<int64_t>(line.size()) <= line_width) {
      os << line << '\n';
    } else {
      os << pad(name) << " " << act << '\n' << pad("  ") << " " << wgt << '\n';
    }
  }
}

std::vector<std::string> calibrate_weights(TaskModel& model, const std::string& method, bool perchannel,
                                           double percentile, int64_t num_bins) {
  TORCH_CHECK_VALUE(method == "max" || method == "percentile" || method == "mse",
                    "calibrate_weights: unknown calibration method '", method, "' (expected max, percentile or mse)");
  // The reference builds the histograms for every method, so NumPy rejects bad bins even for "max".
  TORCH_CHECK_VALUE(num_bins >= 1, "calibrate_weights: num_bins must be positive, got ", num_bins);
  constexpr int64_t kStartBin = 128;  // _compute_amax_mse's default, as the reference calls it
  TORCH_CHECK_VALUE(method != "mse" || num_bins > kStartBin, "calibrate_weights: method 'mse' needs num_bins > ",
                    kStartBin, " (its first candidate amax is bin ", kStartBin, "), got ", num_bins);
  TORCH_CHECK_VALUE(method != "percentile" || (percentile >= 0.0 && percentile <= 100.0),
                    "calibrate_weights: percentile must be in [0, 100], got ", percentile);
  torch::NoGradGuard g;
  // Compute every amax first, so that a refused module leaves the model untouched.
  struct Pending {
    std::string name;
    std::shared_ptr<nn::TensorQuantizerImpl> q;
    at::Tensor amax;
  };
  std::vector<Pending> pending;
  for (const auto& item : model.module().named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    auto q = child_quantizer(*item.value(), "_weight_quantizer");
    const at::Tensor w_param = own_weight(*item.value());
    if (!q || !w_param.defined()) continue;
    const at::Tensor w = w_param.detach();
    TORCH_CHECK_VALUE(w.dim() >= 1, "calibrate_weights: ", name, ".weight is 0-d");
    TORCH_CHECK_VALUE(w.numel() > 0, "calibrate_weights: ", name, ".weight is empty (shape ", w.sizes(), ")");
    TORCH_CHECK_VALUE(at::isfinite(w).all().item<bool>(), "calibrate_weights: ", name,
                      ".weight holds inf or NaN values");
    at::Tensor amax;
    if (method == "max") {
      if (perchannel) {
        std::vector<int64_t> reduce_axes;
        for (int64_t d = 1; d < w.dim(); ++d) reduce_axes.push_back(d);
        amax = ops::reduce_amax(w, reduce_axes);
      } else {
        amax = ops::reduce_amax(w);
      }
    } else {
      const int64_t channels = perchannel ? w.size(0) : 1;
      const at::Tensor w_cpu = w.to(at::kCPU);  // the reference histograms on the CPU too
      std::vector<float> values(channels);
      for (int64_t i = 0; i < channels; ++i) {
        // np.histogram(|W_i|, bins=num_bins): equal bins over [min, max], exactly what a fresh
        // HistogramCalibrator's first collect() builds.
        calib::HistogramCalibrator h(q->num_bits(), {}, q->is_unsigned(), num_bins);
        h.collect(perchannel ? w_cpu.select(0, i) : w_cpu);
        values[i] = method == "percentile"
                        ? calib::compute_amax_percentile(h.hist(), h.bin_edges(), percentile)
                        : calib::compute_amax_mse(h.hist(), h.bin_edges(), q->num_bits(), q->is_unsigned(),
                                                  /*stride=*/1, kStartBin);
      }
      amax = torch::tensor(values, at::kFloat);
    }
    std::vector<int64_t> shape;  // 0-d per tensor
    if (perchannel) {
      shape.assign(w.dim(), 1);
      shape[0] = w.size(0);
    }
    amax = amax.to(w.device(), at::kFloat).reshape(shape);
    if (q->has_amax()) {
      TORCH_CHECK_VALUE(
          q->amax().sizes() == amax.sizes(), "calibrate_weights: ", name, "._weight_quantizer holds an amax of shape ",
          q->amax().sizes(), " but the ", perchannel ? "per-channel" : "per-tensor", " amax has shape ", amax.sizes(),
          "; like the reference, the shape of a stored amax is not changed (perchannel=", perchannel ? "true" : "false",
          ")");
    }
    pending.push_back({name, q, amax});
  }
  std::vector<std::string> log;
  for (auto& p : pending) {
    p.q->set_amax(p.amax);
    log.push_back("calibrate_weights: " + p.name + " " + method + (perchannel ? " per-channel " : " per-tensor ") +
                  amax_str(p.amax));
  }
  return log;
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
  // The input of each FFN output dense (`encoder.layer.N.output.dense`), which reads the GELU output:
  // a QuantLinear input whose owner path ends with "output.dense", except the attention output
  // denses (`...attention.output.dense`, `...crossattention.output.dense`), which end the same way.
  nn::QuantizerSelector gelu_output;
  gelu_output.roles = {nn::QuantizerRole::kLinearInput};
  gelu_output.owner_regex = "output\\.dense$";
  for (auto& info : nn::select_quantizers(model.module(), gelu_output)) {
    if (info.owner.find("attention.output.dense") != std::string::npos) continue;
    const auto& name = info.name;
    auto& q = info.quantizer;
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
    q->set_amax(ops::reduce_amax_keep(lin->weight, keep), /*allow_shape_change=*/true);
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

std::vector<int64_t> permutation(int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(rng() % static_cast<uint64_t>(i + 1))]);
  }
  return p;
}

std::vector<std::pair<std::vector<at::Tensor>, double>> decay_groups(TaskModel& model, double weight_decay) {
  std::vector<at::Tensor> decay, no_decay;
  std::set<const void*> seen;
  for (const auto& p : model.module().named_parameters()) {
    if (!p.value().requires_grad() || !seen.insert(p.value().unsafeGetTensorImpl()).second) continue;
    const std::string& n = p.key();
    const bool nd = n.find("bias") != std::string::npos || n.find("LayerNorm.weight") != std::string::npos ||
                    nn::is_range_parameter(n);
    (nd ? no_decay : decay).push_back(p.value());
  }
  return {{decay, weight_decay}, {no_decay, 0.0}};
}

}  // namespace qdqbert::workflow
