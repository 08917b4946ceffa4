#pragma once
// Locates the real all-MiniLM-L6-v2 checkpoint (tools/fetch-minilm.sh): $QDQBERT_MINILM_DIR, else
// <build>/minilm. A missing folder is a test failure, never a skip.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_config.h"

namespace qdqbert::testing {
inline std::string minilm_dir() {
  const char* env = std::getenv("QDQBERT_MINILM_DIR");
  return env && *env ? env : std::string(QDQBERT_BINARY_DIR) + "/minilm";
}
inline ::testing::AssertionResult minilm_available() {
  const std::string d = minilm_dir();
  if (std::filesystem::exists(d + "/config.json")) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the MiniLM checkpoint is missing at '" << d
                                       << "': run tools/fetch-minilm.sh " << d << " (or set QDQBERT_MINILM_DIR)";
}
}  // namespace qdqbert::testing
