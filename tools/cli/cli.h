#pragma once
// qdqbert-cli: every subcommand lives in its own cmd_<name>.cpp and registers itself here, so adding
// one never touches main.cpp. Errors are exceptions; main prints them as one line and exits 1.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qdqbert {
class TaskModel;
}

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

/// Adds --threads to a subcommand.
void add_threads_option(CLI::App& app, int& threads);

/// Adds --strict: every checkpoint key must match the model (default: a pretrained encoder under any head,
/// missing head weights initialized and reported, as Hugging Face's from_pretrained does).
void add_strict_flag(CLI::App& app, bool& strict);

/// Loads a checkpoint folder as `task` ("" = from config.json), applying an optional --quant-config
/// file (descriptors before construction, rules after loading). Eval mode.
std::shared_ptr<TaskModel> load_model(const std::string& dir, const std::string& task,
                                      const std::string& quant_config_path, bool strict = false);

}  // namespace qdqbert::cli
