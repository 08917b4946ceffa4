#include "qdqbert/workflow/quant_config.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

namespace qdqbert::workflow {

void QuantConfig::apply_to(io::PretrainedOptions& options) const {
  if (input) options.quant_desc_input = input;
  if (weight) options.quant_desc_weight = weight;
}

std::vector<int> QuantConfig::apply(TaskModel& model) const {
  auto qs = named_quantizers(model.module());
  if (disable) {
    for (auto& [n, q] : qs) q->disable();
  }
  std::vector<int> counts;
  for (const auto& r : rules) {
    nn::QuantizerSelector restriction;  // the rule's optional "role" / "layers"
    restriction.roles = r.roles;
    restriction.layers = r.layers;
    nn::QuantizerSelector selector = restriction;
    selector.name_regex = r.pattern;
    int n = 0;
    for (auto& info : nn::select_quantizers(model.module(), selector)) {
      auto& q = info.quantizer;
      ++n;
      if (r.enable) *r.enable ? q->enable() : q->disable();
      if (r.num_bits) q->set_num_bits(*r.num_bits);
      if (r.is_unsigned) q->set_unsigned(*r.is_unsigned);
      if (r.narrow_range) q->set_narrow_range(*r.narrow_range);
      if (r.set_axis) q->set_axis(r.axis);
    }
    TORCH_CHECK_VALUE(n > 0, "quant config: rule '", r.pattern, "' matches no quantizer of ", model.class_name(),
                      r.roles.empty() && r.layers.empty() ? std::string() : " with " + restriction.describe());
    counts.push_back(n);
  }
  return counts;
}

void print_quant_summary(TaskModel& model, std::ostream& os) {
  auto qs = named_quantizers(model.module());
  size_t w = 4;
  for (auto& [n, q] : qs) w = std::max(w, n.size());
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%-*s  %-7s %-5s %-8s %-24s %s\n", static_cast<int>(w), "name", "enabled", "bits",
                "axis", "amax", "calibrator");
  os << buf;
  int enabled = 0, calibrated = 0;
  for (auto& [n, q] : qs) {
    std::string axis = q->axis() ? nn::axis_repr(*q->axis(), false) : "tensor";
    std::string amax = "dynamic";
    if (q->learn_amax()) {
      amax = "learned " + nn::py_float_repr(q->clip->clip_value_max.item<double>());
    } else if (q->has_amax()) {
      at::Tensor a = q->amax();
      std::snprintf(buf, sizeof(buf), a.numel() == 1 ? "%.4f" : "[%.4f, %.4f](%lld)", a.min().item<double>(),
                    a.max().item<double>(), static_cast<long long>(a.numel()));
      amax = buf;
      ++calibrated;
    }
    const std::string bits = std::string(q->is_unsigned() ? "u" : "") + std::to_string(q->num_bits()) +
                             (q->narrow_range() ? "n" : "");
    std::snprintf(buf, sizeof(buf), "%-*s  %-7s %-5s %-8s %-24s %s\n", static_cast<int>(w), n.c_str(),
                  q->is_enabled() ? "yes" : "no", bits.c_str(), axis.c_str(), amax.c_str(),
                  q->calibrator() ? q->calibrator()->name().c_str() : "-");
    os << buf;
    enabled += q->is_enabled() ? 1 : 0;
  }
  os << qs.size() << " quantizers, " << enabled << " enabled, " << calibrated << " with a stored amax\n";
}

}  // namespace qdqbert::workflow
