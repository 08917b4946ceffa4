// The quant-config file: parser and writer (torch-free, part of qdqbert_core).
#include "qdqbert/workflow/quant_config_file.h"

#include <nlohmann/json.hpp>

#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"
#include "qdqbert/nn/quant_descriptor_json.h"
#include "qdqbert/regex.h"

namespace qdqbert::workflow {

// Ordered: the rules apply in file order (later rules win), so their order must survive reading and writing.
using json = nlohmann::ordered_json;

namespace {

// One rule's fields, each checked for its exact type: nlohmann would turn 8.5 into 8 and "1" into an error
// message of its own.
class RuleReader {
 public:
  RuleReader(const std::string& src, const std::string& pattern) : where_("quant config '" + src + "': rule '" + pattern + "'") {}

  bool boolean(const std::string& key, const json& v) const {
    if (!v.is_boolean()) wrong_type(key, "true or false", v);
    return v.get<bool>();
  }
  int64_t integer(const std::string& key, const json& v) const {
    if (!v.is_number_integer()) wrong_type(key, "an integer", v);
    QDQBERT_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), where_, ": '", key,
                  "' is out of range: ", v.dump());
    return v.get<int64_t>();
  }
  // An integer or a list of integers.
  std::vector<int64_t> integers(const std::string& key, const json& v) const {
    if (!v.is_array() && !v.is_number_integer()) wrong_type(key, "an integer or a list of integers", v);
    if (!v.is_array()) return {integer(key, v)};
    std::vector<int64_t> out;
    for (const auto& e : v) out.push_back(integer(key, e));
    return out;
  }
  std::vector<nn::QuantizerRole> roles(const json& v) const {
    if (!v.is_string() && !v.is_array()) wrong_type("role", "a role name or a list of them", v);
    const json names = v.is_string() ? json::array({v}) : v;
    QDQBERT_CHECK(!names.empty(), where_, ": 'role' must name at least one role");
    std::vector<nn::QuantizerRole> out;
    for (const auto& name : names) {
      if (!name.is_string()) wrong_type("role", "role names", name);
      const auto role = nn::find_quantizer_role(name.get<std::string>());
      QDQBERT_CHECK(role.has_value(), where_, ": unknown quantizer role '", name.get<std::string>(), "' (expected one of ",
                    nn::quantizer_role_names(), ")");
      out.push_back(*role);
    }
    return out;
  }
  [[noreturn]] void wrong_type(const std::string& key, const char* expected, const json& v) const {
    fail(where_, ": field '", key, "' has the wrong type (expected ", expected, ", got ", v.type_name(), ")");
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

QuantizerRule parse_rule(const std::string& src, const std::string& pattern, const json& r) {
  const RuleReader read(src, pattern);
  QDQBERT_CHECK(r.is_object(), read.where(), " must be an object");
  QuantizerRule rule;
  rule.pattern = pattern;
  Regex(pattern, "quant config '" + src + "'");  // refused here, naming the file, if it does not compile
  for (const auto& [k, v] : r.items()) {
    if (k == "enable") {
      rule.enable = read.boolean(k, v);
    } else if (k == "num_bits") {
      rule.num_bits = read.integer(k, v);
    } else if (k == "unsigned") {
      rule.is_unsigned = read.boolean(k, v);
    } else if (k == "narrow_range") {
      rule.narrow_range = read.boolean(k, v);
    } else if (k == "axis") {
      rule.set_axis = true;
      if (!v.is_null()) rule.axis = read.integers(k, v);
    } else if (k == "role") {
      rule.roles = read.roles(v);
    } else if (k == "layers") {
      rule.layers = read.integers(k, v);
      QDQBERT_CHECK(!rule.layers.empty(), read.where(), ": 'layers' must list at least one layer");
      for (int64_t l : rule.layers) QDQBERT_CHECK(l >= 0, read.where(), ": layer ", l, " is negative");
    } else {
      fail(read.where(), ": unknown field '", k,
           "' (expected enable, num_bits, unsigned, narrow_range, axis, role, layers)");
    }
  }
  if (rule.num_bits) {
    // The kernels' range, checked here rather than at the first forward pass. Whether the quantizer is
    // signed is only known when the rule meets it, unless the rule says so itself.
    const int64_t lo = nn::min_num_bits(rule.is_unsigned.value_or(true));
    QDQBERT_CHECK(*rule.num_bits >= lo && *rule.num_bits <= nn::kMaxBits, read.where(), ": num_bits must be in [", lo,
                  ", ", nn::kMaxBits, "], got ", *rule.num_bits);
  }
  return rule;
}

}  // namespace

QuantConfig QuantConfig::from_json_string(const std::string& text, const std::string& src) {
  // Syntax errors read "quant config '<src>': invalid JSON: ...".
  json j = parse_ordered_json(text, "quant config '" + src + "'");
  QDQBERT_CHECK(j.is_object(), "quant config '", src, "': expected a JSON object");
  QuantConfig c;
  for (const auto& [k, v] : j.items()) {
    QDQBERT_CHECK(k == "input" || k == "weight" || k == "disable" || k == "quantizers", "quant config '", src,
                  "': unknown key '", k, "' (expected input, weight, disable, quantizers)");
  }
  try {
    if (j.contains("input") && !j["input"].is_null()) c.input = nlohmann::json(j["input"]).get<nn::QuantDescriptor>();
    if (j.contains("weight") && !j["weight"].is_null()) c.weight = nlohmann::json(j["weight"]).get<nn::QuantDescriptor>();
  } catch (const Error& e) {
    fail("quant config '", src, "': ", e.what());
  }
  if (j.contains("disable")) {
    QDQBERT_CHECK(j["disable"].is_boolean(), "quant config '", src, "': 'disable' must be true or false");
    c.disable = j["disable"].get<bool>();
  }
  if (j.contains("quantizers")) {
    QDQBERT_CHECK(j["quantizers"].is_object(), "quant config '", src, "': 'quantizers' must be an object");
    for (const auto& [pattern, r] : j["quantizers"].items()) c.rules.push_back(parse_rule(src, pattern, r));
  }
  return c;
}

QuantConfig QuantConfig::from_json_file(const std::string& path) {
  return from_json_string(io::read_file(path, "quant config"), path);
}

std::string QuantConfig::to_json_string() const {
  json j = json::object();
  if (input) j["input"] = nlohmann::json(*input);
  if (weight) j["weight"] = nlohmann::json(*weight);
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

}  // namespace qdqbert::workflow
