#pragma once
/// \file
/// What a quantizer quantizes (torch-free, so that the quant-config parser can live in the core and be
/// fuzzed). How a built model's quantizers get their role: nn/quantizer_select.h.

#include <optional>
#include <string>

namespace qdqbert::nn {

/// What a quantizer quantizes.
enum class QuantizerRole {
  kLinearInput,        ///< the input of a QuantLinear ("linear_input")
  kLinearWeight,       ///< the weight of a QuantLinear ("linear_weight")
  kMatmulInput,        ///< an operand of an attention matmul ("matmul_input")
  kResidualAddInput,   ///< an operand of a residual add ("residual_add_input")
  kOther,              ///< none of the above ("other")
};

/// "linear_input", "linear_weight", "matmul_input", "residual_add_input" or "other".
const char* to_string(QuantizerRole role);
/// The role `to_string` names `name` (exact spelling), or nullopt.
std::optional<QuantizerRole> find_quantizer_role(const std::string& name);
/// Every role name, comma separated, for error messages.
std::string quantizer_role_names();

}  // namespace qdqbert::nn
