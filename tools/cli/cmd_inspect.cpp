// qdqbert-cli inspect: config summary, parameter count and the quantizer table of a checkpoint.
#include <torch/torch.h>

#include <iostream>
#include <set>

#include "cli.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/workflow/quant_config.h"

namespace qdqbert::cli {
namespace {

// One line a key group, the names listed in full (inspect is where a user looks for them).
void print_keys(const char* what, const std::vector<std::string>& keys) {
  std::cout << "  " << what << " " << keys.size();
  for (size_t i = 0; i < keys.size(); ++i) std::cout << (i ? ", " : ": ") << keys[i];
  std::cout << "\n";
}

void run(const std::string& dir, const std::string& task, const std::string& qc, bool allow_non_finite) {
  io::LoadReport report;
  auto model = load_model(dir, task, qc, /*strict=*/false, &report, allow_non_finite);
  const Config& c = model->model_config();
  std::set<const void*> seen;
  int64_t params = 0;
  for (const auto& p : model->module().parameters()) {
    if (seen.insert(p.unsafeGetTensorImpl()).second) params += p.numel();
  }
  std::cout << model->class_name() << " from " << dir << "\n"
            << "  layers " << c.num_hidden_layers << ", hidden " << c.hidden_size << ", heads "
            << c.num_attention_heads << ", intermediate " << c.intermediate_size << ", vocab " << c.vocab_size
            << ", max positions " << c.max_position_embeddings << ", act " << c.hidden_act << ", positions "
            << c.position_embedding_type << (c.is_decoder ? ", decoder" : "") << "\n"
            << "  parameters " << params << " (" << params * 4 / (1024.0 * 1024.0) << " MiB fp32)\n"
            << "  input descriptor  " << c.input_desc().str() << "\n"
            << "  weight descriptor " << c.weight_desc().str() << "\n"
            << "checkpoint keys\n";
  print_keys("missing (newly initialized)", report.missing_keys);
  print_keys("unexpected (not used)", report.unexpected_keys);
  print_keys("ignored (known leftovers)", report.ignored_keys);
  std::cout << "  quantizer ranges loaded " << report.loaded_amax.size() << "\n\n";
  workflow::print_quant_summary(*model, std::cout);
}

Register reg({"inspect", "Show a checkpoint's config, parameter count and quantizers", [](CLI::App& app) {
                auto dir = std::make_shared<std::string>();
                auto task = std::make_shared<std::string>();
                auto qc = std::make_shared<std::string>();
                auto allow_non_finite = std::make_shared<bool>(false);
                app.add_option("--model", *dir, "checkpoint folder")->required();
                app.add_option("--task", *task, "model task (default: from config.json)");
                app.add_option("--quant-config", *qc, "quantizer configuration JSON");
                app.add_flag("--allow-non-finite", *allow_non_finite,
                             "load weights that hold NaN or Inf (refused by default: every output would be NaN)");
                app.final_callback([dir, task, qc, allow_non_finite] { run(*dir, *task, *qc, *allow_non_finite); });
              }});

}  // namespace
}  // namespace qdqbert::cli
