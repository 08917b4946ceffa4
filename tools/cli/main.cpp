#include <cstdlib>
#include <sstream>
#include <limits>
#include <cmath>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <iostream>

#include "cli.h"
#include "qdqbert/build_config.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/runtime.h"
#include "qdqbert/workflow/quant_config.h"

namespace qdqbert::cli {
std::vector<Subcommand>& registry() {
  static std::vector<Subcommand> r;
  return r;
}
void set_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
  warn_blas_threading_once();
}
void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "LibTorch intra-op threads (default: LibTorch's own default)")
      ->check(int_range(0, kMaxThreads));
}
CLI::Validator int_range(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        const std::string why = "must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                ", got '" + v + "'";
        if (v.empty() || v.size() > 20) return why;
        size_t used = 0;
        long long n = 0;
        try {
          n = std::stoll(v, &used, 10);
        } catch (const std::exception&) {
          return why;
        }
        return used == v.size() && n >= lo && n <= hi ? std::string() : why;
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}
CLI::Validator number_range(double lo, double hi, bool lo_open) {
  std::ostringstream desc;
  desc << "NUMBER in " << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
  return CLI::Validator(
      [lo, hi, lo_open](std::string& v) -> std::string {
        std::ostringstream why;
        why << "must be a number " << (lo_open ? "greater than " : "from ") << lo;
        if (hi < std::numeric_limits<double>::max()) why << " to " << hi;
        why << ", got '" << v << "'";
        char* end = nullptr;
        const double x = v.empty() ? std::nan("") : std::strtod(v.c_str(), &end);
        const bool ok = !v.empty() && end == v.c_str() + v.size() && std::isfinite(x) && (lo_open ? x > lo : x >= lo) &&
                        x <= hi;
        return ok ? std::string() : why.str();
      },
      desc.str());
}
CLI::Validator positive_number() { return number_range(0, std::numeric_limits<double>::max(), true); }
CLI::Validator non_negative_number() { return number_range(0, std::numeric_limits<double>::max(), false); }
void check_output_is_not_input(const std::string& output_flag, const std::string& output,
                               const std::vector<std::pair<std::string, std::string>>& inputs) {
  namespace fs = std::filesystem;
  if (output.empty()) return;
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(output, ec);
  for (const auto& [flag, in] : inputs) {
    if (in.empty()) continue;
    std::error_code ec2;
    const fs::path p = fs::weakly_canonical(in, ec2);
    const bool same = (!ec && !ec2 && out == p) || fs::equivalent(output, in, ec2);
    if (same) {
      throw std::invalid_argument(output_flag + " '" + output + "' is the same " +
                                  (fs::is_directory(in, ec2) ? "folder" : "file") + " as " + flag + " '" + in +
                                  "'; refusing to overwrite an input");
    }
  }
}
void add_strict_flag(CLI::App& app, bool& strict) {
  app.add_flag("--strict", strict,
               "every checkpoint key must match the model (default: head weights the checkpoint lacks are "
               "initialized and reported; the encoder must always match)");
}
std::shared_ptr<TaskModel> load_model(const std::string& dir, const std::string& task,
                                      const std::string& quant_config_path, bool strict, io::LoadReport* report,
                                      bool allow_non_finite) {
  io::PretrainedOptions options;
  options.allow_non_finite = allow_non_finite;
  options.task = task;
  options.strict = strict;
  workflow::QuantConfig qc;
  if (!quant_config_path.empty()) {
    qc = workflow::QuantConfig::from_json_file(quant_config_path);
    qc.apply_to(options);
  }
  auto model = io::from_pretrained(dir, options, report);
  qc.apply(*model);
  model->module().eval();
  return model;
}
}  // namespace qdqbert::cli

int main(int argc, char** argv) {
  qdqbert::retain_freed_memory();  // activations are freed and allocated again every step: keep them mapped
  CLI::App app{"qdqbert-cli — quantization-aware BERT in C++ (QDQBERT + pytorch-quantization workflow)"};
  app.set_version_flag("--version", std::string("qdqbert ") + QDQBERT_VERSION_STRING);
  app.require_subcommand(1);
  auto& subs = qdqbert::cli::registry();
  std::sort(subs.begin(), subs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string current;
  for (auto& s : subs) {
    CLI::App* sub = app.add_subcommand(s.name, s.description);
    s.setup(*sub);
    sub->parse_complete_callback([&current, name = s.name] { current = name; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "qdqbert-cli %s: error: %s\n", current.c_str(), e.what_without_backtrace());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "qdqbert-cli %s: error: out of memory (an input or option asks for more memory than this "
                 "machine has)\n", current.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qdqbert-cli %s: error: %s\n", current.c_str(), e.what());
    return 1;
  }
  return 0;
}
