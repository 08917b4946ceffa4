#include "qdqbert/squad/features.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/template.h"
#include "text/utf8.h"

namespace qdqbert::squad {

std::vector<std::pair<int64_t, int64_t>> context_windows(int64_t num_tokens, int64_t window, int64_t stride) {
  QDQBERT_CHECK(window > 0, "squad: context window budget must be positive, got ", window);
  if (num_tokens <= window) return {{0, num_tokens}};
  QDQBERT_CHECK(stride >= 0 && stride < window, "squad: doc_stride ", stride,
                " must be smaller than the context budget per window (", window, " tokens)");
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& [begin, end] : tokenization::overflow_windows(static_cast<size_t>(num_tokens),
                                                                 static_cast<size_t>(window), static_cast<size_t>(stride))) {
    out.emplace_back(static_cast<int64_t>(begin), static_cast<int64_t>(end));
  }
  return out;
}

std::pair<int64_t, int64_t> train_labels(const Example& example, const std::vector<int64_t>& input_ids,
                                         const std::vector<int>& sequence_ids, const std::vector<Offset>& offsets,
                                         int64_t cls_token_id) {
  const auto n = static_cast<int64_t>(input_ids.size());
  int64_t cls_index = 0;
  {
    auto it = std::find(input_ids.begin(), input_ids.end(), cls_token_id);
    QDQBERT_CHECK(it != input_ids.end(), "squad: question id \"", example.id, "\": no [CLS] token in the window");
    cls_index = it - input_ids.begin();
  }
  if (example.answers.empty()) return {cls_index, cls_index};
  const int64_t start_char = example.answers[0].answer_start;
  const int64_t end_char = start_char + text::code_point_length(example.answers[0].text);
  int64_t s = 0;
  while (s < n && sequence_ids[s] != 1) ++s;
  int64_t e = n - 1;
  while (e >= 0 && sequence_ids[e] != 1) --e;
  if (s >= n || e < 0) return {cls_index, cls_index};  // no context token in the window
  if (!(offsets[s].start <= start_char && offsets[e].end >= end_char)) return {cls_index, cls_index};
  // The reference scans forward over every following position (final [SEP] and padding included,
  // whose offsets are [0, 0]); reproduced on purpose.
  while (s < n && offsets[s].start <= start_char) ++s;
  while (e >= 0 && offsets[e].end >= end_char) --e;
  return {s - 1, e + 1};
}

std::vector<Feature> build_features(const std::vector<Example>& examples, const TextEncoder& encoder,
                                    const FeatureOptions& options) {
  QDQBERT_CHECK(options.max_seq_length > 3, "squad: max_seq_length must be greater than 3, got ",
                options.max_seq_length);
  QDQBERT_CHECK(options.doc_stride >= 0, "squad: doc_stride must be non-negative, got ", options.doc_stride);
  const int64_t cls = encoder.cls_token_id(), sep = encoder.sep_token_id(), pad = encoder.pad_token_id();
  std::vector<Feature> out;
  EncodedText c;
  for (size_t ei = 0; ei < examples.size(); ++ei) {
    const Example& ex = examples[ei];
    // The question is tokenized as written: the reference (run_quant_qa.py) does not left-strip it, so
    // question offsets count its leading spaces (WordPiece ids are the same either way).
    const EncodedText q = encoder.encode(ex.question);
    // Questions of one paragraph share its context: tokenize it once.
    if (ei == 0 || ex.context != examples[ei - 1].context) c = encoder.encode(ex.context);
    QDQBERT_CHECK(q.ids.size() == q.offsets.size() && c.ids.size() == c.offsets.size(), "squad: question id \"", ex.id,
                  "\": the encoder returned ids and offsets of different lengths");
    const auto q_len = static_cast<int64_t>(q.ids.size());
    const auto c_len = static_cast<int64_t>(c.ids.size());
    const int64_t budget = options.max_seq_length - 3 - q_len;
    QDQBERT_CHECK(budget > 0, "squad: question id \"", ex.id, "\": the question has ", q_len,
                  " tokens, which leaves no room for context with max_seq_length ", options.max_seq_length);
    std::vector<std::pair<int64_t, int64_t>> windows;
    try {
      windows = context_windows(c_len, budget, options.doc_stride);
    } catch (const Error& err) {
      fail(err.what(), " (question id \"", ex.id, "\", ", q_len, " question tokens)");
    }
    for (const auto& [begin, end] : windows) {
      Feature f;
      f.feature_index = static_cast<int64_t>(out.size());
      f.example_id = ex.id;
      f.example_index = static_cast<int64_t>(ei);
      auto push = [&f](int64_t id, int64_t type, int seq, Offset off) {
        f.input_ids.push_back(id);
        f.token_type_ids.push_back(type);
        f.attention_mask.push_back(1);
        f.sequence_ids.push_back(seq);
        f.raw_offsets.push_back(off);
      };
      push(cls, 0, -1, {0, 0});
      for (int64_t i = 0; i < q_len; ++i) push(q.ids[i], 0, 0, q.offsets[i]);
      push(sep, 0, -1, {0, 0});
      for (int64_t i = begin; i < end; ++i) push(c.ids[i], 1, 1, c.offsets[i]);
      push(sep, 1, -1, {0, 0});
      if (options.pad_to_max_length) {
        while (static_cast<int64_t>(f.input_ids.size()) < options.max_seq_length) {
          push(pad, 0, -1, {0, 0});
          f.attention_mask.back() = 0;
        }
      }
      f.offset_mapping.reserve(f.raw_offsets.size());
      for (size_t k = 0; k < f.raw_offsets.size(); ++k) {
        f.offset_mapping.push_back(f.sequence_ids[k] == 1 ? std::optional<Offset>(f.raw_offsets[k]) : std::nullopt);
      }
      std::tie(f.start_position, f.end_position) = train_labels(ex, f.input_ids, f.sequence_ids, f.raw_offsets, cls);
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string features_to_json(const std::vector<Feature>& features, int64_t num_examples,
                             const std::string& config_json) {
  using nlohmann::ordered_json;
  ordered_json root = ordered_json::object();
  if (!config_json.empty()) root["config"] = parse_ordered_json(config_json, "squad features: config");
  root["num_examples"] = num_examples;
  ordered_json val = ordered_json::array(), train = ordered_json::array();
  for (const auto& f : features) {
    ordered_json v;
    v["feature_index"] = f.feature_index;
    v["example_id"] = f.example_id;
    v["overflow_to_sample_mapping"] = f.example_index;
    v["input_ids"] = f.input_ids;
    v["token_type_ids"] = f.token_type_ids;
    v["attention_mask"] = f.attention_mask;
    ordered_json offs = ordered_json::array(), raw = ordered_json::array(), seq = ordered_json::array();
    for (size_t k = 0; k < f.input_ids.size(); ++k) {
      if (k < f.offset_mapping.size() && f.offset_mapping[k]) {
        offs.push_back({f.offset_mapping[k]->start, f.offset_mapping[k]->end});
      } else {
        offs.push_back(nullptr);
      }
      if (k < f.raw_offsets.size()) raw.push_back({f.raw_offsets[k].start, f.raw_offsets[k].end});
      if (k < f.sequence_ids.size()) {
        if (f.sequence_ids[k] < 0) {
          seq.push_back(nullptr);
        } else {
          seq.push_back(f.sequence_ids[k]);
        }
      }
    }
    v["offset_mapping"] = offs;
    v["sequence_ids"] = seq;
    val.push_back(std::move(v));
    ordered_json t;
    t["feature_index"] = f.feature_index;
    t["overflow_to_sample_mapping"] = f.example_index;
    t["input_ids"] = f.input_ids;
    t["token_type_ids"] = f.token_type_ids;
    t["attention_mask"] = f.attention_mask;
    t["offset_mapping"] = raw;
    t["start_positions"] = f.start_position;
    t["end_positions"] = f.end_position;
    train.push_back(std::move(t));
  }
  root["validation_features"] = std::move(val);
  root["train_features"] = std::move(train);
  return root.dump(-1, ' ', true);
}

std::vector<Feature> read_validation_features(const std::string& path) {
  return parse_validation_features(io::read_file(path, "squad: features file"), path);
}

std::vector<Feature> parse_validation_features(const std::string& text, const std::string& path) {
  using nlohmann::json;
  const json root = parse_json_document(text, "squad: " + path);
  QDQBERT_CHECK(root.is_object() && root.contains("validation_features") && root["validation_features"].is_array(),
                "squad: ", path, ": missing array \"validation_features\"");
  std::vector<Feature> out;
  const json& rows = root["validation_features"];
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& r = rows[i];
    const std::string where = path + ": validation_features[" + std::to_string(i) + "]";
    QDQBERT_CHECK(r.is_object() && r.contains("example_id") && r["example_id"].is_string(), "squad: ", where,
                  ": missing string \"example_id\"");
    QDQBERT_CHECK(r.contains("offset_mapping") && r["offset_mapping"].is_array(), "squad: ", where, " (question id \"",
                  r["example_id"].get<std::string>(), "\"): missing array \"offset_mapping\"");
    Feature f;
    f.feature_index = r.value("feature_index", static_cast<int64_t>(i));
    f.example_id = r["example_id"].get<std::string>();
    f.example_index = r.value("overflow_to_sample_mapping", int64_t{-1});
    try {
      if (r.contains("input_ids")) f.input_ids = r["input_ids"].get<std::vector<int64_t>>();
      if (r.contains("token_type_ids")) f.token_type_ids = r["token_type_ids"].get<std::vector<int64_t>>();
      if (r.contains("attention_mask")) f.attention_mask = r["attention_mask"].get<std::vector<int64_t>>();
      for (const auto& o : r["offset_mapping"]) {
        if (o.is_null()) {
          f.offset_mapping.push_back(std::nullopt);
        } else {
          QDQBERT_CHECK(o.is_array() && o.size() == 2, "offset entry ", o.dump(), " is not [start, end] or null");
          f.offset_mapping.push_back(Offset{o[0].get<int64_t>(), o[1].get<int64_t>()});
        }
      }
      if (r.contains("sequence_ids")) {
        for (const auto& s : r["sequence_ids"]) f.sequence_ids.push_back(s.is_null() ? -1 : s.get<int>());
      }
    } catch (const std::exception& e) {
      fail("squad: ", where, " (question id \"", f.example_id, "\"): ", e.what());
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace qdqbert::squad
