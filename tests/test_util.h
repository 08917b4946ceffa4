#pragma once
// Shared helpers for the GoogleTest suite: fixture paths, case.json, tensor comparison.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qdqbert/io/safetensors.h"
#include "test_config.h"
#include "test_paths.h"

namespace qdqbert::testing {

/// max |a - b| with NaN-aware shape checks.
inline ::testing::AssertionResult tensors_close(const at::Tensor& actual, const at::Tensor& expected, double rtol,
                                                double atol, const std::string& what) {
  if (!actual.defined()) return ::testing::AssertionFailure() << what << ": actual tensor is undefined";
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << what << ": shape " << actual.sizes() << " != expected "
                                         << expected.sizes();
  }
  at::Tensor a = actual.detach().to(at::kCPU, at::kDouble), e = expected.detach().to(at::kCPU, at::kDouble);
  at::Tensor bad = ((a - e).abs() > atol + rtol * e.abs()) | (a.isnan() != e.isnan());
  if (std::getenv("QDQBERT_TEST_DIFFS") && a.numel() > 0) {
    // Hand check of the bounds on another instruction path (tests/data/README.md, "Tolerances"):
    // the largest difference and how much of the bound it uses, one line per comparison.
    at::Tensor d = (a - e).abs().nan_to_num(0);
    const double used = (atol + rtol == 0) ? (d.max().item<double>() > 0 ? INFINITY : 0.0)
                                           : (d / (atol + rtol * e.abs())).nan_to_num(0).max().item<double>();
    std::fprintf(stderr, "[diff] %s: max abs diff %.3g, %.3g of the bound (rtol %g, atol %g)\n", what.c_str(),
                 d.max().item<double>(), used, rtol, atol);
  }
  if (bad.any().item<bool>()) {
    const int64_t idx = bad.reshape(-1).nonzero()[0][0].item<int64_t>();
    return ::testing::AssertionFailure()
           << what << ": " << bad.sum().item<int64_t>() << " of " << a.numel() << " elements differ; max abs diff "
           << (a - e).abs().nan_to_num(0).max().item<double>() << "; first at flat index " << idx << ": "
           << a.reshape(-1)[idx].item<double>() << " vs expected " << e.reshape(-1)[idx].item<double>()
           << " (rtol " << rtol << ", atol " << atol << ")";
  }
  return ::testing::AssertionSuccess();
}

/// Compares vectors along the last dimension against the scale of each expected vector:
/// |actual - expected| <= rtol * rms(expected row), at the positions where `mask` (the leading dimensions,
/// nonzero = checked) is set; an undefined mask checks every row. Hidden states after a LayerNorm are
/// normalized per token, so the rounding noise of a token scales with its own row, not with each element.
inline ::testing::AssertionResult rows_close(const at::Tensor& actual, const at::Tensor& expected, const at::Tensor& mask,
                                             double rtol, const std::string& what) {
  if (!actual.defined()) return ::testing::AssertionFailure() << what << ": actual tensor is undefined";
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << what << ": shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  at::Tensor a = actual.detach().to(at::kCPU, at::kDouble), e = expected.detach().to(at::kCPU, at::kDouble);
  at::Tensor scale = e.pow(2).mean(-1, /*keepdim=*/true).sqrt();
  at::Tensor ratio = ((a - e).abs() / scale.clamp_min(1e-30)).amax(-1);  // per row, in units of the row's rms
  ratio = ratio.nan_to_num(INFINITY);
  at::Tensor checked = mask.defined() ? mask.to(at::kCPU).ne(0) : torch::ones_like(ratio, torch::kBool);
  if (checked.sizes() != ratio.sizes()) {
    return ::testing::AssertionFailure() << what << ": mask shape " << mask.sizes() << " != rows " << ratio.sizes();
  }
  at::Tensor r = torch::where(checked, ratio, torch::zeros_like(ratio));
  const double worst = r.max().item<double>();
  if (std::getenv("QDQBERT_TEST_DIFFS")) {
    std::fprintf(stderr, "[diff] %s: max diff %.3g row rms, %.3g of the bound (row rtol %g)\n", what.c_str(), worst,
                 worst / rtol, rtol);
  }
  if (worst > rtol) {
    const int64_t idx = r.reshape(-1).argmax().item<int64_t>();
    return ::testing::AssertionFailure() << what << ": " << (r > rtol).sum().item<int64_t>() << " of "
                                         << checked.sum().item<int64_t>() << " rows differ by more than " << rtol
                                         << " x their rms; worst: row " << idx << " by " << worst << " x rms "
                                         << scale.reshape(-1)[idx].item<double>();
  }
  return ::testing::AssertionSuccess();
}

/// Bitwise equality (the "bit for bit" fixtures; -0.0 and 0.0 count as equal, as in the reference's
/// own torch.equal-based checks).
inline ::testing::AssertionResult tensors_equal(const at::Tensor& actual, const at::Tensor& expected,
                                                const std::string& what) {
  return tensors_close(actual, expected, 0.0, 0.0, what);
}

/// The message of the exception `f` throws ("" when it throws nothing), for substring checks.
template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace qdqbert::testing
