// SentencePieceTokenizer: a tiny model trained at test time through the plugin (dlmopen'ed next to
// LibTorch, which this test binary links), then encoded, windowed and decoded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/sentencepiece_tokenizer.h"
#include "qdqbert/tokenization/tokenizer.h"

namespace tok = qdqbert::tokenization;
namespace fs = std::filesystem;

namespace {

// A temporary folder removed at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("qdqbert_spm_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

const std::string& model_path() {
  static TempDir tmp;
  static const std::string path = [] {
    const fs::path& dir = tmp.path;
    {
      std::ofstream corpus(dir / "corpus.txt");
      const char* words[] = {"the",      "quick",  "brown",   "fox",    "jumps",   "over",
                             "lazy",     "dog",    "river",   "valley", "glacier", "mountain",
                             "question", "answer", "context", "window", "stride",  "token"};
      for (int i = 0; i < 400; ++i) {
        for (int k = 0; k < 9; ++k) corpus << words[(i * 7 + k * 5) % 18] << (k == 8 ? ".\n" : " ");
      }
      corpus << "Café naïve résumé 東京\n";
    }
    tok::SentencePieceTokenizer::train("--input=" + (dir / "corpus.txt").string() +
                                       " --model_prefix=" + (dir / "spiece").string() +
                                       " --vocab_size=120 --hard_vocab_limit=false --model_type=unigram "
                                       "--control_symbols=[CLS],[SEP] --pad_id=3 --minloglevel=2");
    return (dir / "spiece.model").string();
  }();
  return path;
}

TEST(SentencePieceTokenizer, EncodeDecodeOffsetsAndWindows) {
  const auto t = tok::SentencePieceTokenizer::from_pretrained(model_path());
  EXPECT_FALSE(tok::SentencePieceTokenizer::plugin_location().empty());
  EXPECT_GT(t.vocab_size(), 20);
  const std::string text = "the quick brown fox jumps over the lazy dog";
  const tok::TokenizedText tt = t.tokenize_with_offsets(text);
  ASSERT_FALSE(tt.ids.empty());
  // Offsets are code points into the text, ordered, and the last one ends at the text's end.
  for (size_t i = 0; i < tt.size(); ++i) {
    EXPECT_LE(tt.offsets[i].first, tt.offsets[i].second);
    EXPECT_LE(tt.offsets[i].second, static_cast<int64_t>(text.size()));
    if (i) {
      EXPECT_LE(tt.offsets[i - 1].second, tt.offsets[i].second);
    }
  }
  EXPECT_EQ(tt.offsets.back().second, static_cast<int64_t>(text.size()));
  EXPECT_EQ(t.decode(tt.ids), text);

  const tok::Encoding e = t.encode("what jumps?", std::string_view(text));
  const auto cls = t.token_to_id("[CLS]"), sep = t.token_to_id("[SEP]");
  ASSERT_TRUE(cls && sep);
  EXPECT_EQ(e.input_ids.front(), *cls);
  EXPECT_EQ(e.input_ids.back(), *sep);
  EXPECT_EQ(e.token_type_ids.back(), 1);

  tok::EncodeOptions o;
  o.truncation = tok::Truncation::OnlySecond;
  o.max_length = static_cast<int64_t>(t.tokenize("what jumps?").size()) + 3 + 6;
  o.stride = 2;
  o.return_overflowing_tokens = true;
  o.padding = tok::Padding::MaxLength;
  const tok::BatchEncoding w = t.encode_windows("what jumps?", std::string_view(text), o);
  ASSERT_GT(w.size(), 1u);
  for (const auto& row : w.encodings) EXPECT_EQ(static_cast<int64_t>(row.size()), *o.max_length);

  // Non-ASCII text: offsets count code points, not bytes.
  const std::string cafe = "Café 東京";
  const auto tc = t.tokenize_with_offsets(cafe);
  ASSERT_FALSE(tc.offsets.empty());
  EXPECT_EQ(tc.offsets.back().second, 7);
}

TEST(SentencePieceTokenizer, Errors) {
  EXPECT_THROW(tok::SentencePieceTokenizer("/nonexistent.model"), qdqbert::Error);
  const fs::path bad = fs::temp_directory_path() / ("qdqbert_bad_" + std::to_string(::getpid()) + ".model");
  std::ofstream(bad) << "not a model";
  EXPECT_THROW(tok::SentencePieceTokenizer(bad.string()), qdqbert::Error);
  fs::remove(bad);
  tok::SentencePieceTokenizerOptions o;
  o.plugin_path = "/nonexistent/libqdqbert_spm.so";
  try {
    tok::SentencePieceTokenizer t(model_path(), o);
    FAIL();
  } catch (const qdqbert::Error& e) {
    EXPECT_NE(std::string(e.what()).find("QDQBERT_SPM_PLUGIN"), std::string::npos) << e.what();
  }
  const auto t = tok::SentencePieceTokenizer::from_pretrained(model_path());
  EXPECT_THROW(t.tokenize("\xFF"), qdqbert::Error);
}

}  // namespace

// Either tokenizer behind the common interface: load_tokenizer picks SentencePiece for a folder with
// spiece.model and WordPiece for one with vocab.txt, and code written against tok::Tokenizer gets the same
// encodings as from the concrete class.
TEST(SentencePieceTokenizer, LoadTokenizerPicksTheKindAndTheInterfaceEncodesTheSame) {
  const fs::path dir = fs::path(model_path()).parent_path() / "checkpoint";
  fs::create_directories(dir);
  fs::copy_file(model_path(), dir / "spiece.model", fs::copy_options::overwrite_existing);
  const std::unique_ptr<tok::Tokenizer> t = tok::load_tokenizer(dir.string());
  ASSERT_NE(dynamic_cast<const tok::SentencePieceTokenizer*>(t.get()), nullptr);
  const auto direct = tok::SentencePieceTokenizer::from_pretrained(model_path());
  const std::vector<std::string> lines = {"the quick brown fox", "over the lazy dog river valley"};
  tok::EncodeOptions o;
  o.padding = tok::Padding::Longest;
  const auto a = t->encode_batch(lines, {}, o), b = direct.encode_batch(lines, {}, o);
  ASSERT_EQ(a.encodings.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(a.encodings[i].input_ids, b.encodings[i].input_ids);
  EXPECT_EQ(t->id_to_token(*t->token_to_id("[CLS]")), "[CLS]");
  EXPECT_EQ(t->id_to_token(-1), t->id_to_token(t->unk_token_id()));
  // A folder with a vocab.txt is WordPiece, even when it also holds a .model file.
  std::ofstream(dir / "vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nfox\n";
  const auto w = tok::load_tokenizer(dir.string());
  EXPECT_EQ(dynamic_cast<const tok::SentencePieceTokenizer*>(w.get()), nullptr);
  EXPECT_EQ(w->vocab_size(), 7);
  try {
    tok::load_tokenizer((dir / "missing").string());
    ADD_FAILURE() << "no error for a missing path";
  } catch (const qdqbert::Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}
