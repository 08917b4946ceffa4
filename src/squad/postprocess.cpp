#include "qdqbert/squad/postprocess.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "text/pystr.h"
#include "text/utf8.h"

namespace qdqbert::squad {

namespace {

struct Candidate {
  Offset offsets;
  float score;
  float start_logit;
  float end_logit;
  bool is_null = false;
};

// The largest |logit| accepted: a start + end score of two such logits still fits in float32 (3.4e38).
constexpr double kMaxLogit = 1e38;

// np.argsort(x)[-1 : -n - 1 : -1]: indices of the n largest values, largest first. Ties come out with
// the higher index first (a stable ascending sort, reversed); the fixtures avoid ties.

std::vector<int64_t> top_indices(const std::vector<float>& x, int64_t n) {
  std::vector<int64_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return x[a] < x[b]; });
  std::reverse(idx.begin(), idx.end());
  if (static_cast<int64_t>(idx.size()) > n) idx.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
  return idx;
}

}  // namespace

PostprocessResult postprocess_qa_predictions(const std::vector<Example>& examples, const std::vector<Feature>& features,
                                             const std::vector<std::vector<float>>& start_logits,
                                             const std::vector<std::vector<float>>& end_logits,
                                             const PostprocessOptions& options) {
  QDQBERT_CHECK(start_logits.size() == features.size() && end_logits.size() == features.size(),
                "squad: postprocess: got ", features.size(), " features but ", start_logits.size(),
                " start-logit rows and ", end_logits.size(), " end-logit rows");
  QDQBERT_CHECK(options.n_best_size > 0, "squad: postprocess: n_best_size must be positive, got ", options.n_best_size);
  QDQBERT_CHECK(options.max_answer_length > 0, "squad: postprocess: max_answer_length must be positive, got ",
                options.max_answer_length);
  std::unordered_map<std::string, size_t> example_index;
  for (size_t i = 0; i < examples.size(); ++i) example_index.emplace(examples[i].id, i);
  std::vector<std::vector<size_t>> features_per_example(examples.size());
  for (size_t i = 0; i < features.size(); ++i) {
    auto it = example_index.find(features[i].example_id);
    QDQBERT_CHECK(it != example_index.end(), "squad: postprocess: feature ", i, " has example_id \"",
                  features[i].example_id, "\", which is not a question of the dataset");
    QDQBERT_CHECK(start_logits[i].size() == end_logits[i].size() && !start_logits[i].empty(),
                  "squad: postprocess: feature ", i, " (question id \"", features[i].example_id, "\") has ",
                  start_logits[i].size(), " start logits and ", end_logits[i].size(), " end logits");
    for (const auto* logits : {&start_logits[i], &end_logits[i]}) {
      for (size_t k = 0; k < logits->size(); ++k) {
        const float x = (*logits)[k];
        QDQBERT_CHECK(std::isfinite(x) && std::fabs(x) <= kMaxLogit, "squad: postprocess: feature ", i,
                      " (question id \"", features[i].example_id, "\") has the ",
                      logits == &start_logits[i] ? "start" : "end", " logit ", x, " at token ", k,
                      "; logits must be finite and within +-1e38, so that a start + end score stays finite");
      }
    }
    features_per_example[it->second].push_back(i);
  }

  PostprocessResult result;
  for (size_t e = 0; e < examples.size(); ++e) {
    const Example& ex = examples[e];
    const std::u32string context = text::decode_utf8(ex.context, "squad", "context of question id \"" + ex.id + "\"");
    std::vector<Candidate> prelim;
    bool have_null = false;
    Candidate min_null{};
    for (size_t fi : features_per_example[e]) {
      const auto& sl = start_logits[fi];
      const auto& el = end_logits[fi];
      const auto& offsets = features[fi].offset_mapping;
      const float null_score = sl[0] + el[0];
      if (!have_null || min_null.score > null_score) {
        min_null = {{0, 0}, null_score, sl[0], el[0], true};
        have_null = true;
      }
      const auto starts = top_indices(sl, options.n_best_size);
      const auto ends = top_indices(el, options.n_best_size);
      const auto n_off = static_cast<int64_t>(offsets.size());
      for (int64_t s : starts) {
        for (int64_t t : ends) {
          if (s >= n_off || t >= n_off || !offsets[s] || !offsets[t]) continue;
          if (t < s || t - s + 1 > options.max_answer_length) continue;
          prelim.push_back({{offsets[s]->start, offsets[t]->end}, sl[s] + el[t], sl[s], el[t], false});
        }
      }
    }
    float null_score = 0;
    if (options.version_2_with_negative && have_null) {
      prelim.push_back(min_null);
      null_score = min_null.score;
    }
    // sorted(..., key=score, reverse=True) is stable.
    std::stable_sort(prelim.begin(), prelim.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    if (static_cast<int64_t>(prelim.size()) > options.n_best_size) prelim.resize(options.n_best_size);
    if (options.version_2_with_negative && have_null &&
        std::none_of(prelim.begin(), prelim.end(), [](const Candidate& c) {
          return c.offsets == Offset{0, 0};
        })) {
      prelim.push_back(min_null);
    }
    std::vector<NbestEntry> nbest;
    std::vector<float> scores;
    for (const auto& c : prelim) {
      nbest.push_back({c.start_logit, c.end_logit, text::slice(context, c.offsets.start, c.offsets.end), 0.f});
      scores.push_back(c.score);
    }
    if (nbest.empty() || (nbest.size() == 1 && nbest[0].text.empty())) {
      nbest.insert(nbest.begin(), {0.f, 0.f, "empty", 0.f});
      scores.insert(scores.begin(), 0.f);
    }
    const float max_score = *std::max_element(scores.begin(), scores.end());
    std::vector<float> exps(scores.size());
    double sum = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
      exps[i] = std::exp(scores[i] - max_score);
      sum += exps[i];
    }
    for (size_t i = 0; i < nbest.size(); ++i) nbest[i].probability = static_cast<float>(exps[i] / sum);

    std::string answer;
    if (!options.version_2_with_negative) {
      answer = nbest[0].text;
    } else {
      size_t i = 0;
      while (i < nbest.size() && nbest[i].text.empty()) ++i;
      if (i == nbest.size()) {
        answer = "";  // only reachable with empty spans; the reference would raise IndexError
        result.scores_diff[ex.id] = 0.0;
      } else {
        const float diff = null_score - nbest[i].start_logit - nbest[i].end_logit;
        result.scores_diff[ex.id] = diff;
        answer = static_cast<double>(diff) > options.null_score_diff_threshold ? std::string() : nbest[i].text;
      }
    }
    result.predictions.emplace_back(ex.id, answer);
    result.order.push_back(ex.id);
    result.nbest[ex.id] = std::move(nbest);
  }
  return result;
}

std::string PostprocessResult::predictions_json(int indent) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [id, txt] : predictions) j[id] = txt;
  return j.dump(indent, ' ', true);
}

std::string PostprocessResult::nbest_json(int indent) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& id : order) {
    auto& list = j[id] = nlohmann::ordered_json::array();
    for (const auto& n : nbest.at(id)) {
      nlohmann::ordered_json row;
      row["start_logit"] = static_cast<double>(n.start_logit);
      row["end_logit"] = static_cast<double>(n.end_logit);
      row["text"] = n.text;
      row["probability"] = static_cast<double>(n.probability);
      list.push_back(std::move(row));
    }
  }
  return j.dump(indent, ' ', true);
}

std::string PostprocessResult::null_odds_json(int indent) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& id : order) {
    auto it = scores_diff.find(id);
    if (it != scores_diff.end()) j[id] = it->second;
  }
  return j.dump(indent);
}

std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> read_logits(const std::string& path) {
  return parse_logits(io::read_file(path, "squad: logits file"), path);
}

std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> parse_logits(const std::string& text,
                                                                                         const std::string& path) {
  const nlohmann::json j = parse_json_document(text, "squad: " + path);
  auto rows = [&](const char* key) {
    QDQBERT_CHECK(j.is_object() && j.contains(key) && j[key].is_array(), "squad: ", path, ": missing array \"", key,
                  "\"");
    std::vector<std::vector<float>> out;
    for (size_t r = 0; r < j[key].size(); ++r) {
      const auto& row = j[key][r];
      QDQBERT_CHECK(row.is_array(), "squad: ", path, ": ", key, "[", r, "] must be an array of numbers");
      std::vector<float> v;
      v.reserve(row.size());
      for (const auto& x : row) {
        QDQBERT_CHECK(x.is_number(), "squad: ", path, ": ", key, "[", r, "] has a non-number ", x.dump());
        const double d = x.get<double>();
        QDQBERT_CHECK(std::fabs(d) <= kMaxLogit, "squad: ", path, ": ", key, "[", r, "][", v.size(), "] = ", x.dump(),
                      " is outside +-1e38; logits must be finite float32 values whose start + end sum stays finite");
        v.push_back(static_cast<float>(d));
      }
      out.push_back(std::move(v));
    }
    return out;
  };
  auto s = rows("start_logits");
  auto e = rows("end_logits");
  QDQBERT_CHECK(s.size() == e.size(), "squad: ", path, ": ", s.size(), " start_logits rows but ", e.size(),
                " end_logits rows");
  return {std::move(s), std::move(e)};
}

void write_text_file(const std::string& path, const std::string& text) {
  io::AtomicFile f(path);
  f.write(text);
  if (text.empty() || text.back() != '\n') f.write("\n");
  f.commit();
}

}  // namespace qdqbert::squad
