#include "qdqbert/models/outputs.h"

namespace qdqbert {

bool ModelInputs::set(const std::string& name, const at::Tensor& t) {
  static const std::pair<const char*, at::Tensor ModelInputs::*> fields[] = {
      {"input_ids", &ModelInputs::input_ids},
      {"attention_mask", &ModelInputs::attention_mask},
      {"token_type_ids", &ModelInputs::token_type_ids},
      {"position_ids", &ModelInputs::position_ids},
      {"head_mask", &ModelInputs::head_mask},
      {"inputs_embeds", &ModelInputs::inputs_embeds},
      {"encoder_hidden_states", &ModelInputs::encoder_hidden_states},
      {"encoder_attention_mask", &ModelInputs::encoder_attention_mask},
      {"labels", &ModelInputs::labels},
      {"start_positions", &ModelInputs::start_positions},
      {"end_positions", &ModelInputs::end_positions},
  };
  for (const auto& [n, field] : fields) {
    if (name == n) {
      this->*field = t;
      return true;
    }
  }
  return false;
}

std::vector<std::pair<std::string, at::Tensor>> ModelOutput::flatten(const std::string& prefix) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& n, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(prefix + n, t);
  };
  add("loss", loss);
  add("logits", logits);
  add("start_logits", start_logits);
  add("end_logits", end_logits);
  add("last_hidden_state", last_hidden_state);
  add("pooler_output", pooler_output);
  for (size_t i = 0; i < hidden_states.size(); ++i) add("hidden_states_" + std::to_string(i), hidden_states[i]);
  for (size_t i = 0; i < attentions.size(); ++i) add("attentions_" + std::to_string(i), attentions[i]);
  for (size_t i = 0; i < cross_attentions.size(); ++i) {
    add("cross_attentions_" + std::to_string(i), cross_attentions[i]);
  }
  for (size_t l = 0; l < past_key_values.size(); ++l) {
    for (size_t j = 0; j < past_key_values[l].size(); ++j) {
      add("past_key_values_" + std::to_string(l) + "_" + std::to_string(j), past_key_values[l][j]);
    }
  }
  return out;
}

}  // namespace qdqbert
