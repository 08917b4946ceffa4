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
#include <vector>

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

QDQBERT_CLONES void row_const(const float* __restrict x, float* __restrict out, int64_t n, float s, float d, float lo,
                              float hi, bool fake) {
  if (fake) {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s, lo, hi) / d;
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s, lo, hi);
  }
}

// In place (out == x): the same arithmetic as row_const, without the no-alias promise.
QDQBERT_CLONES void row_const_inplace(float* x, int64_t n, const detail::ScalarQuant& q) {
  const float s = q.scale, d = q.divisor, lo = q.min_bound, hi = q.max_bound;
  for (int64_t j = 0; j < n; ++j) x[j] = quant_one(x[j] * s, lo, hi) / d;
}

QDQBERT_CLONES void row_vary(const float* __restrict x, float* __restrict out, int64_t n, const float* __restrict s,
                             const float* __restrict d, float lo, float hi, bool fake) {
  if (fake) {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s[j], lo, hi) / d[j];
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = quant_one(x[j] * s[j], lo, hi);
  }
}

QDQBERT_CLONES void row_add(const float* __restrict a, const float* __restrict b, float* __restrict out, int64_t n,
                            const detail::QuantAddLaunch& p) {
  const float sa = p.qa.scale, da = p.qa.divisor, la = p.qa.min_bound, ha = p.qa.max_bound;
  const float sb = p.qb.scale, db = p.qb.divisor, lb = p.qb.min_bound, hb = p.qb.max_bound;
  for (int64_t j = 0; j < n; ++j) out[j] = quant_one(a[j] * sa, la, ha) / da + quant_one(b[j] * sb, lb, hb) / db;
}

QDQBERT_CLONES void ste_row_const(const float* __restrict x, const float* __restrict g, float* __restrict out,
                                  int64_t n, float amax) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::fabs(x[j]) <= amax ? g[j] : 0.f;
}

QDQBERT_CLONES void ste_row_vary(const float* __restrict x, const float* __restrict g, float* __restrict out, int64_t n,
                                 const float* __restrict amax) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::fabs(x[j]) <= amax[j] ? g[j] : 0.f;
}

// Sum of g * d(fake)/d(amax) * max_bound over one range; d is as fake_tensor_quant_learned documents.
QDQBERT_CLONES double learned_range(const float* __restrict x, const float* __restrict g, float* __restrict out,
                                    int64_t n, float amax, float scale, float lo, float hi) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float v = x[j];
    out[j] = std::fabs(v) <= amax ? g[j] : 0.f;
    const float u = v * scale;
    const float r = std::nearbyint(u);
    const float d = r < lo ? lo : (r > hi ? hi : r - u);
    sum += static_cast<double>(g[j] * d);
  }
  return sum;
}

// [0, numel) split across threads: f(begin, end) for each thread's range.
template <class F>
void for_each_range(int64_t numel, F&& f) {
  constexpr int64_t kGrain = 1 << 15;
  if (numel > 0) at::parallel_for(0, numel, kGrain, f);
}

// Splits each thread's range (for_each_range) into runs that stay within one row of the
// layout: f(i, n, base, pos) for elements [i, i + n), whose scales start at base (+ pos where they vary
// along the row).
template <class F>
void for_each_row_run(const detail::BroadcastLayout& l, F&& f) {
  for_each_range(l.numel, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    while (i < end) {
      const int64_t row = i / l.inner;
      const int64_t pos = i - row * l.inner;
      const int64_t n = std::min(end - i, l.inner - pos);
      f(i, n, detail::row_scale_offset(l, row), pos);
      i += n;
    }
  });
}

}  // namespace

void ste_backward(const detail::SteLaunch& p) {
  for_each_row_run(p.layout, [&](int64_t i, int64_t n, int64_t base, int64_t pos) {
    if (p.layout.inner_varies) {
      ste_row_vary(p.x + i, p.grad + i, p.out + i, n, p.amax + base + pos);
    } else {
      ste_row_const(p.x + i, p.grad + i, p.out + i, n, p.amax[base]);
    }
  });
}

double learned_backward(const detail::LearnedBackwardLaunch& p) {
  if (p.numel == 0) return 0;
  // Fixed chunks summed in chunk order: the same sum for every thread count.
  constexpr int64_t kChunk = 1 << 15;
  const int64_t chunks = (p.numel + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t start = c * kChunk, n = std::min(kChunk, p.numel - start);
      partial[static_cast<size_t>(c)] =
          learned_range(p.x + start, p.grad + start, p.out + start, n, p.amax, p.scale, p.min_bound, p.max_bound);
    }
  });
  double sum = 0;
  for (double v : partial) sum += v;
  return sum;
}

void quantize_add(const detail::QuantAddLaunch& p) {
  for_each_range(p.numel, [&](int64_t begin, int64_t end) {
    row_add(p.a + begin, p.b + begin, p.out + begin, end - begin, p);
  });
}

void quantize_inplace(float* x, int64_t numel, const detail::ScalarQuant& q) {
  for_each_range(numel, [&](int64_t begin, int64_t end) { row_const_inplace(x + begin, end - begin, q); });
}

void quantize(const detail::QuantLaunch& p) {
  const bool fake = p.output == detail::QuantOutput::kFake;
  for_each_row_run(p.layout, [&](int64_t i, int64_t n, int64_t base, int64_t pos) {
    if (p.layout.inner_varies) {
      row_vary(p.x + i, p.out + i, n, p.scale + base + pos, p.divisor + base + pos, p.min_bound, p.max_bound, fake);
    } else {
      row_const(p.x + i, p.out + i, n, p.scale[base], p.divisor[base], p.min_bound, p.max_bound, fake);
    }
  });
}

}  // namespace qdqbert::ops::cpu
