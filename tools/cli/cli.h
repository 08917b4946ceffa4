#pragma once
// qdqbert-cli: every subcommand lives in its own cmd_<name>.cpp and registers itself here, so adding
// one never touches main.cpp. Errors are exceptions; main prints them as one line and exits 1.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qdqbert {
class TaskModel;
namespace io {
struct LoadReport;
}
}  // namespace qdqbert

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

/// Upper bounds of the size flags (a typo such as --threads 100000 must not take the machine down).
constexpr int64_t kMaxThreads = 1024;
constexpr int64_t kMaxBatchSize = 4096;
constexpr int64_t kMaxLength = 65536;    ///< tokens; no BERT-family checkpoint has more positions
constexpr int64_t kMaxNumBins = 1 << 20;  ///< histogram bins per quantizer (Python's default is 2048)

/// A CLI11 validator for a whole number in [lo, hi], with a message of ours: "must be a whole number from
/// 1 to 4096, got 0" (CLI11 prefixes the option name).
CLI::Validator int_range(int64_t lo, int64_t hi);
/// A finite number in [lo, hi] ((lo, hi] when lo_open), with a message that names the bound and the
/// value given ("must be a number greater than 0, got '0'"), unlike CLI11's built-in ranges.
CLI::Validator number_range(double lo, double hi, bool lo_open = false);
CLI::Validator positive_number();      ///< number_range(0, max, open): > 0
CLI::Validator non_negative_number();  ///< number_range(0, max): >= 0

/// Refuses an output path that names one of the inputs (the same file or folder after resolving `.`,
/// `..` and symbolic links), before anything is read or written: "--output 'x.json' is the same file as
/// --requests 'x.json'; refusing to overwrite an input". Empty paths are ignored.
void check_output_is_not_input(const std::string& output_flag, const std::string& output,
                               const std::vector<std::pair<std::string, std::string>>& inputs);

/// Adds --strict: every checkpoint key must match the model (default: a pretrained encoder under any head,
/// missing head weights initialized and reported, as Hugging Face's from_pretrained does).
void add_strict_flag(CLI::App& app, bool& strict);

/// Loads a checkpoint folder as `task` ("" = from config.json), applying an optional --quant-config
/// file (descriptors before construction, rules after loading). Eval mode.
/// `report`, when given, receives what the load did (missing, unexpected and ignored keys);
/// `allow_non_finite` loads weights holding NaN or Inf (refused by default).
std::shared_ptr<TaskModel> load_model(const std::string& dir, const std::string& task,
                                      const std::string& quant_config_path, bool strict = false,
                                      io::LoadReport* report = nullptr, bool allow_non_finite = false);

}  // namespace qdqbert::cli
