#pragma once
/// \file
/// Model inputs and outputs, shaped like the Hugging Face argument lists and output classes.

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qdqbert {

/// Per layer: (self key, self value[, cross key, cross value]), each [batch, heads, seq, head_size].
using PastKeyValues = std::vector<std::vector<at::Tensor>>;

/// Keyword arguments of the Python forward calls (an undefined tensor = None).
struct ModelInputs {
  at::Tensor input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds;
  at::Tensor encoder_hidden_states, encoder_attention_mask;
  PastKeyValues past_key_values;
  std::optional<bool> use_cache, output_attentions, output_hidden_states;
  at::Tensor labels, start_positions, end_positions;
  /// Sets a tensor by its Python argument name; returns false for an unknown name.
  bool set(const std::string& name, const at::Tensor& t);
};

/// The union of the HF output classes' fields (BaseModelOutputWithPoolingAndCrossAttentions,
/// CausalLMOutputWithCrossAttentions, MaskedLMOutput, SequenceClassifierOutput, ...): each head fills
/// the fields its Python class has and leaves the others undefined/empty.
struct ModelOutput {
  at::Tensor loss;
  at::Tensor logits;
  at::Tensor start_logits, end_logits;
  at::Tensor last_hidden_state, pooler_output;
  std::vector<at::Tensor> hidden_states;     ///< embeddings output + one per layer (output_hidden_states)
  std::vector<at::Tensor> attentions;        ///< one per layer (output_attentions)
  std::vector<at::Tensor> cross_attentions;  ///< one per layer (output_attentions with cross-attention)
  PastKeyValues past_key_values;             ///< decoder cache (use_cache)

  /// Every defined output by its flat name: loss, logits, ..., hidden_states_<i>, attentions_<i>,
  /// cross_attentions_<i>, past_key_values_<layer>_<j>; each name prefixed with `prefix`.
  std::vector<std::pair<std::string, at::Tensor>> flatten(const std::string& prefix = "") const;
};

using BaseModelOutputWithPoolingAndCrossAttentions = ModelOutput;
using CausalLMOutputWithCrossAttentions = ModelOutput;
using MaskedLMOutput = ModelOutput;
using SequenceClassifierOutput = ModelOutput;
using NextSentencePredictorOutput = ModelOutput;
using MultipleChoiceModelOutput = ModelOutput;
using TokenClassifierOutput = ModelOutput;
using QuestionAnsweringModelOutput = ModelOutput;

}  // namespace qdqbert
