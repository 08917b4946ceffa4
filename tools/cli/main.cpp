#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "qdqbert/build_config.h"

namespace qdqbert::cli {
std::vector<Subcommand>& registry() {
  static std::vector<Subcommand> r;
  return r;
}
void set_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
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
