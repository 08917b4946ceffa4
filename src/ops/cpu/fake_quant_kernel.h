#pragma once
#include "ops/fake_quant_layout.h"

namespace qdqbert::ops::cpu {
/// Runs the fake/integer quantization over `p.layout.numel` floats, parallel over row chunks.
void quantize(const detail::QuantLaunch& p);
/// out = |x| <= amax ? grad : 0 (the straight-through estimator's gradient), parallel over row chunks.
void ste_backward(const detail::SteLaunch& p);
/// The straight-through gradient into p.out; returns amax's (unscaled) gradient sum, accumulated in double.
double learned_backward(const detail::LearnedBackwardLaunch& p);
}  // namespace qdqbert::ops::cpu
