#pragma once
#include "ops/fake_quant_layout.h"

namespace qdqbert::ops::cpu {
/// Runs the fake/integer quantization over `p.layout.numel` floats, parallel over row chunks.
void quantize(const detail::QuantLaunch& p);
/// Fake quantization in place (p.out == p.x), for a layout whose scale is constant along each row
/// (per tensor, or per channel on an outer axis).
void quantize_inplace(const detail::QuantLaunch& p);
/// out = fake(a) + fake(b), parallel over element ranges; bit-identical to two quantize() calls and an add.
void quantize_add(const detail::QuantAddLaunch& p);
/// out = |x| <= amax ? grad : 0 (the straight-through estimator's gradient), parallel over row chunks.
void ste_backward(const detail::SteLaunch& p);
/// The straight-through gradient into p.out; returns amax's (unscaled) gradient sum, accumulated in double.
double learned_backward(const detail::LearnedBackwardLaunch& p);
}  // namespace qdqbert::ops::cpu
