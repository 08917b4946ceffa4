#pragma once
/// \file
/// Answer extraction from start/end logits, exactly like `postprocess_qa_predictions` of the Hugging
/// Face question-answering examples (`utils_qa.py`). Torch-free.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"

namespace qdqbert::squad {

/// Mirrors `n_best_size`, `max_answer_length`, `version_2_with_negative`, `null_score_diff_threshold`.
struct PostprocessOptions {
  int64_t n_best_size = 20;
  int64_t max_answer_length = 30;
  bool version_2_with_negative = false;
  double null_score_diff_threshold = 0.0;
};

/// One n-best entry (the reference computes in float32).
struct NbestEntry {
  float start_logit = 0;
  float end_logit = 0;
  std::string text;
  float probability = 0;
};

struct PostprocessResult {
  /// (id, answer text) in example order.
  std::vector<std::pair<std::string, std::string>> predictions;
  std::map<std::string, std::vector<NbestEntry>> nbest;
  /// v2 only: null score minus the best non-null score, per example id.
  std::map<std::string, double> scores_diff;

  /// `{id: text}` in example order (predictions.json).
  std::string predictions_json(int indent = 4) const;
  /// `{id: [{start_logit, end_logit, text, probability}]}` (nbest_predictions.json).
  std::string nbest_json(int indent = 4) const;
  /// `{id: scores_diff}` (null_odds.json), in example order.
  std::string null_odds_json(int indent = 4) const;
  /// Keeps the example order for null_odds_json.
  std::vector<std::string> order;
};

/// Post-processes the logits of `features` (validation view: example_id + offset_mapping) into one
/// answer per example. `start_logits[i]` / `end_logits[i]` belong to `features[i]`.
PostprocessResult postprocess_qa_predictions(const std::vector<Example>& examples, const std::vector<Feature>& features,
                                             const std::vector<std::vector<float>>& start_logits,
                                             const std::vector<std::vector<float>>& end_logits,
                                             const PostprocessOptions& options);

/// Reads `{start_logits: [[float]], end_logits: [[float]]}` (the layout of the fixtures' logits_*.json).
std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> read_logits(const std::string& path);
/// read_logits on text already read (`path` names it in errors).
std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> parse_logits(const std::string& text,
                                                                                         const std::string& path);

/// Writes `text` to `path` atomically, ending with one newline (added when missing).
void write_text_file(const std::string& path, const std::string& text);

}  // namespace qdqbert::squad
