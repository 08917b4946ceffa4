#include "qdqbert/nn/quantizer_role.h"

namespace qdqbert::nn {

namespace {
constexpr QuantizerRole kAllRoles[] = {QuantizerRole::kLinearInput, QuantizerRole::kLinearWeight,
                                       QuantizerRole::kMatmulInput, QuantizerRole::kResidualAddInput,
                                       QuantizerRole::kOther};
}  // namespace

const char* to_string(QuantizerRole role) {
  switch (role) {
    case QuantizerRole::kLinearInput: return "linear_input";
    case QuantizerRole::kLinearWeight: return "linear_weight";
    case QuantizerRole::kMatmulInput: return "matmul_input";
    case QuantizerRole::kResidualAddInput: return "residual_add_input";
    case QuantizerRole::kOther: return "other";
  }
  return "other";
}

std::optional<QuantizerRole> find_quantizer_role(const std::string& name) {
  for (QuantizerRole r : kAllRoles) {
    if (name == to_string(r)) return r;
  }
  return std::nullopt;
}

std::string quantizer_role_names() {
  std::string names;
  for (QuantizerRole r : kAllRoles) {
    names += names.empty() ? "" : ", ";
    names += to_string(r);
  }
  return names;
}

}  // namespace qdqbert::nn
