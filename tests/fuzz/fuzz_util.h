#pragma once
// Shared by the libFuzzer targets: only qdqbert::Error may leave the library on bad input; any other
// exception, a crash, a sanitizer report or a broken invariant (check) is a finding.
#include <cstdint>
#include <string>

namespace qdqbert::fuzz {

inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

// The input split at the first 0x00 byte (a pattern and a text, a file and its companion, ...).
inline std::pair<std::string, std::string> split_at_nul(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  const size_t cut = s.find('\0');
  if (cut == std::string::npos) return {s, std::string()};
  return {s.substr(0, cut), s.substr(cut + 1)};
}

}  // namespace qdqbert::fuzz
