// Peak resident memory of this process, for the loading test (load_probe.cpp) and benchmark (bench_load.cpp).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace qdqbert::testing {

// A field of /proc/self/status in KiB (VmRSS: resident now; VmHWM: the peak since start or reset); -1 if absent.
inline int64_t status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

// Resets VmHWM to the current VmRSS (clear_refs 5, Linux >= 4.0); false where the kernel refuses.
inline bool reset_peak_rss() { return static_cast<bool>(std::ofstream("/proc/self/clear_refs") << "5"); }

}  // namespace qdqbert::testing
