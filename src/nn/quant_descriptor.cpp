#include "qdqbert/nn/quant_descriptor.h"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>

#include "qdqbert/error.h"
#include "qdqbert/json.h"
#include "qdqbert/nn/quant_descriptor_json.h"

namespace qdqbert::nn {

std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: fixed for 1e-4 <= |v| < 1e16, else exponent.
  char buf[64];
  for (int prec = 0; prec <= 16; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*e", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  const bool neg = s[0] == '-';
  if (neg) s = s.substr(1);
  const auto e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (s[i] != '.') digits += s[i];
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min<size_t>(digits.size(), exp + 1));
      while (static_cast<int>(ip.size()) < exp + 1) ip += '0';
      std::string fp = digits.size() > static_cast<size_t>(exp + 1) ? digits.substr(exp + 1) : "0";
      out = ip + "." + fp;
    } else {
      out = "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return neg ? "-" + out : out;
}

void QuantDescriptor::validate() const {
  // The range the fake-quant kernels support: refused here, where the descriptor is read, instead of at
  // the first forward pass, where neither the file nor the quantizer would be named.
  const int64_t min_bits = min_num_bits(is_unsigned);
  QDQBERT_CHECK(num_bits >= min_bits && num_bits <= kMaxBits, "QuantDescriptor: num_bits must be in [", min_bits,
                ", ", kMaxBits, "] for ", is_unsigned ? "unsigned" : "signed", " quantization, got ", num_bits);
  QDQBERT_CHECK(calib_method == "max" || calib_method == "histogram" || calib_method == "none",
                "QuantDescriptor: unknown calib_method '", calib_method,
                "' (max, histogram, or none for a quantizer that is never calibrated)");
  if (amax) {
    for (size_t i = 0; i < amax->size(); ++i) {
      const float a = (*amax)[i];
      QDQBERT_CHECK(std::isfinite(a) && a >= 0, "QuantDescriptor: amax must be finite and >= 0, got ", a,
                    amax->size() > 1 ? " at index " + std::to_string(i) : std::string());
    }
  }
  QDQBERT_CHECK(!scale_amax || std::isfinite(*scale_amax), "QuantDescriptor: scale_amax must be finite, got ",
                scale_amax.value_or(0.0));
  QDQBERT_CHECK(!(learn_amax && axis.has_value()),
                "QuantDescriptor: axis is ignored and must be None when learn_amax is true");
  QDQBERT_CHECK(!amax || !amax->empty(), "QuantDescriptor: amax list must not be empty");
}

std::string axis_repr(const std::vector<int64_t>& axis, bool as_int) {
  if (as_int && axis.size() == 1) return std::to_string(axis[0]);
  std::string s = "(";
  for (size_t i = 0; i < axis.size(); ++i) s += (i ? ", " : "") + std::to_string(axis[i]);
  if (axis.size() == 1) s += ",";
  return s + ")";
}

std::string QuantDescriptor::str() const {
  std::string s = name ? *name + ": " : "QuantDescriptor";
  s += "(" + std::string(is_unsigned ? "unsigned " : "") + std::to_string(num_bits) + "bit";
  s += fake_quant ? " fake" : " real";
  s += " axis=" + (axis ? axis_repr(*axis, axis_is_int) : std::string(" per-tensor"));
  if (amax) {
    s += " amax=";
    if (amax_is_scalar) {
      s += py_float_repr((*amax)[0]);
    } else {
      s += "[";
      for (size_t i = 0; i < amax->size(); ++i) s += (i ? ", " : "") + py_float_repr((*amax)[i]);
      s += "]";
    }
    s += " full_range";
  }
  if (learn_amax) s += " learn_amax";
  if (scale_amax && *scale_amax != 0.0) s += " scale_amax=" + py_float_repr(*scale_amax);
  return s + ")";
}

bool QuantDescriptor::operator==(const QuantDescriptor& o) const {
  return num_bits == o.num_bits && name == o.name && fake_quant == o.fake_quant && axis == o.axis &&
         amax == o.amax && learn_amax == o.learn_amax && scale_amax == o.scale_amax &&
         calib_method == o.calib_method && is_unsigned == o.is_unsigned && narrow_range == o.narrow_range;
}

void to_json(nlohmann::json& j, const QuantDescriptor& d) {
  j = nlohmann::json::object();
  j["num_bits"] = d.num_bits;
  j["name"] = d.name ? nlohmann::json(*d.name) : nlohmann::json(nullptr);
  j["fake_quant"] = d.fake_quant;
  if (!d.axis) {
    j["axis"] = nullptr;
  } else if (d.axis_is_int && d.axis->size() == 1) {
    j["axis"] = (*d.axis)[0];
  } else {
    j["axis"] = *d.axis;
  }
  if (!d.amax) {
    j["amax"] = nullptr;
  } else if (d.amax_is_scalar) {
    j["amax"] = (*d.amax)[0];
  } else {
    j["amax"] = *d.amax;
  }
  j["learn_amax"] = d.learn_amax;
  j["scale_amax"] = d.scale_amax ? nlohmann::json(*d.scale_amax) : nlohmann::json(nullptr);
  j["calib_method"] = d.calib_method;
  j["unsigned"] = d.is_unsigned;
  j["narrow_range"] = d.narrow_range;
}

void from_json(const nlohmann::json& j, QuantDescriptor& d) {
  QDQBERT_CHECK(j.is_object(), "QuantDescriptor JSON: expected an object, got ", j.type_name());
  static const std::set<std::string> known = {"num_bits",   "name",         "fake_quant", "axis",     "amax",
                                              "learn_amax", "scale_amax",   "calib_method", "unsigned",
                                              "narrow_range"};
  for (const auto& [key, value] : j.items()) {
    QDQBERT_CHECK(known.count(key), "QuantDescriptor JSON: unknown key '", key, "'");
  }
  for (const char* key : {"num_bits", "axis"}) {  // nlohmann would truncate 8.5 to 8
    if (!j.contains(key)) continue;
    const auto& v = j[key];
    bool integral = v.is_null() || v.is_number_integer();
    if (v.is_array()) {
      integral = true;
      for (const auto& e : v) integral = integral && e.is_number_integer();
    }
    QDQBERT_CHECK(integral, "QuantDescriptor JSON: key '", key, "' must be an integer",
                  key[0] == 'a' ? " or a list of integers" : "", ", got ", v.dump());
  }
  auto get = [&](const char* key, auto& out) {
    if (!j.contains(key) || j[key].is_null()) return false;
    try {
      j[key].get_to(out);
    } catch (const nlohmann::json::exception& e) {
      fail("QuantDescriptor JSON: key '", key, "' has the wrong type (", j[key].type_name(), "): ", e.what());
    }
    return true;
  };
  QuantDescriptor r;
  get("num_bits", r.num_bits);
  std::string name;
  if (get("name", name)) r.name = name;
  get("fake_quant", r.fake_quant);
  if (j.contains("axis") && !j["axis"].is_null()) {
    const auto& a = j["axis"];
    if (a.is_number_integer()) {
      r.with_axis(a.get<int64_t>());
    } else {
      std::vector<int64_t> v;
      get("axis", v);
      r.with_axis(v);
    }
  }
  if (j.contains("amax") && !j["amax"].is_null()) {
    const auto& a = j["amax"];
    if (a.is_number()) {
      r.with_amax(a.get<float>());
    } else {
      std::vector<float> v;
      get("amax", v);
      r.with_amax(v);
    }
  }
  get("learn_amax", r.learn_amax);
  double sa = 0;
  if (get("scale_amax", sa)) r.scale_amax = sa;
  get("calib_method", r.calib_method);
  get("unsigned", r.is_unsigned);
  get("narrow_range", r.narrow_range);
  r.validate();
  d = r;
}

std::string QuantDescriptor::to_json_string(int indent) const {
  nlohmann::json j;
  to_json(j, *this);
  return j.dump(indent);
}

QuantDescriptor QuantDescriptor::from_json_string(const std::string& text) {
  nlohmann::json j;
  try {
    j = parse_json(text, "QuantDescriptor JSON");
  } catch (const JsonSyntaxError& e) {
    fail("QuantDescriptor JSON: parse error: ", e.parser_message());
  }
  QuantDescriptor d;
  from_json(j, d);
  return d;
}

QuantDescriptor quant_desc_8bit_per_tensor() { return QuantDescriptor().with_num_bits(8); }
QuantDescriptor quant_desc_unsigned_8bit_per_tensor() { return QuantDescriptor().with_num_bits(8).with_unsigned(true); }
QuantDescriptor quant_desc_8bit_linear_weight_per_row() { return QuantDescriptor().with_num_bits(8).with_axis(0); }

namespace {
std::mutex g_defaults_mutex;
QuantDescriptor& default_input_storage() {
  static QuantDescriptor d = quant_desc_8bit_per_tensor();
  return d;
}
QuantDescriptor& default_weight_storage() {
  static QuantDescriptor d = quant_desc_8bit_linear_weight_per_row();
  return d;
}
}  // namespace

void set_default_quant_desc_input(const QuantDescriptor& desc) {
  desc.validate();
  std::lock_guard<std::mutex> lock(g_defaults_mutex);
  default_input_storage() = desc;
}
void set_default_quant_desc_weight(const QuantDescriptor& desc) {
  desc.validate();
  std::lock_guard<std::mutex> lock(g_defaults_mutex);
  default_weight_storage() = desc;
}
QuantDescriptor default_quant_desc_input() {
  std::lock_guard<std::mutex> lock(g_defaults_mutex);
  return default_input_storage();
}
QuantDescriptor default_quant_desc_weight() {
  std::lock_guard<std::mutex> lock(g_defaults_mutex);
  return default_weight_storage();
}

}  // namespace qdqbert::nn
