// BertTokenizer: parity with every golden case of tests/data/tokenizer/cases.jsonl (the real Python
// slow BertTokenizer, v4.34, plus the harness-derived offsets and fast-tokenizer windows), loading,
// edge cases and errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/request.h"
#include "qdqbert/tokenization/template.h"
#include "test_config.h"

namespace tok = qdqbert::tokenization;
using nlohmann::json;

namespace {

std::string tok_data(const std::string& rel) {
  const char* env = std::getenv("QDQBERT_TEST_DATA");
  return std::string(env ? env : QDQBERT_TEST_DATA_DIR) + "/tokenizer/" + rel;
}

struct Case {
  std::string id, line;
  json j;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> out;
    std::ifstream in(tok_data("cases.jsonl"));
    if (!in) throw std::runtime_error("cannot open " + tok_data("cases.jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      Case c;
      c.line = line;
      c.j = json::parse(line);
      c.id = c.j["id"];
      out.push_back(std::move(c));
    }
    return out;
  }();
  return all;
}

tok::RequestRunner& runner(const std::string& vocab) {
  static std::map<std::string, std::unique_ptr<tok::RequestRunner>> runners;
  auto& r = runners[vocab];
  if (!r) r = std::make_unique<tok::RequestRunner>(tok::BertTokenizer::from_vocab_file(tok_data(vocab)));
  return *r;
}

// "ValueError: msg" -> "msg"
std::string strip_exception_type(const std::string& s) {
  const auto p = s.find(": ");
  return p == std::string::npos ? s : s.substr(p + 2);
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// The offset_mapping of the default encoding, built from the fixture's per-token offsets: (0,0) for
// special tokens and padding, then the offsets of A's and B's tokens in order.
json expected_offset_mapping(const json& special_mask, const json& offs, const json* offs_pair, size_t len_a) {
  json out = json::array();
  size_t k = 0;
  for (size_t i = 0; i < special_mask.size(); ++i) {
    if (special_mask[i] == 1) {
      out.push_back(json::array({0, 0}));
      continue;
    }
    if (k < len_a) {
      out.push_back(offs[k]);
    } else {
      out.push_back((*offs_pair)[k - len_a]);
    }
    ++k;
  }
  return out;
}

class TokenizerParity : public ::testing::TestWithParam<size_t> {};

TEST_P(TokenizerParity, MatchesReference) {
  const Case& c = cases().at(GetParam());
  SCOPED_TRACE(c.id + " " + c.j["call"].dump());
  const json& exp = c.j["expected"];
  const json& call = c.j["call"];
  const json out = json::parse(runner(c.j["vocab"]).run(c.line));
  const bool batch = call["text"].is_array();

  EXPECT_EQ(out.value("tokens", json()), exp["tokens"]);
  if (exp.contains("tokens_pair")) {
    EXPECT_EQ(out.value("tokens_pair", json()), exp["tokens_pair"]);
  }

  // Default encoding: slow tokenizer binding, except that an impossible truncation raises.
  bool expect_error = exp.contains("error") || exp.contains("slow_truncation_error_logged");
  if (!batch && call["truncation"] == "only_second" && call["text_pair"].is_null() && call["max_length"].is_number() &&
      exp["input_ids"].size() > call["max_length"].get<size_t>()) {
    expect_error = true;
  }
  if (expect_error) {
    ASSERT_TRUE(out.contains("error")) << out.dump();
    EXPECT_FALSE(out.contains("input_ids"));
    if (exp.contains("error")) {
      EXPECT_TRUE(contains(out["error"], strip_exception_type(exp["error"]))) << out["error"];
    }
  } else {
    ASSERT_FALSE(out.contains("error")) << out["error"];
    for (const char* k : {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"}) {
      EXPECT_EQ(out[k], exp[k]) << k;
    }
    if (exp.contains("overflowing_tokens")) {
      EXPECT_EQ(out["overflowing_tokens"], exp["overflowing_tokens"]);
      EXPECT_EQ(out["num_truncated_tokens"], exp["num_truncated_tokens"]);
    }
    if (exp.contains("decoded")) {
      EXPECT_EQ(out["decoded"], exp["decoded"]);
      EXPECT_EQ(out["decoded_skip_special"], exp["decoded_skip_special"]);
    }
    // offset_mapping of the default encoding
    auto check_offsets = [&](const json& ids, const json& types, const json& mask, const json& offs, const json* op) {
      // Tokens of A: the non-special ones with type id 0 (without special tokens all type ids are 0,
      // and A keeps at most its own tokens).
      size_t a_count = 0, non_special = 0;
      for (size_t p = 0; p < ids.size(); ++p) {
        if (mask[p] == 0) {
          ++non_special;
          if (types[p] == 0) ++a_count;
        }
      }
      if (op == nullptr || !call["add_special_tokens"].get<bool>()) a_count = std::min(non_special, offs.size());
      return expected_offset_mapping(mask, offs, op, a_count);
    };
    if (batch) {
      for (size_t i = 0; i < exp["input_ids"].size(); ++i) {
        const json* op = exp.contains("offsets_pair") ? &exp["offsets_pair"][i] : nullptr;
        EXPECT_EQ(out["offset_mapping"][i], check_offsets(exp["input_ids"][i], exp["token_type_ids"][i],
                                                          exp["special_tokens_mask"][i], exp["offsets"][i], op));
      }
    } else {
      const json* op = exp.contains("offsets_pair") ? &exp["offsets_pair"] : nullptr;
      EXPECT_EQ(out["offset_mapping"],
                check_offsets(exp["input_ids"], exp["token_type_ids"], exp["special_tokens_mask"], exp["offsets"], op));
    }
  }

  // Windowed encoding: fast_windows binding.
  if (exp.contains("fast_windows")) {
    ASSERT_TRUE(out.contains("windows"));
    const json& fw = exp["fast_windows"];
    if (fw.contains("error")) {
      ASSERT_TRUE(out["windows"].contains("error")) << out["windows"].dump();
      EXPECT_TRUE(contains(out["windows"]["error"], strip_exception_type(fw["error"]))) << out["windows"]["error"];
    } else {
      ASSERT_FALSE(out["windows"].contains("error")) << out["windows"]["error"];
      EXPECT_EQ(out["windows"]["overflow_to_sample_mapping"], fw["overflow_to_sample_mapping"]);
      ASSERT_EQ(out["windows"]["windows"].size(), fw["windows"].size());
      for (size_t w = 0; w < fw["windows"].size(); ++w) {
        for (const char* k : {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping",
                              "sequence_ids"}) {
          EXPECT_EQ(out["windows"]["windows"][w][k], fw["windows"][w][k]) << "window " << w << " " << k;
        }
      }
    }
  } else {
    EXPECT_FALSE(out.contains("windows"));
  }
}

// Per-token offsets of tokenize() against the fixture (harness-derived).
TEST_P(TokenizerParity, TokenOffsets) {
  const Case& c = cases().at(GetParam());
  SCOPED_TRACE(c.id);
  const json& init = c.j["init"];
  tok::BertTokenizerOptions o;
  o.do_lower_case = init["do_lower_case"];
  o.do_basic_tokenize = init["do_basic_tokenize"];
  o.tokenize_chinese_chars = init["tokenize_chinese_chars"];
  if (!init["strip_accents"].is_null()) o.strip_accents = init["strip_accents"].get<bool>();
  if (!init["never_split"].is_null()) o.never_split = init["never_split"].get<std::vector<std::string>>();
  const auto t = tok::BertTokenizer::from_vocab_file(tok_data(c.j["vocab"]), o);
  auto check = [&](const json& text, const json& tokens, const json& offsets) {
    const tok::TokenizedText tt = t.tokenize_with_offsets(text.get<std::string>());
    EXPECT_EQ(json(tt.tokens), tokens);
    json offs = json::array();
    for (const auto& [s, e] : tt.offsets) offs.push_back(json::array({s, e}));
    EXPECT_EQ(offs, offsets);
  };
  const json& call = c.j["call"];
  const json& exp = c.j["expected"];
  if (call["text"].is_array()) {
    for (size_t i = 0; i < call["text"].size(); ++i) {
      check(call["text"][i], exp["tokens"][i], exp["offsets"][i]);
      if (exp.contains("offsets_pair")) check(call["text_pair"][i], exp["tokens_pair"][i], exp["offsets_pair"][i]);
    }
  } else {
    check(call["text"], exp["tokens"], exp["offsets"]);
    if (exp.contains("offsets_pair")) check(call["text_pair"], exp["tokens_pair"], exp["offsets_pair"]);
  }
}

std::vector<size_t> all_case_indices() {
  std::vector<size_t> v(cases().size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, TokenizerParity, ::testing::ValuesIn(all_case_indices()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string id = cases().at(info.param).id;
                           for (auto& ch : id) {
                             if (ch == '-') ch = '_';
                           }
                           return id;
                         });

TEST(TokenizerFixtures, AllCasesPresent) { EXPECT_EQ(cases().size(), 278u); }

// ------------------------------------------------------------------------------------------------
// API, loading, errors
// ------------------------------------------------------------------------------------------------
tok::BertTokenizer uncased() { return tok::BertTokenizer::from_vocab_file(tok_data("vocab_uncased.txt")); }

TEST(TokenizerApi, EncodePairAndDecode) {
  const auto t = uncased();
  const tok::Encoding e = t.encode("Hello, world!", std::string_view("How are you?"));
  ASSERT_EQ(e.input_ids.front(), t.cls_token_id());
  ASSERT_EQ(e.input_ids.back(), t.sep_token_id());
  EXPECT_EQ(t.decode(e.input_ids, true), "hello, world! how are you?");
  EXPECT_EQ(e.sequence_ids.front(), -1);
  EXPECT_EQ(e.offset_mapping.front(), tok::Offset(0, 0));
  EXPECT_EQ(t.convert_ids_to_tokens({t.cls_token_id(), 999999})[1], "[UNK]");
  EXPECT_EQ(t.convert_tokens_to_ids({"[SEP]", "no-such-token"}),
            (std::vector<int64_t>{t.sep_token_id(), t.unk_token_id()}));
}

TEST(TokenizerApi, SquadWindowsCoverContextWithStride) {
  const auto t = uncased();
  std::string context;
  for (int i = 0; i < 40; ++i) context += "the quick brown fox jumps over the lazy dog. ";
  tok::EncodeOptions o;
  o.truncation = tok::Truncation::OnlySecond;
  o.max_length = 32;
  o.stride = 8;
  o.return_overflowing_tokens = true;
  o.padding = tok::Padding::MaxLength;
  const tok::BatchEncoding b = t.encode_windows_batch({"what jumps?", "who is lazy?"}, {context, context}, o);
  ASSERT_GT(b.size(), 4u);
  const size_t n_ctx = t.tokenize(context).size();
  for (int64_t sample = 0; sample < 2; ++sample) {
    std::vector<tok::Offset> seen;
    tok::Offset prev_last{-1, -1};
    for (size_t r = 0; r < b.size(); ++r) {
      if (b.overflow_to_sample_mapping[r] != sample) continue;
      const auto& e = b[r];
      EXPECT_EQ(e.size(), 32u);
      std::vector<tok::Offset> ctx;
      for (size_t k = 0; k < e.size(); ++k) {
        if (e.sequence_ids[k] == 1) ctx.push_back(e.offset_mapping[k]);
      }
      ASSERT_FALSE(ctx.empty());
      if (prev_last.first >= 0) {
        // consecutive windows share `stride` tokens
        EXPECT_EQ(std::count(seen.end() - 8, seen.end(), ctx.front()), 1);
      }
      for (const auto& x : ctx) {
        if (seen.empty() || !(x <= seen.back())) seen.push_back(x);
      }
      prev_last = ctx.back();
    }
    EXPECT_EQ(seen.size(), n_ctx);
  }
}

TEST(TokenizerErrors, InvalidUtf8NamesTheBytePosition) {
  const auto t = uncased();
  try {
    t.tokenize(std::string("abc\xC3(", 5));
    FAIL() << "no error";
  } catch (const qdqbert::Error& e) {
    EXPECT_TRUE(contains(e.what(), "invalid UTF-8")) << e.what();
    EXPECT_TRUE(contains(e.what(), "at byte 3")) << e.what();
  }
  EXPECT_THROW(t.tokenize("\xED\xA0\x80"), qdqbert::Error);      // surrogate
  EXPECT_THROW(t.tokenize("\xC0\xAF"), qdqbert::Error);          // overlong
  EXPECT_THROW(t.tokenize("\xF4\x90\x80\x80"), qdqbert::Error);  // > U+10FFFF
  EXPECT_THROW(t.tokenize("\xE2\x82"), qdqbert::Error);          // truncated
}

TEST(TokenizerErrors, MissingAndMalformedVocab) {
  try {
    tok::BertTokenizer::from_pretrained("/nonexistent/dir");
    FAIL();
  } catch (const qdqbert::Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/dir")) << e.what();
  }
  EXPECT_THROW(tok::BertTokenizer::parse_vocab(""), qdqbert::Error);
  EXPECT_THROW(tok::BertTokenizer::parse_vocab("a\n\xFF\n"), qdqbert::Error);
  try {
    tok::BertTokenizer({"[PAD]", "[CLS]", "[SEP]", "[MASK]", "hello"});
    FAIL();
  } catch (const qdqbert::Error& e) {
    EXPECT_TRUE(contains(e.what(), "[UNK]")) << e.what();
  }
  EXPECT_THROW(tok::BertTokenizer::from_tokenizer_json("{not json"), qdqbert::Error);
  EXPECT_THROW(tok::BertTokenizer::from_tokenizer_json(R"({"model": {"type": "BPE", "vocab": {}}})"), qdqbert::Error);
  EXPECT_THROW(tok::BertTokenizer::from_tokenizer_json(R"({"model": {"type": "WordPiece", "vocab": {"a": 3}}})"),
               qdqbert::Error);
  // Fields of the wrong JSON type are qdqbert::Error too (found probing the fuzz target by hand).
  EXPECT_THROW(tok::BertTokenizer::from_tokenizer_json(
                   R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}, "normalizer": {"type": 1}})"),
               qdqbert::Error);
}

TEST(TokenizerErrors, ImpossibleTruncation) {
  const auto t = uncased();
  tok::EncodeOptions o;
  o.truncation = tok::Truncation::OnlyFirst;
  o.max_length = 5;
  try {
    t.encode("one two three four five six seven", std::string_view("eight nine ten eleven"), o);
    FAIL();
  } catch (const qdqbert::Error& e) {
    EXPECT_TRUE(contains(e.what(), "too short")) << e.what();
  }
  EXPECT_THROW(t.encode_windows("a b c d e f", std::string_view("g h i j k"), o), qdqbert::Error);
  o.truncation = tok::Truncation::LongestFirst;
  o.max_length = 2;
  EXPECT_THROW(t.encode("a b", std::string_view("c d"), o), qdqbert::Error);
  EXPECT_THROW(t.encode_windows("a b", std::string_view("c d"), o), qdqbert::Error);
  o.max_length = -1;
  EXPECT_THROW(t.encode("a b", std::nullopt, o), qdqbert::Error);
}

// padding=max_length with a huge max_length (a typo, a hostile request or tokenizer_config.json) is refused
// by name before anything is allocated, single and batched; the cap itself still pads.
TEST(TokenizerErrors, PaddingToAHugeMaxLengthIsRefused) {
  const auto t = uncased();
  tok::EncodeOptions o;
  o.padding = tok::Padding::MaxLength;
  o.truncation = tok::Truncation::None;
  o.max_length = int64_t{1} << 40;
  for (auto f : {std::function<void()>([&] { t.encode("a b", std::nullopt, o); }),
                 std::function<void()>([&] { t.encode_batch({"a", "b c"}, {}, o); }),
                 std::function<void()>([&] { t.encode_windows("a b", std::nullopt, o); })}) {
    std::string msg;
    try {
      f();
    } catch (const qdqbert::Error& e) {
      msg = e.what();
    }
    EXPECT_TRUE(contains(msg, "max_length=1099511627776")) << msg;
    EXPECT_TRUE(contains(msg, "at most 65536")) << msg;
  }
  o.max_length = tok::kMaxPaddedLength;
  EXPECT_EQ(t.encode("a b", std::nullopt, o).input_ids.size(), static_cast<size_t>(tok::kMaxPaddedLength));
}

TEST(TokenizerEdge, LongWordsSpecialLiteralsAndControlChars) {
  const auto t = uncased();
  EXPECT_EQ(t.tokenize(std::string(101, 'a')), (std::vector<std::string>{"[UNK]"}));
  EXPECT_EQ(t.tokenize("[MASK]"), (std::vector<std::string>{"[MASK]"}));
  EXPECT_EQ(t.tokenize(std::string("\0\x01\x7f", 3)), std::vector<std::string>{});
  EXPECT_EQ(t.tokenize(""), std::vector<std::string>{});
  const tok::Encoding e = t.encode("");
  EXPECT_EQ(e.input_ids, (std::vector<int64_t>{t.cls_token_id(), t.sep_token_id()}));
}

TEST(TokenizerLoading, FromPretrainedFolderWithConfigAndTokenizerJson) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("qdqbert_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(tok_data("vocab_cased.txt"), dir / "vocab.txt", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << R"({"do_lower_case": false, "model_max_length": 12,
      "mask_token": {"content": "[MASK]", "lstrip": false}})";
  std::ofstream(dir / "special_tokens_map.json") << R"({"unk_token": "[UNK]", "cls_token": "[CLS]"})";
  {
    const auto t = tok::BertTokenizer::from_pretrained(dir.string());
    EXPECT_FALSE(t.options().do_lower_case);
    EXPECT_EQ(t.options().model_max_length, 12);
    EXPECT_EQ(t.tokenize("The"), (std::vector<std::string>{"The"}));
    tok::EncodeOptions o;
    o.truncation = tok::Truncation::LongestFirst;  // max_length from model_max_length
    EXPECT_EQ(t.encode("The quick brown fox jumps over the lazy dog again and again", std::nullopt, o).size(), 12u);
  }
  // A tokenizer.json built from the same vocabulary gives the same ids.
  json vocab = json::object();
  {
    std::ifstream in(tok_data("vocab_uncased.txt"));
    std::string line;
    int64_t id = 0;
    while (std::getline(in, line)) vocab[line] = id++;
  }
  json tj = {
      {"normalizer",
       {{"type", "BertNormalizer"},
        {"lowercase", true},
        {"handle_chinese_chars", true},
        {"strip_accents", nullptr},
        {"clean_text", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         json::parse(
             R"([{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}])")},
        {"pair",
         json::parse(
             R"([{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}},{"Sequence":{"id":"B","type_id":1}},{"SpecialToken":{"id":"[SEP]","type_id":1}}])")},
        {"special_tokens",
         json::parse(
             R"({"[CLS]":{"id":"[CLS]","ids":[101],"tokens":["[CLS]"]},"[SEP]":{"id":"[SEP]","ids":[102],"tokens":["[SEP]"]}})")}}},
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", "[UNK]"},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 100},
        {"vocab", vocab}}}};
  std::ofstream(dir / "tokenizer.json") << tj.dump();
  fs::remove(dir / "tokenizer_config.json");
  const auto fast = tok::BertTokenizer::from_pretrained(dir.string());
  const auto slow = uncased();
  const std::string a = "Héllo, Wörld! 東京 don't", b = "Second sentence, here.";
  EXPECT_EQ(fast.encode(a, std::string_view(b)).input_ids, slow.encode(a, std::string_view(b)).input_ids);
  EXPECT_EQ(fast.encode(a, std::string_view(b)).token_type_ids, slow.encode(a, std::string_view(b)).token_type_ids);
  fs::remove_all(dir);
}

}  // namespace
