#pragma once
// qdqbert-cli: every subcommand lives in its own cmd_<name>.cpp and registers itself here, so adding
// one never touches main.cpp. Errors are exceptions; main prints them as one line and exits 1.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace qdqbert::cli {

struct Subcommand {
  std::string name;
  std::string description;
  /// Adds the options to `app` and sets its final callback (which does the work).
  std::function<void(CLI::App& app)> setup;
};

std::vector<Subcommand>& registry();

struct Register {
  explicit Register(Subcommand s) { registry().push_back(std::move(s)); }
};

/// Sets LibTorch's intra-op thread count (0 = leave the default).
void set_threads(int threads);

}  // namespace qdqbert::cli
