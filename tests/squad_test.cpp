// Parity of qdqbert::squad with the Python SQuAD pipeline fixtures (tests/data/squad, copied from
// tests/data/squad; see its README): reading, metrics, post-processing, feature windows (with the
// fixtures' own tokens standing in for the tokenizer), the CLI, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qdqbert/error.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/metrics.h"
#include "qdqbert/squad/postprocess.h"
#include "test_config.h"
#include "test_paths.h"

namespace {

using nlohmann::json;
namespace sq = qdqbert::squad;

std::string squad_path(const std::string& name) { return qdqbert::testing::data_path("squad/" + name); }

json load(const std::string& name) {
  std::ifstream in(squad_path(name));
  if (!in) throw std::runtime_error("cannot open " + squad_path(name));
  return json::parse(in);
}

// Relative tolerance with an absolute floor for values near 0.
::testing::AssertionResult near_rel(double actual, double expected, double rtol, const std::string& what) {
  if (std::fabs(actual - expected) <= rtol * std::max(1.0, std::fabs(expected))) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << what << ": " << actual << " vs expected " << expected << " (rtol " << rtol
                                       << ")";
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const qdqbert::Error& e) {
    return e.what();
  }
  return "<no qdqbert::Error thrown>";
}

// ---------------------------------------------------------------------------------------------------
// Metric
// ---------------------------------------------------------------------------------------------------

TEST(SquadMetric, NormalizeAnswerMatchesReference) {
  const json cases = load("metric_cases.json")["normalize_answer"];
  ASSERT_EQ(cases.size(), 28u);
  for (const auto& c : cases) {
    // v1.1 and v2.0 normalize identically; the fixture lists both.
    EXPECT_EQ(sq::normalize_answer(c["input"]), c["v1"].get<std::string>()) << "input " << c["input"].dump();
    EXPECT_EQ(sq::normalize_answer(c["input"]), c["v2"].get<std::string>()) << "input " << c["input"].dump();
  }
}

TEST(SquadMetric, PairwiseExactAndF1) {
  const json cases = load("metric_cases.json")["pairwise"];
  ASSERT_EQ(cases.size(), 14u);
  for (const auto& c : cases) {
    const std::string p = c["prediction"], g = c["ground_truth"];
    const std::string what = "pred " + c["prediction"].dump() + " gold " + c["ground_truth"].dump();
    EXPECT_EQ(sq::exact_score(p, g), c["v1_exact"].get<int>()) << what;
    EXPECT_EQ(sq::exact_score(p, g), c["v2_exact"].get<int>()) << what;
    EXPECT_TRUE(near_rel(sq::f1_score_v1(p, g), c["v1_f1"].get<double>(), 1e-12, "v1 f1 " + what));
    EXPECT_TRUE(near_rel(sq::f1_score_v2(p, g), c["v2_f1"].get<double>(), 1e-12, "v2 f1 " + what));
  }
}

std::vector<sq::Reference> refs_of(const json& refs) {
  std::vector<sq::Reference> out;
  for (const auto& r : refs) out.push_back({r["id"], r["answers"]["text"].get<std::vector<std::string>>()});
  return out;
}

std::vector<sq::Prediction> preds_of(const json& preds) {
  std::vector<sq::Prediction> out;
  for (const auto& p : preds) out.push_back({p["id"], p["prediction_text"], p.value("no_answer_probability", 0.0)});
  return out;
}

void expect_metric_json(const std::string& actual_json, const json& expected, const std::string& what) {
  const json actual = json::parse(actual_json);
  EXPECT_EQ(actual.size(), expected.size()) << what << ": keys " << actual.dump() << " vs " << expected.dump();
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    ASSERT_TRUE(actual.contains(it.key())) << what << ": missing " << it.key();
    EXPECT_TRUE(near_rel(actual[it.key()].get<double>(), it.value().get<double>(), 1e-12, what + " " + it.key()));
  }
}

void expect_per_question(const std::map<std::string, sq::QuestionScore>& actual, const json& expected,
                         const std::string& what) {
  EXPECT_EQ(actual.size(), expected.size()) << what;
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    auto a = actual.find(it.key());
    ASSERT_NE(a, actual.end()) << what << ": no score for " << it.key();
    EXPECT_EQ(a->second.exact, it.value()["exact"].get<double>()) << what << " " << it.key();
    EXPECT_TRUE(near_rel(a->second.f1, it.value()["f1"].get<double>(), 1e-12, what + " f1 " + it.key()));
  }
}

TEST(SquadMetric, EveryFixtureCase) {
  const json cases = load("metric_cases.json")["cases"];
  ASSERT_EQ(cases.size(), 5u);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const auto refs = refs_of(c["references"]);
    const auto preds = preds_of(c["predictions"]);
    if (c["version"] == "v1") {
      const auto r = sq::evaluate_v1(refs, preds);
      expect_metric_json(r.to_json(), c["expected"], name);
      expect_per_question(r.per_question, c["per_question"], name);
    } else {
      const auto r = sq::evaluate_v2(refs, preds, c["no_answer_threshold"].get<double>());
      expect_metric_json(r.to_json(true), c["expected"], name);
      expect_per_question(r.per_question_raw, c["per_question_raw"], name);
    }
  }
}

TEST(SquadMetric, V2MissingPredictionScoresZero) {
  const auto r = sq::evaluate_v2({{"q1", {"x"}}, {"q2", {}}}, {{"q1", "x", 0.0}});
  EXPECT_EQ(r.missing, std::vector<std::string>{"q2"});
  EXPECT_EQ(r.total, 2);
  EXPECT_DOUBLE_EQ(r.exact, 50.0);
  EXPECT_DOUBLE_EQ(r.has_ans_exact, 100.0);
  EXPECT_DOUBLE_EQ(r.no_ans_exact, 0.0);
  EXPECT_LE(r.best_exact, 100.0);
}

TEST(SquadMetric, V2WithoutBestAndKeyOrder) {
  const json c = load("metric_cases.json")["cases"][2];
  const auto r = sq::evaluate_v2(refs_of(c["references"]), preds_of(c["predictions"]), 1.0);
  const json j = json::parse(r.to_json(false));
  EXPECT_FALSE(j.contains("best_exact"));
  // The official script's key order.
  EXPECT_EQ(r.to_json(false).rfind("{\"exact\":", 0), 0u) << r.to_json(false);
}

TEST(SquadMetric, V1CountsMissingPredictionsAndRejectsAnswerlessReferences) {
  const auto r = sq::evaluate_v1({{"q1", {"x"}}, {"q2", {"y"}}}, {{"q1", "x", 0.0}});
  EXPECT_DOUBLE_EQ(r.exact_match, 50.0);
  EXPECT_EQ(r.missing, std::vector<std::string>{"q2"});
  // json.dumps layout of the official v1.1 script
  EXPECT_EQ(r.to_json(), "{\"exact_match\": 50.0, \"f1\": 50.0}");
  EXPECT_NE(error_of([] { sq::evaluate_v1({{"qx", {}}}, {{"qx", "", 0.0}}); }).find("\"qx\""), std::string::npos);
  EXPECT_NE(error_of([] { sq::evaluate_v1({}, {}); }).find("no reference"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------

void expect_same_examples(const sq::Dataset& ds, const json& rows) {
  ASSERT_EQ(ds.examples.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& e = ds.examples[i];
    const auto& r = rows[i];
    EXPECT_EQ(e.id, r["id"].get<std::string>());
    EXPECT_EQ(e.title, r["title"].get<std::string>()) << e.id;
    EXPECT_EQ(e.context, r["context"].get<std::string>()) << e.id;
    EXPECT_EQ(e.question, r["question"].get<std::string>()) << e.id;
    const auto texts = r["answers"]["text"].get<std::vector<std::string>>();
    const auto starts = r["answers"]["answer_start"].get<std::vector<int64_t>>();
    ASSERT_EQ(e.answers.size(), texts.size()) << e.id;
    for (size_t k = 0; k < texts.size(); ++k) {
      EXPECT_EQ(e.answers[k].text, texts[k]) << e.id;
      EXPECT_EQ(e.answers[k].answer_start, starts[k]) << e.id;
    }
  }
}

TEST(SquadDataset, ReadsV1LikeTheHfLoader) {
  const auto ds = sq::read_squad(squad_path("dev.json"));
  EXPECT_EQ(ds.version, "1.1");
  EXPECT_EQ(ds.examples.size(), 55u);
  EXPECT_FALSE(ds.has_negative());
  expect_same_examples(ds, load("examples.json")["v1"]);
}

TEST(SquadDataset, ReadsV2LikeTheHfLoader) {
  const auto ds = sq::read_squad(squad_path("dev_v2.json"));
  EXPECT_EQ(ds.examples.size(), 59u);
  EXPECT_TRUE(ds.has_negative());
  int impossible = 0;
  for (const auto& e : ds.examples) impossible += e.is_impossible;
  EXPECT_EQ(impossible, 4);
  expect_same_examples(ds, load("examples.json")["v2"]);
}

const char* kGood =
    R"({"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Café in Paris.",
        "qas": [{"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 8}]}]}]}]})";

TEST(SquadDataset, AnswerStartCountsCodePoints) {
  const auto ds = sq::parse_squad(kGood, "good.json");
  ASSERT_EQ(ds.examples.size(), 1u);
  EXPECT_EQ(ds.examples[0].answers[0].answer_start, 8);
}

TEST(SquadDataset, BadInputNamesTheQuestion) {
  // answer_start that does not match the context
  std::string bad_start = kGood;
  bad_start.replace(bad_start.find("\"answer_start\": 8"), 17, "\"answer_start\": 7");
  std::string msg = error_of([&] { sq::parse_squad(bad_start, "dev.json"); });
  EXPECT_NE(msg.find("question id \"q1\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("answer_start 7 does not match"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dev.json"), std::string::npos) << msg;
  // ... but accepted when the check is off
  sq::ReadOptions lax;
  lax.check_answer_start = false;
  EXPECT_NO_THROW(sq::parse_squad(bad_start, "dev.json", lax));
  // answer_start past the end
  std::string past = kGood;
  past.replace(past.find("\"answer_start\": 8"), 17, "\"answer_start\": 99");
  EXPECT_NE(error_of([&] { sq::parse_squad(past, "x"); }).find("question id \"q1\""), std::string::npos);

  // missing key / wrong type inside a question
  std::string no_question = kGood;
  no_question.replace(no_question.find("\"question\""), 10, "\"questio\"");
  msg = error_of([&] { sq::parse_squad(no_question, "x"); });
  EXPECT_NE(msg.find("question id \"q1\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing key \"question\""), std::string::npos) << msg;
  std::string str_start = kGood;
  str_start.replace(str_start.find("\"answer_start\": 8"), 17, "\"answer_start\": \"8\"");
  msg = error_of([&] { sq::parse_squad(str_start, "x"); });
  EXPECT_NE(msg.find("question id \"q1\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("must be an integer"), std::string::npos) << msg;

  // not JSON, wrong top level, missing id
  EXPECT_NE(error_of([] { sq::parse_squad("{\"data\": [", "broken.json"); }).find("broken.json is not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { sq::parse_squad("[]", "x"); }).find("top level"), std::string::npos);
  msg = error_of([] {
    sq::parse_squad(R"({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q", "answers": []}]}]}]})",
                    "x");
  });
  EXPECT_NE(msg.find("data[0].paragraphs[0].qas[0]: missing key \"id\""), std::string::npos) << msg;

  // duplicate ids, impossible with answers
  msg = error_of([] {
    sq::parse_squad(R"({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "d", "question": "q", "answers": []}, {"id": "d", "question": "q", "answers": []}]}]}]})",
                    "x");
  });
  EXPECT_NE(msg.find("question id \"d\": duplicate"), std::string::npos) << msg;
  msg = error_of([] {
    sq::parse_squad(R"({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "i", "question": "q", "is_impossible": true, "answers": [{"text": "c", "answer_start": 0}]}]}]}]})",
                    "x");
  });
  EXPECT_NE(msg.find("question id \"i\": is_impossible"), std::string::npos) << msg;
}

TEST(SquadDataset, EmptyDatasetIsAnError) {
  EXPECT_NE(error_of([] {
              sq::parse_squad(R"({"version": "1.1", "data": []})", "empty.json");
            }).find("empty.json: the dataset has no questions"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sq::parse_squad(R"({"data": [{"paragraphs": [{"context": "c", "qas": []}]}]})", "e");
            }).find("no questions"),
            std::string::npos);
  sq::ReadOptions ok;
  ok.allow_empty = true;
  EXPECT_TRUE(sq::parse_squad(R"({"data": []})", "e", ok).examples.empty());
  EXPECT_NE(error_of([] { sq::read_squad("/nonexistent/dev.json"); }).find("cannot open '/nonexistent/dev.json'"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------------
// Post-processing
// ---------------------------------------------------------------------------------------------------

const std::vector<std::string> kPostprocessCases = {
    "postprocess_s48_d8_v1_nb20_ml30.json",       "postprocess_s48_d8_v1_nb5_ml3.json",
    "postprocess_s48_d8_v2_nb10_ml15_t2.5.json",  "postprocess_s48_d8_v2_nb20_ml30_t0.json",
    "postprocess_s64_d16_v1_nb20_ml30.json",      "postprocess_s64_d16_v1_nb5_ml3.json",
    "postprocess_s64_d16_v2_nb10_ml15_t2.5.json", "postprocess_s64_d16_v2_nb20_ml30_t0.json",
};

class SquadPostprocess : public ::testing::TestWithParam<std::string> {};

TEST_P(SquadPostprocess, MatchesReference) {
  const json expected = load(GetParam());
  const json& cfg = expected["config"];
  const bool v2 = cfg["version_2_with_negative"];
  const auto ds = sq::read_squad(squad_path(v2 ? "dev_v2.json" : "dev.json"));
  const auto features = sq::read_validation_features(squad_path(expected["features_file"]));
  const auto [start, end] = sq::read_logits(squad_path(expected["logits_file"]));
  sq::PostprocessOptions opt;
  opt.n_best_size = cfg["n_best_size"];
  opt.max_answer_length = cfg["max_answer_length"];
  opt.version_2_with_negative = v2;
  opt.null_score_diff_threshold = cfg["null_score_diff_threshold"];
  const auto res = sq::postprocess_qa_predictions(ds.examples, features, start, end, opt);

  // predictions: exact text, same order
  const json& pred = expected["predictions"];
  ASSERT_EQ(res.predictions.size(), pred.size());
  size_t i = 0;
  for (auto it = pred.begin(); it != pred.end(); ++it, ++i) {
    EXPECT_EQ(res.predictions[i].first, it.key());
    EXPECT_EQ(res.predictions[i].second, it.value().get<std::string>()) << it.key();
  }
  // n-best: texts and logits exact, probabilities rtol 1e-5
  const json& nbest = expected["nbest"];
  ASSERT_EQ(res.nbest.size(), nbest.size());
  for (auto it = nbest.begin(); it != nbest.end(); ++it) {
    const auto& mine = res.nbest.at(it.key());
    ASSERT_EQ(mine.size(), it.value().size()) << it.key();
    for (size_t k = 0; k < mine.size(); ++k) {
      const json& e = it.value()[k];
      const std::string what = it.key() + " nbest[" + std::to_string(k) + "]";
      EXPECT_EQ(mine[k].text, e["text"].get<std::string>()) << what;
      EXPECT_EQ(static_cast<double>(mine[k].start_logit), e["start_logit"].get<double>()) << what;
      EXPECT_EQ(static_cast<double>(mine[k].end_logit), e["end_logit"].get<double>()) << what;
      EXPECT_TRUE(near_rel(mine[k].probability, e["probability"].get<double>(), 1e-5, what + " probability"));
    }
  }
  // scores_diff (v2): rtol 1e-5
  if (v2) {
    const json& sd = expected["scores_diff"];
    ASSERT_EQ(res.scores_diff.size(), sd.size());
    for (auto it = sd.begin(); it != sd.end(); ++it) {
      ASSERT_TRUE(res.scores_diff.count(it.key())) << it.key();
      EXPECT_TRUE(near_rel(res.scores_diff.at(it.key()), it.value().get<double>(), 1e-5, "scores_diff " + it.key()));
    }
  } else {
    EXPECT_TRUE(res.scores_diff.empty());
  }
  // metric and per-question scores of these predictions
  std::vector<sq::Prediction> preds;
  for (const auto& [id, txt] : res.predictions) preds.push_back({id, txt, 0.0});
  const auto refs = sq::references_from(ds);
  if (v2) {
    const auto m = sq::evaluate_v2(refs, preds);
    expect_metric_json(m.to_json(true), expected["metric"], GetParam());
    expect_per_question(m.per_question_raw, expected["per_question"], GetParam());
  } else {
    const auto m = sq::evaluate_v1(refs, preds);
    expect_metric_json(m.to_json(), expected["metric"], GetParam());
    expect_per_question(m.per_question, expected["per_question"], GetParam());
  }
  // JSON writers round-trip to the fixture's layout
  const json pj = json::parse(res.predictions_json());
  EXPECT_EQ(pj, pred);
  const json nj = json::parse(res.nbest_json());
  ASSERT_EQ(nj.size(), nbest.size());
  for (auto it = nbest.begin(); it != nbest.end(); ++it) {
    for (size_t k = 0; k < it.value().size(); ++k) {
      EXPECT_EQ(nj[it.key()][k]["text"], it.value()[k]["text"]);
      EXPECT_EQ(nj[it.key()][k]["start_logit"], it.value()[k]["start_logit"]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SquadFixtures, SquadPostprocess, ::testing::ValuesIn(kPostprocessCases),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param.substr(12, info.param.size() - 12 - 5);
                           for (auto& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

sq::Example tiny_example() {
  sq::Example e;
  e.id = "t1";
  e.context = "Ab cd ef";
  e.question = "q";
  return e;
}

sq::Feature tiny_feature(const std::string& id) {
  sq::Feature f;
  f.example_id = id;
  // [CLS] q [SEP] ab cd ef [SEP]
  f.offset_mapping = {std::nullopt,     std::nullopt,     std::nullopt, sq::Offset{0, 2},
                      sq::Offset{3, 5}, sq::Offset{6, 8}, std::nullopt};
  return f;
}

TEST(SquadPostprocessUnit, EmptyPseudoPredictionAndNullThreshold) {
  sq::PostprocessOptions opt;
  opt.n_best_size = 3;
  opt.max_answer_length = 1;
  // Only ends before starts are ranked: no valid span -> the "empty" pseudo prediction (v1).
  const std::vector<std::vector<float>> s = {{0, 0, 0, 0, 0, 5, 0}}, e = {{0, 0, 0, 5, 0, 0, 0}};
  opt.n_best_size = 1;
  auto r = sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("t1")}, s, e, opt);
  ASSERT_EQ(r.nbest["t1"].size(), 1u);
  EXPECT_EQ(r.predictions[0].second, "empty");
  EXPECT_FLOAT_EQ(r.nbest["t1"][0].probability, 1.0f);
  // v2: null score 2 + 1 = 3 vs best span "cd" 4 + 4 = 8: diff -5.
  opt.n_best_size = 20;
  opt.max_answer_length = 30;
  opt.version_2_with_negative = true;
  const std::vector<std::vector<float>> s2 = {{2, 0, 0, 0, 4, 0, 0}}, e2 = {{1, 0, 0, 0, 4, 0, 0}};
  r = sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("t1")}, s2, e2, opt);
  EXPECT_EQ(r.predictions[0].second, "cd");
  EXPECT_FLOAT_EQ(static_cast<float>(r.scores_diff["t1"]), -5.0f);
  opt.null_score_diff_threshold = -6.0;
  r = sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("t1")}, s2, e2, opt);
  EXPECT_EQ(r.predictions[0].second, "");
  EXPECT_EQ(json::parse(r.null_odds_json()).at("t1").get<double>(), -5.0);
}

TEST(SquadPostprocessUnit, BadInput) {
  sq::PostprocessOptions opt;
  const std::vector<std::vector<float>> row = {{0, 0, 0, 0, 0, 0, 0}};
  std::string msg =
      error_of([&] { sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("zz")}, row, row, opt); });
  EXPECT_NE(msg.find("example_id \"zz\""), std::string::npos) << msg;
  msg = error_of([&] { sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("t1")}, {}, {}, opt); });
  EXPECT_NE(msg.find("1 features but 0 start-logit rows"), std::string::npos) << msg;
  opt.n_best_size = 0;
  msg = error_of([&] { sq::postprocess_qa_predictions({tiny_example()}, {tiny_feature("t1")}, row, row, opt); });
  EXPECT_NE(msg.find("n_best_size"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { sq::read_logits("/nonexistent/logits.json"); }).find("/nonexistent/logits.json"),
            std::string::npos);
  EXPECT_NE(error_of([] { sq::read_validation_features(squad_path("dev.json")); }).find("validation_features"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------------
// Feature windows. A TextEncoder that replays the fixtures' tokens (ids + offsets of every question and
// context, collected from the train view) checks window splitting, special tokens, padding, type ids,
// sequence ids, offsets, sample mapping and train labels without the WordPiece tokenizer; the
// tokenizer itself is covered by squad_features_test.cpp.
// ---------------------------------------------------------------------------------------------------

class ReplayEncoder : public sq::TextEncoder {
 public:
  std::map<std::string, std::map<int64_t, std::pair<int64_t, sq::Offset>>> tokens;  // text -> start -> token
  sq::EncodedText encode(const std::string& text) const override {
    auto it = tokens.find(text);
    if (it == tokens.end()) throw std::runtime_error("ReplayEncoder: unknown text " + text);
    sq::EncodedText out;
    for (const auto& [start, tok] : it->second) {
      out.ids.push_back(tok.first);
      out.offsets.push_back(tok.second);
    }
    return out;
  }
  int64_t cls_token_id() const override { return 101; }
  int64_t sep_token_id() const override { return 102; }
  int64_t pad_token_id() const override { return 0; }
};

const std::vector<std::string> kFeatureFiles = {"features_s48_d8_v1.json", "features_s48_d8_v2.json",
                                                "features_s64_d16_v1.json", "features_s64_d16_v2.json"};

class SquadFeatureWindows : public ::testing::TestWithParam<std::string> {};

TEST_P(SquadFeatureWindows, MatchReferenceWithReplayedTokens) {
  const json fx = load(GetParam());
  const json& cfg = fx["config"];
  const bool v2 = cfg["version_2_with_negative"];
  const auto ds = sq::read_squad(squad_path(v2 ? "dev_v2.json" : "dev.json"));
  ASSERT_EQ(static_cast<int64_t>(ds.examples.size()), fx["num_examples"].get<int64_t>());
  ReplayEncoder enc;
  const json& val = fx["validation_features"];
  const json& train = fx["train_features"];
  ASSERT_EQ(val.size(), train.size());
  for (size_t i = 0; i < train.size(); ++i) {
    const auto& ex = ds.examples.at(train[i]["overflow_to_sample_mapping"].get<size_t>());
    const auto seq = val[i]["sequence_ids"];
    for (size_t k = 0; k < seq.size(); ++k) {
      if (seq[k].is_null()) continue;
      const std::string& text = seq[k].get<int>() == 0 ? ex.question : ex.context;
      const sq::Offset off{train[i]["offset_mapping"][k][0], train[i]["offset_mapping"][k][1]};
      enc.tokens[text][off.start] = {train[i]["input_ids"][k].get<int64_t>(), off};
    }
  }
  sq::FeatureOptions opt;
  opt.max_seq_length = cfg["max_seq_length"];
  opt.doc_stride = cfg["doc_stride"];
  opt.pad_to_max_length = cfg["pad_to_max_length"];
  const auto feats = sq::build_features(ds.examples, enc, opt);
  ASSERT_EQ(feats.size(), val.size());
  int quirk = 0;
  for (size_t i = 0; i < feats.size(); ++i) {
    const auto& f = feats[i];
    const json& v = val[i];
    const json& t = train[i];
    const std::string what = GetParam() + " feature " + std::to_string(i);
    EXPECT_EQ(f.feature_index, v["feature_index"].get<int64_t>()) << what;
    EXPECT_EQ(f.example_id, v["example_id"].get<std::string>()) << what;
    EXPECT_EQ(f.example_index, v["overflow_to_sample_mapping"].get<int64_t>()) << what;
    EXPECT_EQ(f.input_ids, v["input_ids"].get<std::vector<int64_t>>()) << what;
    EXPECT_EQ(f.token_type_ids, v["token_type_ids"].get<std::vector<int64_t>>()) << what;
    EXPECT_EQ(f.attention_mask, v["attention_mask"].get<std::vector<int64_t>>()) << what;
    EXPECT_EQ(f.input_ids, t["input_ids"].get<std::vector<int64_t>>()) << what;
    EXPECT_EQ(f.start_position, t["start_positions"].get<int64_t>()) << what;
    EXPECT_EQ(f.end_position, t["end_positions"].get<int64_t>()) << what;
    quirk += f.start_position == static_cast<int64_t>(f.input_ids.size()) - 1;
    // Whole-feature JSON comparison of the written layout (offsets, sequence ids, raw offsets).
    const json mine = json::parse(sq::features_to_json({f}, 1));
    EXPECT_EQ(mine["validation_features"][0]["offset_mapping"], v["offset_mapping"]) << what;
    EXPECT_EQ(mine["validation_features"][0]["sequence_ids"], v["sequence_ids"]) << what;
    EXPECT_EQ(mine["train_features"][0]["offset_mapping"], t["offset_mapping"]) << what;
    EXPECT_EQ(mine["train_features"][0]["token_type_ids"], t["token_type_ids"]) << what;
  }
  EXPECT_GE(quirk, 1) << "the fixture's last-context-token quirk was not exercised";
  // The written file reads back as the validation view.
  const std::string tmp = ::testing::TempDir() + "/squad_features_roundtrip.json";
  sq::write_text_file(tmp, sq::features_to_json(feats, static_cast<int64_t>(ds.examples.size()), cfg.dump()));
  const auto back = sq::read_validation_features(tmp);
  ASSERT_EQ(back.size(), feats.size());
  EXPECT_EQ(back.back().example_id, feats.back().example_id);
  EXPECT_EQ(back.back().offset_mapping, feats.back().offset_mapping);
  std::remove(tmp.c_str());
}

INSTANTIATE_TEST_SUITE_P(SquadFixtures, SquadFeatureWindows, ::testing::ValuesIn(kFeatureFiles),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.substr(9, info.param.size() - 9 - 5);
                         });

TEST(SquadFeatureUnit, WindowSplitting) {
  using W = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(sq::context_windows(5, 10, 3), (W{{0, 5}}));
  EXPECT_EQ(sq::context_windows(10, 10, 3), (W{{0, 10}}));
  EXPECT_EQ(sq::context_windows(11, 10, 3), (W{{0, 10}, {7, 11}}));
  EXPECT_EQ(sq::context_windows(20, 6, 2), (W{{0, 6}, {4, 10}, {8, 14}, {12, 18}, {16, 20}}));
  EXPECT_NE(error_of([] { sq::context_windows(20, 6, 6); }).find("doc_stride 6"), std::string::npos);
}

class CharEncoder : public sq::TextEncoder {  // one token per non-space character
 public:
  sq::EncodedText encode(const std::string& text) const override {
    sq::EncodedText out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == ' ') continue;
      out.ids.push_back(1000 + text[i]);
      out.offsets.push_back({static_cast<int64_t>(i), static_cast<int64_t>(i + 1)});
    }
    return out;
  }
  int64_t cls_token_id() const override { return 101; }
  int64_t sep_token_id() const override { return 102; }
  int64_t pad_token_id() const override { return 0; }
};

TEST(SquadFeatureUnit, NoPaddingLabelsAndErrors) {
  sq::Example e;
  e.id = "u1";
  e.question = "  ab";  // leading spaces are kept: question offsets count them
  e.context = "abcdefghij";
  e.answers = {{"cd", 2}};
  sq::FeatureOptions opt;
  opt.max_seq_length = 9;  // budget 9 - 3 - 2 = 4 context tokens per window
  opt.doc_stride = 1;
  opt.pad_to_max_length = false;
  const auto f = sq::build_features({e}, CharEncoder(), opt);
  ASSERT_EQ(f.size(), 3u);  // [0,4) [3,7) [6,10)
  EXPECT_EQ(f[0].input_ids.size(), 9u);
  EXPECT_EQ(f[2].input_ids.size(), 9u);
  EXPECT_EQ(f[0].raw_offsets[1], (sq::Offset{2, 3}));  // offsets into the question as written
  EXPECT_EQ(f[0].start_position, 6);                   // [CLS] a b [SEP] a b c d [SEP]
  EXPECT_EQ(f[0].end_position, 7);
  EXPECT_EQ(f[1].start_position, 0);  // answer not inside [3, 7)
  EXPECT_EQ(f[1].end_position, 0);
  // Answer starting in the window's last context token: the reference's forward scan runs through [SEP].
  e.answers = {{"d", 3}};
  const auto g = sq::build_features({e}, CharEncoder(), opt);
  EXPECT_EQ(g[0].start_position, 8);  // len(input_ids) - 1, the final [SEP], not 7
  EXPECT_EQ(g[0].end_position, 7);
  EXPECT_EQ(g[1].start_position, 4);  // first context token of the second window
  EXPECT_EQ(g[1].end_position, 4);

  opt.max_seq_length = 5;  // no room for context
  std::string msg = error_of([&] { sq::build_features({e}, CharEncoder(), opt); });
  EXPECT_NE(msg.find("question id \"u1\""), std::string::npos) << msg;
  opt.max_seq_length = 9;
  opt.doc_stride = 4;
  msg = error_of([&] { sq::build_features({e}, CharEncoder(), opt); });
  EXPECT_NE(msg.find("doc_stride 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("question id \"u1\""), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------------
// CLI (qdqbert-cli squad-eval / squad-postprocess), when the tool is built
// ---------------------------------------------------------------------------------------------------

std::string cli_path() { return std::string(QDQBERT_BINARY_DIR) + "/tools/cli/qdqbert-cli"; }

int run_cli(const std::string& args, const std::string& out_file) {
  const std::string cmd = cli_path() + " " + args + " > " + out_file + " 2> " + out_file + ".err";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(SquadCli, PostprocessThenEvalMatchesFixture) {
  ASSERT_TRUE(std::filesystem::exists(cli_path())) << "qdqbert-cli is not built";
  const std::string dir = ::testing::TempDir() + "/squad_cli";
  std::filesystem::create_directories(dir);
  const json expected = load("postprocess_s64_d16_v2_nb10_ml15_t2.5.json");
  ASSERT_EQ(run_cli("squad-postprocess --data " + squad_path("dev_v2.json") + " --features " +
                        squad_path("features_s64_d16_v2.json") + " --logits " + squad_path("logits_s64_d16_v2.json") +
                        " --n-best-size 10 --max-answer-length 15 --version-2-with-negative"
                        " --null-score-diff-threshold 2.5 --output " +
                        dir + "/predictions.json --nbest-output " + dir + "/nbest.json",
                    dir + "/pp.out"),
            0)
      << slurp(dir + "/pp.out.err");
  EXPECT_EQ(json::parse(slurp(dir + "/predictions.json")), expected["predictions"]);
  const json nbest = json::parse(slurp(dir + "/nbest.json"));
  EXPECT_EQ(nbest.size(), expected["nbest"].size());
  const json odds = json::parse(slurp(dir + "/null_odds.json"));
  EXPECT_EQ(odds.size(), expected["scores_diff"].size());
  expect_metric_json(slurp(dir + "/pp.out"), expected["metric"], "squad-postprocess stdout");

  ASSERT_EQ(run_cli("squad-eval --data " + squad_path("dev_v2.json") + " --predictions " + dir +
                        "/predictions.json --version 2",
                    dir + "/eval.out"),
            0)
      << slurp(dir + "/eval.out.err");
  json m = expected["metric"];
  for (const char* k : {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}) m.erase(k);
  expect_metric_json(slurp(dir + "/eval.out"), m, "squad-eval v2");
  ASSERT_EQ(run_cli("squad-eval --data " + squad_path("dev_v2.json") + " --predictions " + dir +
                        "/predictions.json --version-2-with-negative --na-prob-file " + dir + "/null_odds.json",
                    dir + "/eval2.out"),
            0)
      << slurp(dir + "/eval2.out.err");
  EXPECT_TRUE(json::parse(slurp(dir + "/eval2.out")).contains("best_f1_thresh"));

  // v1 eval of the v1 fixture predictions
  const json v1 = load("postprocess_s48_d8_v1_nb20_ml30.json");
  { std::ofstream(dir + "/v1.json") << v1["predictions"].dump(); }
  ASSERT_EQ(
      run_cli("squad-eval --data " + squad_path("dev.json") + " --predictions " + dir + "/v1.json", dir + "/eval1.out"),
      0);
  expect_metric_json(slurp(dir + "/eval1.out"), v1["metric"], "squad-eval v1");

  // bad input: one line naming the question
  {
    std::ofstream(dir + "/bad.json")
        << R"({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "bad7", "question": "q", "answers": [{"text": "x", "answer_start": 0}]}]}]}]})";
  }
  EXPECT_EQ(
      run_cli("squad-postprocess --data " + dir + "/bad.json --features " + squad_path("features_s64_d16_v1.json") +
                  " --logits " + squad_path("logits_s64_d16_v1.json") + " --output " + dir + "/p.json",
              dir + "/bad.out"),
      1);
  EXPECT_NE(slurp(dir + "/bad.out.err").find("question id \"bad7\""), std::string::npos) << slurp(dir + "/bad.out.err");
  std::filesystem::remove_all(dir);
}

}  // namespace
