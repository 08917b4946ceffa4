#pragma once
/// \file
/// The quant-config file (`--quant-config Q.json`): its data, parser and writer. Torch-free (it is part of
/// qdqbert_core and fuzzed as untrusted input, tests/fuzz/quant_config_fuzz.cpp); applying it to a
/// model is in workflow/quant_config.h.
///
/// Q.json: {"input": <QuantDescriptor JSON>, "weight": <QuantDescriptor JSON>, "disable": false,
///          "quantizers": {"<regex on the quantizer's full name>": {"enable": bool, "num_bits": int,
///                         "unsigned": bool, "narrow_range": bool, "axis": int|[int]|null,
///                         "role": "<role>"|["<role>", ...], "layers": int|[int]}}}
/// Descriptors apply at construction; "disable" and the per-regex rules apply to the built model, in
/// file order (later rules win).
///
/// "role" and "layers" are optional and only narrow the regex match: a rule then touches the quantizers
/// whose name matches the regex AND whose role is one of the listed ones ("linear_input",
/// "linear_weight", "matmul_input", "residual_add_input", "other"; see nn/quantizer_role.h) AND whose
/// encoder layer (the i of "encoder.layer.<i>.") is one of the listed ones. Example: every residual-add
/// input of layers 0 and 1 stays in FP32 with
///   "quantizers": {".": {"enable": false, "role": "residual_add_input", "layers": [0, 1]}}
/// Files without them read and apply as before.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/nn/quant_descriptor.h"
#include "qdqbert/nn/quantizer_role.h"

namespace qdqbert {
class TaskModel;
namespace io {
struct PretrainedOptions;
}  // namespace io
}  // namespace qdqbert

namespace qdqbert::workflow {

struct QuantizerRule {
  std::string pattern;  ///< regex (qdqbert::Regex, linear time), searched in the full quantizer name
  std::optional<bool> enable;
  std::optional<int64_t> num_bits;
  std::optional<bool> is_unsigned;
  std::optional<bool> narrow_range;
  bool set_axis = false;
  std::optional<std::vector<int64_t>> axis;  ///< with set_axis: nullopt = per tensor
  std::vector<nn::QuantizerRole> roles;      ///< "role": only quantizers of these roles (empty = any)
  std::vector<int64_t> layers;               ///< "layers": only quantizers of these encoder layers (empty = any)
};

struct QuantConfig {
  std::optional<nn::QuantDescriptor> input, weight;
  bool disable = false;
  std::vector<QuantizerRule> rules;

  static QuantConfig from_json_string(const std::string& text, const std::string& source = "<string>");
  static QuantConfig from_json_file(const std::string& path);
  std::string to_json_string() const;
  void to_json_file(const std::string& path) const;

  /// Puts the descriptors into from_pretrained options (defined in the torch library).
  void apply_to(io::PretrainedOptions& options) const;
  /// Applies "disable" and the rules to a built model (defined in the torch library); returns how many
  /// quantizers each rule touched. A rule that matches no quantizer (after its role / layers restriction) is an error (a typo would
  /// otherwise silently do nothing).
  std::vector<int> apply(TaskModel& model) const;
};

}  // namespace qdqbert::workflow
