#include "qdqbert/workflow/quant_config.h"

#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/json.h"
#include "qdqbert/nn/quant_descriptor_json.h"
#include "qdqbert/regex.h"

namespace qdqbert::workflow {

using nlohmann::json;

QuantConfig QuantConfig::from_json_string(const std::string& text, const std::string& src) {
  // Syntax errors read "quant config '<src>': invalid JSON: ...".
  json j = parse_json(text, "quant config '" + src + "'");
  QDQBERT_CHECK(j.is_object(), "quant config '", src, "': expected a JSON object");
  QuantConfig c;
  for (const auto& [k, v] : j.items()) {
    QDQBERT_CHECK(k == "input" || k == "weight" || k == "disable" || k == "quantizers", "quant config '", src,
                  "': unknown key '", k, "' (expected input, weight, disable, quantizers)");
  }
  try {
    if (j.contains("input") && !j["input"].is_null()) c.input = j["input"].get<nn::QuantDescriptor>();
    if (j.contains("weight") && !j["weight"].is_null()) c.weight = j["weight"].get<nn::QuantDescriptor>();
  } catch (const Error& e) {
    fail("quant config '", src, "': ", e.what());
  }
  if (j.contains("disable")) {
    QDQBERT_CHECK(j["disable"].is_boolean(), "quant config '", src, "': 'disable' must be true or false");
    c.disable = j["disable"].get<bool>();
  }
  if (j.contains("quantizers")) {
    QDQBERT_CHECK(j["quantizers"].is_object(), "quant config '", src, "': 'quantizers' must be an object");
    for (const auto& [pattern, r] : j["quantizers"].items()) {
      QDQBERT_CHECK(r.is_object(), "quant config '", src, "': rule '", pattern, "' must be an object");
      QuantizerRule rule;
      rule.pattern = pattern;
      Regex(pattern, "quant config '" + src + "'");  // refused here, naming the file, if it does not compile
      for (const auto& [k, v] : r.items()) {
        try {
          if (k == "enable") rule.enable = v.get<bool>();
          else if (k == "num_bits") rule.num_bits = v.get<int64_t>();
          else if (k == "unsigned") rule.is_unsigned = v.get<bool>();
          else if (k == "narrow_range") rule.narrow_range = v.get<bool>();
          else if (k == "axis") {
            rule.set_axis = true;
            if (v.is_number_integer()) rule.axis = std::vector<int64_t>{v.get<int64_t>()};
            else if (!v.is_null()) rule.axis = v.get<std::vector<int64_t>>();
          } else if (k == "role") {
            const auto names =
                v.is_string() ? std::vector<std::string>{v.get<std::string>()} : v.get<std::vector<std::string>>();
            QDQBERT_CHECK(!names.empty(), "quant config '", src, "': rule '", pattern,
                          "': 'role' must name at least one role");
            for (const auto& name : names) {
              try {
                rule.roles.push_back(nn::parse_quantizer_role(name));
              } catch (const c10::Error& e) {
                fail("quant config '", src, "': rule '", pattern, "': ", e.what_without_backtrace());
              }
            }
          } else if (k == "layers") {
            rule.layers = v.is_number_integer() ? std::vector<int64_t>{v.get<int64_t>()} : v.get<std::vector<int64_t>>();
            QDQBERT_CHECK(!rule.layers.empty(), "quant config '", src, "': rule '", pattern,
                          "': 'layers' must list at least one layer");
            for (int64_t l : rule.layers) {
              QDQBERT_CHECK(l >= 0, "quant config '", src, "': rule '", pattern, "': layer ", l, " is negative");
            }
          } else {
            fail("quant config '", src, "': rule '", pattern, "': unknown field '", k, "'");
          }
        } catch (const json::exception& e) {
          fail("quant config '", src, "': rule '", pattern, "': field '", k, "' has the wrong type");
        }
      }
      c.rules.push_back(rule);
    }
  }
  return c;
}

QuantConfig QuantConfig::from_json_file(const std::string& path) {
  return from_json_string(io::read_file(path, "quant config"), path);
}

std::string QuantConfig::to_json_string() const {
  json j = json::object();
  if (input) j["input"] = *input;
  if (weight) j["weight"] = *weight;
  j["disable"] = disable;
  json q = json::object();
  for (const auto& r : rules) {
    json o = json::object();
    if (r.enable) o["enable"] = *r.enable;
    if (r.num_bits) o["num_bits"] = *r.num_bits;
    if (r.is_unsigned) o["unsigned"] = *r.is_unsigned;
    if (r.narrow_range) o["narrow_range"] = *r.narrow_range;
    if (r.set_axis) o["axis"] = r.axis ? json(*r.axis) : json(nullptr);
    if (!r.roles.empty()) {
      json roles = json::array();
      for (auto role : r.roles) roles.push_back(nn::to_string(role));
      o["role"] = r.roles.size() == 1 ? roles[0] : roles;
    }
    if (!r.layers.empty()) o["layers"] = r.layers;
    q[r.pattern] = o;
  }
  j["quantizers"] = q;
  return j.dump(2);
}

void QuantConfig::to_json_file(const std::string& path) const { io::write_file_atomic(path, to_json_string() + "\n"); }

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
