#pragma once
// Builds the model of a tests/data/model/<case> fixture exactly as the reference did.
#include <torch/torch.h>

#include <regex>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/nn/quant_descriptor_json.h"
#include "qdqbert/workflow/calibrate.h"
#include "test_util.h"

namespace qdqbert::testing {

struct ModelCase {
  std::string name, dir;
  nlohmann::json spec;
  Config config;
  std::shared_ptr<TaskModel> model;
  std::map<std::string, at::Tensor> inputs, expected;
};

inline Config case_config(const nlohmann::json& spec, const std::string& dir) {
  Config c = Config::from_json_file(dir + "/model/config.json");
  c.quant_desc_input = spec["quant"]["input_desc"].get<nn::QuantDescriptor>();
  c.quant_desc_weight = spec["quant"]["weight_desc"].get<nn::QuantDescriptor>();
  return c;
}

inline void apply_overrides(TaskModel& m, const nlohmann::json& spec) {
  for (const auto& o : spec["quant"]["overrides"]) {
    const std::string suffix = o["suffix"], attr = o["attr"];
    for (auto& [name, q] : named_quantizers(m.module())) {
      if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      if (attr == "unsigned") q->set_unsigned(o["value"].get<bool>());
      else if (attr == "narrow_range") q->set_narrow_range(o["value"].get<bool>());
      else if (attr == "num_bits") q->set_num_bits(o["value"].get<int64_t>());
      else throw std::runtime_error("unknown override attribute " + attr);
    }
  }
}

/// Loads the case; `with_amax=false` drops every `_amax` from the checkpoint (to calibrate ourselves).
inline ModelCase load_case(const std::string& name, bool with_amax = true) {
  ModelCase c;
  c.name = name;
  c.dir = data_path("model/" + name);
  c.spec = read_json(c.dir + "/case.json");
  c.config = case_config(c.spec, c.dir);
  c.model = create_model(c.spec["task"].get<std::string>(), c.config);
  apply_overrides(*c.model, c.spec);
  auto state = io::read_checkpoint(c.dir + "/model");
  if (!with_amax) {
    for (auto it = state.begin(); it != state.end();) {
      const std::string& k = it->first;
      it = k.size() > 6 && k.compare(k.size() - 6, 6, "._amax") == 0 && k.find("clip") == std::string::npos &&
                   !c.spec["quant"]["input_desc"]["learn_amax"].get<bool>()
               ? state.erase(it)
               : std::next(it);
    }
  }
  io::load_state_dict(*c.model, state, /*strict=*/true, c.dir);
  if (c.spec["quant"]["state"] == "disabled") {
    for (auto& [n, q] : named_quantizers(c.model->module())) q->disable();
  }
  if (c.spec["mode"] == "train") c.model->module().train();
  else c.model->module().eval();
  c.inputs = io::load_safetensors(c.dir + "/inputs.safetensors");
  c.expected = io::load_safetensors(c.dir + "/expected.safetensors");
  return c;
}

/// Inputs without a prefix (or with `prefix`, stripped), plus the call's output switches.
inline ModelInputs case_inputs(const ModelCase& c, const std::string& prefix = "") {
  ModelInputs in;
  for (const auto& [k, v] : c.inputs) {
    if (!prefix.empty()) {
      if (k.rfind(prefix, 0) == 0) in.set(k.substr(prefix.size()), v);
    } else if (k.find('_') == std::string::npos || (k.rfind("step", 0) != 0 && k.rfind("full_", 0) != 0)) {
      in.set(k, v);
    }
  }
  // Unprefixed tensors (e.g. encoder_hidden_states) apply to every step.
  if (!prefix.empty()) {
    for (const auto& [k, v] : c.inputs) {
      if (k.rfind("step", 0) != 0 && k.rfind("full_", 0) != 0) in.set(k, v);
    }
  }
  const auto& call = c.spec["call"];
  if (call.is_object()) {
    if (call.contains("output_attentions") && call["output_attentions"].is_boolean()) {
      in.output_attentions = call["output_attentions"].get<bool>();
    }
    if (call.contains("output_hidden_states") && call["output_hidden_states"].is_boolean()) {
      in.output_hidden_states = call["output_hidden_states"].get<bool>();
    }
  }
  return in;
}

/// Relative bound on one float32 activation of `config`'s encoder against the same value computed with
/// another BLAS kernel (tests/data/README.md, "Tolerances"): each GEMM / LayerNorm stage adds rounding
/// error of about sqrt(K) float32 ulps of the value's scale when its K-term sums are summed in another
/// order (K = the widest reduction, max(hidden, intermediate)), and an encoder layer has 4 such stages in a
/// row (q/k/v + scores, context + output + LayerNorm, FFN in, FFN out + LayerNorm). So
///   rtol = 4 * num_hidden_layers * sqrt(K) * 2^-23.
/// Tiny fixtures (2 layers, K 37): 5.8e-6, i.e. ~50 ulp; all-MiniLM-L6-v2 (6 layers, K 1536): 1.1e-4.
inline double float32_encoder_rtol(const Config& c) {
  const double k = static_cast<double>(std::max(c.hidden_size, c.intermediate_size));
  return 4.0 * static_cast<double>(c.num_hidden_layers) * std::sqrt(k) * 1.1920928955078125e-7;
}

/// The SGD loop of a training case, as its case.json spells it in `call.forward`
/// ("torch.optim.SGD(model.parameters(), lr=0.1) (momentum 0, weight_decay 0); repeat 3x: ...").
struct SgdLoop {
  double lr = 0, momentum = 0, weight_decay = 0;
  int steps = 0;
};

inline SgdLoop sgd_loop(const ModelCase& c) {
  const auto& call = c.spec.at("call");
  if (!call.is_object() || !call.contains("forward") || !call["forward"].is_string()) {
    throw std::runtime_error(c.name + ": case.json has no call.forward text");
  }
  const std::string text = call["forward"].get<std::string>();
  auto number = [&](const std::string& pattern, bool required, double fallback) {
    std::smatch m;
    if (std::regex_search(text, m, std::regex(pattern))) return std::stod(m[1].str());
    if (required) throw std::runtime_error(c.name + ": cannot read /" + pattern + "/ from call.forward: " + text);
    return fallback;
  };
  const std::string num = "([-+]?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)";
  if (text.find("SGD") == std::string::npos) throw std::runtime_error(c.name + ": not an SGD loop: " + text);
  SgdLoop loop;
  loop.lr = number("lr\\s*=\\s*" + num, true, 0);
  loop.momentum = number("momentum\\s*=?\\s*" + num, false, 0);
  loop.weight_decay = number("weight_decay\\s*=?\\s*" + num, false, 0);
  loop.steps = static_cast<int>(number("repeat\\s+" + num + "\\s*x", true, 0));
  return loop;
}

/// The fixtures' tiny architecture (vocab 103, hidden 32, 2 layers, 4 heads, intermediate 37, 64
/// positions) with default 8-bit descriptors (per-row weights), for tests that build fresh models.
inline Config tiny_config() {
  Config c;
  c.vocab_size = 103;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 37;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.2;
  c.quant_desc_input = nn::QuantDescriptor();
  c.quant_desc_weight = nn::quant_desc_8bit_linear_weight_per_row();
  return c;
}

/// calib.safetensors batches in order.
inline std::vector<ModelInputs> calib_batches(const ModelCase& c) {
  return workflow::read_calibration_batches(c.dir + "/calib.safetensors");
}

// n batches of `rows` x `len` random token ids (5..102) with the second half of the first row padded, from
// `seed`: text-like inputs for the tiny models of the workflow tests.
inline std::vector<ModelInputs> random_text_batches(int64_t n, int64_t rows, int64_t len, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<ModelInputs> v;
  for (int64_t i = 0; i < n; ++i) {
    ModelInputs in;
    in.input_ids = torch::randint(5, 103, {rows, len}, torch::kLong);
    in.attention_mask = torch::ones({rows, len}, torch::kLong);
    in.attention_mask.index_put_({0, torch::indexing::Slice(len / 2, torch::indexing::None)}, 0);
    v.push_back(in);
  }
  return v;
}

}  // namespace qdqbert::testing
