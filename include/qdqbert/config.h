#pragma once
/// \file
/// qdqbert::Config (alias QDQBertConfig) — mirrors transformers' `QDQBertConfig` plus the inherited
/// `PretrainedConfig` fields the models use. Every field has the Python JSON key and default. Keys this
/// struct does not model survive a load/save round trip untouched. Torch-free.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/nn/quant_descriptor.h"

namespace qdqbert {

struct Config {
  // QDQBertConfig arguments.
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  bool use_cache = true;
  std::optional<int64_t> pad_token_id = 1;
  std::optional<int64_t> bos_token_id = 0;
  std::optional<int64_t> eos_token_id = 2;

  // Inherited PretrainedConfig fields and extra keys the models read.
  bool is_decoder = false;
  bool add_cross_attention = false;
  /// id2label; num_labels() is its size (default {0: LABEL_0, 1: LABEL_1}).
  std::map<int64_t, std::string> id2label = {{0, "LABEL_0"}, {1, "LABEL_1"}};
  std::map<std::string, int64_t> label2id = {{"LABEL_0", 0}, {"LABEL_1", 1}};
  /// "regression", "single_label_classification", "multi_label_classification" or unset.
  std::optional<std::string> problem_type;
  std::string position_embedding_type = "absolute";
  std::optional<double> classifier_dropout;
  bool tie_word_embeddings = true;
  int64_t chunk_size_feed_forward = 0;
  bool output_attentions = false;
  bool output_hidden_states = false;
  std::optional<std::vector<std::string>> architectures;

  /// Quantizer descriptors for this model (written to config.json as "quantization_config"); unset =
  /// the process-wide defaults at construction time (nn::default_quant_desc_input/weight).
  std::optional<nn::QuantDescriptor> quant_desc_input;
  std::optional<nn::QuantDescriptor> quant_desc_weight;

  /// Every key of the JSON this config was read from, as text, so unknown keys round-trip.
  std::string raw_json = "{}";

  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  /// This config without what only a model's top needs (the label maps and raw_json): the copy each
  /// encoder module keeps, so that a config.json with millions of labels is held once, not once a module.
  Config structure() const;
  /// Resets id2label/label2id to n generic labels (Python `num_labels` setter).
  void set_num_labels(int64_t n);
  int64_t head_size() const { return hidden_size / num_attention_heads; }
  nn::QuantDescriptor input_desc() const;
  nn::QuantDescriptor weight_desc() const;

  /// Throws qdqbert::Error for inconsistent values (hidden_size not divisible by heads, unknown
  /// activation or position embedding type, non-positive sizes, a layer_norm_eps that is not a positive
  /// finite number, probabilities outside [0, 1]).
  void validate() const;

  static Config from_json_string(const std::string& text, const std::string& source = "<string>");
  static Config from_json_file(const std::string& path);
  /// Full JSON (sorted keys, indent 2) like `to_json_file(use_diff=False)`, unknown keys included.
  std::string to_json_string() const;
  /// Atomic write.
  void to_json_file(const std::string& path) const;
};

using QDQBertConfig = Config;

/// Names accepted for hidden_act.
const std::vector<std::string>& supported_activations();

}  // namespace qdqbert
