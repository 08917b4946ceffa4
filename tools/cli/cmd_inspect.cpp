// qdqbert-cli inspect: config summary, parameter count and the quantizer table of a checkpoint.
#include <torch/torch.h>

#include <iostream>
#include <set>

#include "cli.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/workflow/quant_config.h"

namespace qdqbert::cli {
namespace {

void run(const std::string& dir, const std::string& task, const std::string& qc) {
  auto model = load_model(dir, task, qc, /*strict=*/false);
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
            << "  weight descriptor " << c.weight_desc().str() << "\n\n";
  workflow::print_quant_summary(*model, std::cout);
}

Register reg({"inspect", "Show a checkpoint's config, parameter count and quantizers", [](CLI::App& app) {
                auto dir = std::make_shared<std::string>();
                auto task = std::make_shared<std::string>();
                auto qc = std::make_shared<std::string>();
                app.add_option("--model", *dir, "checkpoint folder")->required();
                app.add_option("--task", *task, "model task (default: from config.json)");
                app.add_option("--quant-config", *qc, "quantizer configuration JSON");
                app.final_callback([dir, task, qc] { run(*dir, *task, *qc); });
              }});

}  // namespace
}  // namespace qdqbert::cli
