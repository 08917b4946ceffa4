#include "qdqbert/squad/metrics.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "qdqbert/error.h"
#include "text/pystr.h"
#include "text/utf8.h"

namespace qdqbert::squad {

namespace {

bool is_ascii_punctuation(char32_t c) {
  // Python's string.punctuation: every printable ASCII character that is not alphanumeric or space.
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

// re.sub(r"\b(a|an|the)\b", " ", s) with Unicode word characters.
std::u32string remove_articles(const std::u32string& s) {
  static const std::u32string kArticles[] = {U"a", U"an", U"the"};
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    bool replaced = false;
    if (i == 0 || !text::is_word(s[i - 1])) {
      for (const auto& art : kArticles) {  // alternation order of the pattern
        const size_t end = i + art.size();
        if (end <= s.size() && s.compare(i, art.size(), art) == 0 && (end == s.size() || !text::is_word(s[end]))) {
          out.push_back(U' ');
          i = end;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(s[i++]);
  }
  return out;
}

std::vector<std::u32string> normalized_tokens(const std::string& s) {
  std::u32string u = text::lower(text::decode_utf8(s, "squad", "answer"));
  u.erase(std::remove_if(u.begin(), u.end(), is_ascii_punctuation), u.end());
  return text::split(remove_articles(u));
}

std::u32string join(const std::vector<std::u32string>& toks) {
  std::u32string out;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) out.push_back(U' ');
    out += toks[i];
  }
  return out;
}

// Size of the multiset intersection (collections.Counter & Counter).
int64_t common_count(const std::vector<std::u32string>& a, const std::vector<std::u32string>& b) {
  std::unordered_map<std::u32string, int64_t> counts;
  for (const auto& t : b) ++counts[t];
  int64_t same = 0;
  for (const auto& t : a) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  return same;
}

double f1_from_tokens(const std::vector<std::u32string>& pred, const std::vector<std::u32string>& gold) {
  const int64_t same = common_count(pred, gold);
  if (same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(same) / static_cast<double>(gold.size());
  return (2 * precision * recall) / (precision + recall);
}

}  // namespace

std::string normalize_answer(const std::string& s) { return text::encode_utf8(join(normalized_tokens(s))); }

int exact_score(const std::string& prediction, const std::string& ground_truth) {
  return normalize_answer(prediction) == normalize_answer(ground_truth) ? 1 : 0;
}

double f1_score_v1(const std::string& prediction, const std::string& ground_truth) {
  return f1_from_tokens(normalized_tokens(prediction), normalized_tokens(ground_truth));
}

double f1_score_v2(const std::string& prediction, const std::string& ground_truth) {
  const auto pred = normalized_tokens(prediction);
  const auto gold = normalized_tokens(ground_truth);
  if (pred.empty() || gold.empty()) return pred == gold ? 1.0 : 0.0;
  return f1_from_tokens(pred, gold);
}

namespace {

// dict(predictions): a later prediction for the same id wins, as in the HF metrics.
std::unordered_map<std::string, const Prediction*> index_predictions(const std::vector<Prediction>& predictions) {
  std::unordered_map<std::string, const Prediction*> out;
  for (const auto& p : predictions) out[p.id] = &p;
  return out;
}

}  // namespace

V1Result evaluate_v1(const std::vector<Reference>& references, const std::vector<Prediction>& predictions) {
  QDQBERT_CHECK(!references.empty(), "squad: evaluate_v1: no reference questions");
  const auto preds = index_predictions(predictions);
  V1Result r;
  double em_sum = 0, f1_sum = 0;
  for (const auto& ref : references) {
    auto it = preds.find(ref.id);
    if (it == preds.end()) {  // counts as 0
      r.missing.push_back(ref.id);
      continue;
    }
    QDQBERT_CHECK(!ref.answers.empty(), "squad: evaluate_v1: question id \"", ref.id,
                  "\" has no gold answer (an unanswerable question needs the v2 metric: --version 2)");
    QuestionScore q;
    for (const auto& gold : ref.answers) {
      q.exact = std::max(q.exact, static_cast<double>(exact_score(it->second->text, gold)));
      q.f1 = std::max(q.f1, f1_score_v1(it->second->text, gold));
    }
    em_sum += q.exact;
    f1_sum += q.f1;
    r.per_question[ref.id] = q;
  }
  const double total = static_cast<double>(references.size());
  r.exact_match = 100.0 * em_sum / total;
  r.f1 = 100.0 * f1_sum / total;
  return r;
}

namespace {

struct BestThresh {
  double score;
  double thresh;
};

// find_best_thresh of evaluate-v2.0.py: sweep the no-answer probabilities in ascending order.
BestThresh find_best_thresh(const std::vector<Reference>& refs, const std::vector<bool>& has_ans,
                            const std::vector<const Prediction*>& pred_of, const std::vector<double>& raw) {
  double cur = 0;
  for (bool h : has_ans) cur += h ? 0 : 1;
  double best = cur, best_thresh = 0.0;
  // sorted(na_probs, key=na_probs.get): stable over the order of the predictions dict.
  std::vector<size_t> order;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (pred_of[i]) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return pred_of[a]->no_answer_probability < pred_of[b]->no_answer_probability;
  });
  for (size_t i : order) {
    double diff;
    if (has_ans[i]) {
      diff = raw[i];
    } else {
      diff = pred_of[i]->text.empty() ? 0 : -1;
    }
    cur += diff;
    if (cur > best) {
      best = cur;
      best_thresh = pred_of[i]->no_answer_probability;
    }
  }
  // The official script divides by the number of predicted questions, which is every question there
  // (it crashes on a missing prediction); dividing by all keeps best_* comparable with exact/f1.
  return {100.0 * best / static_cast<double>(refs.size()), best_thresh};
}

}  // namespace

V2Result evaluate_v2(const std::vector<Reference>& references, const std::vector<Prediction>& predictions,
                     double no_answer_threshold) {
  QDQBERT_CHECK(!references.empty(), "squad: evaluate_v2: no reference questions");
  const auto preds = index_predictions(predictions);
  // The sweep orders by the predictions dict's insertion order on ties; keep references in the order
  // of first prediction occurrence for that.
  std::vector<Reference> refs = references;
  {
    std::unordered_map<std::string, size_t> first;
    for (size_t i = 0; i < predictions.size(); ++i) first.emplace(predictions[i].id, i);
    std::stable_sort(refs.begin(), refs.end(), [&](const Reference& a, const Reference& b) {
      auto ia = first.find(a.id), ib = first.find(b.id);
      const size_t ka = ia == first.end() ? predictions.size() : ia->second;
      const size_t kb = ib == first.end() ? predictions.size() : ib->second;
      return ka < kb;
    });
  }
  const size_t n = refs.size();
  std::vector<bool> has_ans(n);
  std::vector<const Prediction*> pred_of(n, nullptr);
  std::vector<double> exact_raw(n, 0), f1_raw(n, 0), exact_th(n, 0), f1_th(n, 0);
  V2Result r;
  for (size_t i = 0; i < n; ++i) {
    const Reference& ref = refs[i];
    has_ans[i] = !ref.answers.empty();
    auto it = preds.find(ref.id);
    if (it == preds.end()) {
      r.missing.push_back(ref.id);
      continue;
    }
    pred_of[i] = it->second;
    std::vector<std::string> gold;
    for (const auto& a : ref.answers) {
      if (!normalize_answer(a).empty()) gold.push_back(a);
    }
    if (gold.empty()) gold.push_back("");
    for (const auto& g : gold) {
      exact_raw[i] = std::max(exact_raw[i], static_cast<double>(exact_score(it->second->text, g)));
      f1_raw[i] = std::max(f1_raw[i], f1_score_v2(it->second->text, g));
    }
    r.per_question_raw[ref.id] = {exact_raw[i], f1_raw[i]};
    if (it->second->no_answer_probability > no_answer_threshold) {
      exact_th[i] = f1_th[i] = has_ans[i] ? 0.0 : 1.0;
    } else {
      exact_th[i] = exact_raw[i];
      f1_th[i] = f1_raw[i];
    }
  }
  double e_all = 0, f_all = 0, e_has = 0, f_has = 0, e_no = 0, f_no = 0;
  for (size_t i = 0; i < n; ++i) {
    e_all += exact_th[i];
    f_all += f1_th[i];
    if (has_ans[i]) {
      e_has += exact_th[i];
      f_has += f1_th[i];
      ++r.has_ans_total;
    } else {
      e_no += exact_th[i];
      f_no += f1_th[i];
      ++r.no_ans_total;
    }
  }
  r.total = static_cast<int64_t>(n);
  r.exact = 100.0 * e_all / static_cast<double>(n);
  r.f1 = 100.0 * f_all / static_cast<double>(n);
  r.has_has_ans = r.has_ans_total > 0;
  r.has_no_ans = r.no_ans_total > 0;
  if (r.has_has_ans) {
    r.has_ans_exact = 100.0 * e_has / static_cast<double>(r.has_ans_total);
    r.has_ans_f1 = 100.0 * f_has / static_cast<double>(r.has_ans_total);
  }
  if (r.has_no_ans) {
    r.no_ans_exact = 100.0 * e_no / static_cast<double>(r.no_ans_total);
    r.no_ans_f1 = 100.0 * f_no / static_cast<double>(r.no_ans_total);
  }
  const BestThresh be = find_best_thresh(refs, has_ans, pred_of, exact_raw);
  const BestThresh bf = find_best_thresh(refs, has_ans, pred_of, f1_raw);
  r.best_exact = be.score;
  r.best_exact_thresh = be.thresh;
  r.best_f1 = bf.score;
  r.best_f1_thresh = bf.thresh;
  return r;
}

namespace {

// json.dumps of a flat object: Python's separators (", " and ": ") on one line, or indent like nlohmann.
std::string python_dumps(const nlohmann::ordered_json& j, int indent) {
  if (indent >= 0) return j.dump(indent);
  std::string out = "{";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it != j.begin()) out += ", ";
    out += nlohmann::ordered_json(it.key()).dump() + ": " + it.value().dump();
  }
  return out + "}";
}

}  // namespace

std::string V1Result::to_json(int indent) const {
  nlohmann::ordered_json j;
  j["exact_match"] = exact_match;
  j["f1"] = f1;
  return python_dumps(j, indent);
}

std::string V2Result::to_json(bool with_best, int indent) const {
  nlohmann::ordered_json j;
  j["exact"] = exact;
  j["f1"] = f1;
  j["total"] = total;
  if (has_has_ans) {
    j["HasAns_exact"] = has_ans_exact;
    j["HasAns_f1"] = has_ans_f1;
    j["HasAns_total"] = has_ans_total;
  }
  if (has_no_ans) {
    j["NoAns_exact"] = no_ans_exact;
    j["NoAns_f1"] = no_ans_f1;
    j["NoAns_total"] = no_ans_total;
  }
  if (with_best) {
    j["best_exact"] = best_exact;
    j["best_exact_thresh"] = best_exact_thresh;
    j["best_f1"] = best_f1;
    j["best_f1_thresh"] = best_f1_thresh;
  }
  return python_dumps(j, indent);
}

std::vector<Reference> references_from(const Dataset& dataset) {
  std::vector<Reference> out;
  out.reserve(dataset.examples.size());
  for (const auto& e : dataset.examples) {
    Reference r{e.id, {}};
    for (const auto& a : e.answers) r.answers.push_back(a.text);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace qdqbert::squad
