// Feature-building parity with the real WordPiece tokenizer: qdqbert::squad::build_features over
// make_bert_text_encoder (qdqbert::tokenization::BertTokenizer) against every features_*.json fixture,
// and `qdqbert-cli squad-features`. Needs the tokenizer component; without it this file compiles to
// nothing (the windowing itself is covered by squad_test.cpp with replayed tokens).
#include <gtest/gtest.h>

#if __has_include("qdqbert/tokenization/bert_tokenizer.h")

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "test_config.h"
#include "test_paths.h"

namespace {

using nlohmann::json;
namespace sq = qdqbert::squad;

std::string squad_path(const std::string& name) { return qdqbert::testing::data_path("squad/" + name); }

json load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

// The fields README §4 names as compared, plus the rest of both views.
void expect_features_match(const json& mine, const json& fx, bool padded, const std::string& what) {
  const json& mv = mine["validation_features"];
  const json& fv = fx["validation_features"];
  const json& mt = mine["train_features"];
  const json& ft = fx["train_features"];
  ASSERT_EQ(mv.size(), fv.size()) << what;
  ASSERT_EQ(mt.size(), ft.size()) << what;
  for (size_t i = 0; i < fv.size(); ++i) {
    const std::string w = what + " feature " + std::to_string(i) + " (" + fv[i]["example_id"].get<std::string>() + ")";
    // Without padding, the fixture's rows are cut at the attention mask.
    size_t n = fv[i]["input_ids"].size();
    if (!padded) {
      n = 0;
      for (const auto& m : fv[i]["attention_mask"]) n += m.get<int>();
    }
    auto cut = [n](const json& a) { return json(std::vector<json>(a.begin(), a.begin() + static_cast<long>(n))); };
    EXPECT_EQ(mv[i]["example_id"], fv[i]["example_id"]) << w;
    EXPECT_EQ(mv[i]["overflow_to_sample_mapping"], fv[i]["overflow_to_sample_mapping"]) << w;
    for (const char* k : {"input_ids", "token_type_ids", "attention_mask", "offset_mapping", "sequence_ids"}) {
      EXPECT_EQ(mv[i][k], cut(fv[i][k])) << w << " validation " << k;
    }
    for (const char* k : {"input_ids", "token_type_ids", "attention_mask", "offset_mapping"}) {
      EXPECT_EQ(mt[i][k], cut(ft[i][k])) << w << " train " << k;
    }
    if (padded) {
      EXPECT_EQ(mt[i]["start_positions"], ft[i]["start_positions"]) << w;
      EXPECT_EQ(mt[i]["end_positions"], ft[i]["end_positions"]) << w;
    }
  }
}

const std::vector<std::string> kFeatureFiles = {"features_s48_d8_v1.json", "features_s48_d8_v2.json",
                                                "features_s64_d16_v1.json", "features_s64_d16_v2.json"};

class SquadFeaturesTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(SquadFeaturesTokenizer, MatchesReference) {
  const json fx = load(squad_path(GetParam()));
  const json& cfg = fx["config"];
  const auto ds = sq::read_squad(squad_path(cfg["version_2_with_negative"].get<bool>() ? "dev_v2.json" : "dev.json"));
  const auto enc = sq::make_bert_text_encoder(squad_path("vocab_uncased.txt"), true);
  sq::FeatureOptions opt;
  opt.max_seq_length = cfg["max_seq_length"];
  opt.doc_stride = cfg["doc_stride"];
  opt.pad_to_max_length = true;
  const json mine = json::parse(
      sq::features_to_json(sq::build_features(ds.examples, *enc, opt), static_cast<int64_t>(ds.examples.size())));
  EXPECT_EQ(mine["num_examples"], fx["num_examples"]);
  expect_features_match(mine, fx, true, GetParam());
  // Same windows without padding.
  opt.pad_to_max_length = false;
  const json unpadded = json::parse(sq::features_to_json(sq::build_features(ds.examples, *enc, opt), 0));
  expect_features_match(unpadded, fx, false, GetParam() + " (no padding)");
}

INSTANTIATE_TEST_SUITE_P(SquadFixtures, SquadFeaturesTokenizer, ::testing::ValuesIn(kFeatureFiles),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.substr(9, info.param.size() - 9 - 5);
                         });

TEST(SquadFeaturesCli, WritesTheFixtureLayout) {
  const std::string cli = std::string(QDQBERT_BINARY_DIR) + "/tools/cli/qdqbert-cli";
  ASSERT_TRUE(std::filesystem::exists(cli)) << "qdqbert-cli is not built";
  const std::string out = ::testing::TempDir() + "/squad_features_cli.json";
  const std::string cmd = cli + " squad-features --data " + squad_path("dev_v2.json") + " --tokenizer " +
                          squad_path("vocab_uncased.txt") +
                          " --max-seq-length 64 --doc-stride 16 --version-2-with-negative --output " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  expect_features_match(load(out), load(squad_path("features_s64_d16_v2.json")), true, "squad-features");
  // End to end: our features + the fixture's logits -> the fixture's predictions.
  const json pp = load(squad_path("postprocess_s64_d16_v2_nb10_ml15_t2.5.json"));
  const std::string pred = ::testing::TempDir() + "/squad_features_cli_predictions.json";
  const std::string post = cli + " squad-postprocess --data " + squad_path("dev_v2.json") + " --features " + out +
                           " --logits " + squad_path("logits_s64_d16_v2.json") +
                           " --n-best-size 10 --max-answer-length 15 --version-2-with-negative"
                           " --null-score-diff-threshold 2.5 --output " +
                           pred + " > /dev/null";
  ASSERT_EQ(std::system(post.c_str()), 0) << post;
  EXPECT_EQ(load(pred), pp["predictions"]);
  std::filesystem::remove(pred);
  std::filesystem::remove(::testing::TempDir() + "/null_odds.json");
  // v2 data without --version-2-with-negative is refused, naming an unanswerable question.
  const std::string bad = cli + " squad-features --data " + squad_path("dev_v2.json") + " --tokenizer " +
                          squad_path("vocab_uncased.txt") + " --output " + out + ".bad 2> " + out + ".err";
  EXPECT_NE(std::system(bad.c_str()), 0);
  std::ifstream err(out + ".err");
  const std::string msg((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(msg.find("has no answer; pass --version-2-with-negative"), std::string::npos) << msg;
  std::filesystem::remove(out);
  std::filesystem::remove(out + ".err");
}

}  // namespace

#endif  // tokenizer component present
