#pragma once
#include "ops/fake_quant_layout.h"

namespace qdqbert::ops::cpu {
/// Runs the fake/integer quantization over `p.layout.numel` floats, parallel over row chunks.
void quantize(const detail::QuantLaunch& p);
/// Per-tensor fake quantization of `numel` floats in place, parallel over element ranges.
void quantize_inplace(float* x, int64_t numel, const detail::ScalarQuant& q);
/// out = fake(a) + fake(b), parallel over element ranges; bit-identical to two quantize() calls and an add.
void quantize_add(const detail::QuantAddLaunch& p);
/// out = |x| <= amax ? grad : 0 (the straight-through estimator's gradient), parallel over row chunks.
void ste_backward(const detail::SteLaunch& p);
/// The straight-through gradient into p.out; returns amax's (unscaled) gradient sum, accumulated in double.
double learned_backward(const detail::LearnedBackwardLaunch& p);
}  // namespace qdqbert::ops::cpu
