#pragma once
#include "ops/fake_quant_layout.h"

namespace qdqbert::ops::cpu {
/// Runs the fake/integer quantization over `p.layout.numel` floats, parallel over row chunks.
void quantize(const detail::QuantLaunch& p);
}  // namespace qdqbert::ops::cpu
