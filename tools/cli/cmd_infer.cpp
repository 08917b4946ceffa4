// qdqbert-cli infer: run any QDQBERT head on tensors from a safetensors file.
#include <torch/torch.h>

#include "cli.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"

namespace qdqbert::cli {
namespace {

struct InferArgs {
  bool strict = false;
  std::string model, task, inputs, output, quant_config, device = "cpu";
  bool hidden = false, attentions = false;
  int threads = 0;
};

ModelInputs inputs_with_prefix(const std::map<std::string, at::Tensor>& all, const std::string& prefix,
                               const std::string& file, const torch::Device& device) {
  ModelInputs in;
  for (const auto& [k, v] : all) {
    const bool prefixed = k.rfind("step1_", 0) == 0 || k.rfind("step2_", 0) == 0 || k.rfind("full_", 0) == 0;
    std::string name;
    if (prefix.empty()) {
      if (prefixed) continue;
      name = k;
    } else if (k.rfind(prefix, 0) == 0) {
      name = k.substr(prefix.size());
    } else if (!prefixed) {
      name = k;  // unprefixed tensors (e.g. encoder_hidden_states) apply to every step
    } else {
      continue;
    }
    TORCH_CHECK_VALUE(in.set(name, v.to(device)), "inputs '", file, "': unknown tensor '", k,
                      "' (expected forward argument names such as input_ids, attention_mask, labels)");
  }
  return in;
}

void run(const InferArgs& a) {
  check_output_is_not_input("--output", a.output, {{"--model", a.model}, {"--inputs", a.inputs}});
  set_threads(a.threads);
  torch::NoGradGuard no_grad;
  const torch::Device device(a.device);
  auto model = load_model(a.model, a.task, a.quant_config, a.strict);
  model->module().to(device);
  model->tie_weights();
  auto all = io::load_safetensors(a.inputs);
  std::vector<std::pair<std::string, at::Tensor>> outputs;
  auto configure = [&](ModelInputs& in) {
    if (a.hidden) in.output_hidden_states = true;
    if (a.attentions) in.output_attentions = true;
  };
  if (all.count("step1_input_ids") || all.count("step1_inputs_embeds")) {
    ModelInputs s1 = inputs_with_prefix(all, "step1_", a.inputs, device);
    configure(s1);
    s1.use_cache = true;
    ModelOutput o1 = model->run(s1);
    for (auto& kv : o1.flatten("step1_")) outputs.push_back(kv);
    if (all.count("step2_input_ids") || all.count("step2_inputs_embeds")) {
      ModelInputs s2 = inputs_with_prefix(all, "step2_", a.inputs, device);
      configure(s2);
      s2.use_cache = true;
      s2.past_key_values = o1.past_key_values;
      for (auto& kv : model->run(s2).flatten("step2_")) outputs.push_back(kv);
    }
    if (all.count("full_input_ids") || all.count("full_inputs_embeds")) {
      ModelInputs f = inputs_with_prefix(all, "full_", a.inputs, device);
      configure(f);
      f.use_cache = false;
      for (auto& kv : model->run(f).flatten("full_")) outputs.push_back(kv);
    }
  } else {
    ModelInputs in = inputs_with_prefix(all, "", a.inputs, device);
    configure(in);
    for (auto& kv : model->run(in).flatten()) outputs.push_back(kv);
  }
  for (auto& [k, v] : outputs) v = v.to(torch::kCPU);
  io::save_safetensors(a.output, outputs, {{"format", "pt"}, {"producer", "qdqbert-cli infer"}});
  std::printf("wrote %zu tensors to %s\n", outputs.size(), a.output.c_str());
}

Register reg({"infer", "Run a QDQBERT model on the tensors of a safetensors file", [](CLI::App& app) {
                auto a = std::make_shared<InferArgs>();
                app.add_option("--model", a->model, "checkpoint folder (config.json + weights)")->required();
                std::string tasks;
                for (const auto& t : task_names()) tasks += (tasks.empty() ? "" : ", ") + t;
                app.add_option("--task", a->task, tasks + " (default: from config.json architectures)");
                app.add_option("--inputs", a->inputs, "safetensors with forward arguments by Python name")
                    ->required();
                app.add_option("--output", a->output, "safetensors to write, outputs by field name")->required();
                app.add_option("--quant-config", a->quant_config, "quantizer configuration JSON");
                add_strict_flag(app, a->strict);
                app.add_flag("--output-hidden-states", a->hidden, "also write hidden_states_<i>");
                app.add_flag("--output-attentions", a->attentions, "also write attentions_<i>");
                add_threads_option(app, a->threads);
                app.add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
                app.final_callback([a] { run(*a); });
              }});

}  // namespace
}  // namespace qdqbert::cli
