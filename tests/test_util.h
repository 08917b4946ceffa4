#pragma once
// Shared helpers for the GoogleTest suite: fixture paths, case.json, tensor comparison.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qdqbert/io/safetensors.h"
#include "test_config.h"

namespace qdqbert::testing {

inline std::string data_dir() {
  const char* env = std::getenv("QDQBERT_TEST_DATA");
  return env ? env : QDQBERT_TEST_DATA_DIR;
}

inline std::string data_path(const std::string& rel) { return data_dir() + "/" + rel; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

/// Case folder names under tests/data/<group> whose name starts with `prefix`, sorted.
inline std::vector<std::string> case_names(const std::string& group, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(data_path(group))) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

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
