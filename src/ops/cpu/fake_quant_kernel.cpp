// CPU fake-quant kernel: vectorizable row loops (compiled -O3, AVX2 clone chosen at run time) and
// at::parallel_for over element ranges. No per-element dispatch, no virtual calls.
//
// Exactness: clamping to [min_bound, max_bound] before rounding gives the same result as the
// reference's clamp(round(v)) because the bounds are integers; rounding uses the 1.5*2^23 trick,
// which is IEEE round-half-to-even for |v| <= 2^22 (bounds are at most 2^22), and copysign keeps
// torch.round's signed zeros. NaN passes through the comparisons unchanged, as in torch.clamp.
#include "ops/cpu/fake_quant_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace qdqbert::ops::cpu {
namespace {

constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QDQBERT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QDQBERT_CLONES
#endif

inline float quant_one(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  const float r = (v + kRoundMagic) - kRoundMagic;
  return std::copysign(r, v);
}

QDQBERT_CLONES void row_const(const float* __restrict x, float* __restrict out, int64_t n, float s, float d,
                              float lo, float hi, bool fake) {
  if (fake) {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s, lo, hi) / d;
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s, lo, hi);
  }
}

QDQBERT_CLONES void row_vary(const float* __restrict x, float* __restrict out, int64_t n,
                             const float* __restrict s, const float* __restrict d, float lo, float hi,
                             bool fake) {
  if (fake) {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s[j], lo, hi) / d[j];
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s[j], lo, hi);
  }
}

}  // namespace

void quantize(const detail::QuantLaunch& p) {
  const auto& l = p.layout;
  if (l.numel == 0) return;
  const bool fake = p.output == detail::QuantOutput::kFake;
  constexpr int64_t kGrain = 1 << 15;
  at::parallel_for(0, l.numel, kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    while (i < end) {
      const int64_t row = i / l.inner;
      const int64_t pos = i - row * l.inner;
      const int64_t n = std::min(end - i, l.inner - pos);
      const int64_t base = detail::row_scale_offset(l, row);
      if (l.inner_varies) {
        row_vary(p.x + i, p.out + i, n, p.scale + base + pos, p.divisor + base + pos, p.min_bound, p.max_bound,
                 fake);
      } else {
        row_const(p.x + i, p.out + i, n, p.scale[base], p.divisor[base], p.min_bound, p.max_bound, fake);
      }
      i += n;
    }
  });
}

}  // namespace qdqbert::ops::cpu
