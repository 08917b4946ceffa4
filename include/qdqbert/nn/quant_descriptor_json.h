#pragma once
/// \file
/// nlohmann::json conversions for QuantDescriptor (for code that already uses nlohmann_json).
#include <nlohmann/json.hpp>

#include "qdqbert/nn/quant_descriptor.h"

namespace qdqbert::nn {
void to_json(nlohmann::json& j, const QuantDescriptor& d);
void from_json(const nlohmann::json& j, QuantDescriptor& d);
}  // namespace qdqbert::nn
