#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
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
      ->check(CLI::NonNegativeNumber);
}
void add_strict_flag(CLI::App& app, bool& strict) {
  app.add_flag("--strict", strict,
               "every checkpoint key must match the model (default: head weights the checkpoint lacks are "
               "initialized and reported; the encoder must always match)");
}
std::shared_ptr<TaskModel> load_model(const std::string& dir, const std::string& task,
                                      const std::string& quant_config_path, bool strict) {
  io::PretrainedOptions options;
  options.task = task;
  options.strict = strict;
  workflow::QuantConfig qc;
  if (!quant_config_path.empty()) {
    qc = workflow::QuantConfig::from_json_file(quant_config_path);
    qc.apply_to(options);
  }
  auto model = io::from_pretrained(dir, options);
  qc.apply(*model);
  model->module().eval();
  return model;
}
}  // namespace qdqbert::cli

int main(int argc, char** argv) {
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qdqbert-cli %s: error: %s\n", current.c_str(), e.what());
    return 1;
  }
  return 0;
}
