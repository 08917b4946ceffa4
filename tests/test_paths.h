#pragma once
// Torch-free test helpers: fixture paths and case folders (test_util.h adds the tensor helpers). The tests
// that include only this run under ASan + UBSan too (tests/fuzz, qdqbert_core_tests_sanitized).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

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

}  // namespace qdqbert::testing
