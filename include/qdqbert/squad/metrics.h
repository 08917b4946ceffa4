#pragma once
/// \file
/// EM/F1 exactly like the official SQuAD v1.1 and v2.0 evaluation scripts (as wrapped by the
/// Hugging Face `squad` / `squad_v2` metrics). Torch-free.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qdqbert/squad/dataset.h"

namespace qdqbert::squad {

/// `normalize_answer` of both scripts: Python str.lower(), drop ASCII punctuation, replace the words
/// a/an/the by a space, collapse Unicode whitespace.
std::string normalize_answer(const std::string& s);

/// EM of one pair (1 or 0). Identical in v1.1 and v2.0.
int exact_score(const std::string& prediction, const std::string& ground_truth);
/// F1 of one pair, v1.1 rules (0 when there is no common token, even for two empty answers).
double f1_score_v1(const std::string& prediction, const std::string& ground_truth);
/// F1 of one pair, v2.0 rules (if either side has no tokens: 1 when both are empty, else 0).
double f1_score_v2(const std::string& prediction, const std::string& ground_truth);

/// A question and its gold answer texts (`answers.text` of the HF metric's references).
struct Reference {
  std::string id;
  std::vector<std::string> answers;
};

/// A prediction as the HF metrics take it (`no_answer_probability` is used by v2 only).
struct Prediction {
  std::string id;
  std::string text;
  double no_answer_probability = 0.0;
};

struct QuestionScore {
  double exact = 0;
  double f1 = 0;
};

/// `squad` (v1.1) result.
struct V1Result {
  double exact_match = 0;
  double f1 = 0;
  /// Per predicted question: max EM / F1 over its gold answers.
  std::map<std::string, QuestionScore> per_question;
  /// Reference questions without a prediction (scored 0), in reference order.
  std::vector<std::string> missing;
  /// `{"exact_match", "f1"}` as the official script prints it.
  std::string to_json(int indent = -1) const;
};

/// `squad_v2` (v2.0) result.
struct V2Result {
  double exact = 0, f1 = 0;
  int64_t total = 0;
  bool has_has_ans = false, has_no_ans = false;  ///< whether the HasAns_* / NoAns_* fields exist
  double has_ans_exact = 0, has_ans_f1 = 0;
  int64_t has_ans_total = 0;
  double no_ans_exact = 0, no_ans_f1 = 0;
  int64_t no_ans_total = 0;
  double best_exact = 0, best_exact_thresh = 0, best_f1 = 0, best_f1_thresh = 0;
  /// Per predicted question, before the no-answer threshold is applied.
  std::map<std::string, QuestionScore> per_question_raw;
  /// Reference questions without a prediction (scored 0).
  std::vector<std::string> missing;
  /// The official v2.0 key layout; `with_best` adds best_exact/best_exact_thresh/best_f1/best_f1_thresh.
  std::string to_json(bool with_best = true, int indent = -1) const;
};

/// Official v1.1 evaluation. Every reference counts in the denominator; a question without
/// prediction scores 0. Throws when a reference has no gold answer (v1.1 needs one) or on an empty set.
V1Result evaluate_v1(const std::vector<Reference>& references, const std::vector<Prediction>& predictions);

/// Official v2.0 evaluation with `no_answer_threshold` (the script's --na-prob-thresh, default 1.0).
/// HasAns/NoAns split by whether a reference lists any answer text. A reference without prediction
/// scores 0 and still counts (the official script would crash on it); it is left out of the
/// best-threshold sweep's ordering.
V2Result evaluate_v2(const std::vector<Reference>& references, const std::vector<Prediction>& predictions,
                     double no_answer_threshold = 1.0);

/// The references of a dataset (answer texts in file order).
std::vector<Reference> references_from(const Dataset& dataset);

}  // namespace qdqbert::squad
