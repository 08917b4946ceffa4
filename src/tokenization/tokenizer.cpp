#include "qdqbert/tokenization/tokenizer.h"

#include <filesystem>

#include "qdqbert/error.h"
#include "qdqbert/strings.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/sentencepiece_tokenizer.h"

namespace qdqbert::tokenization {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  QDQBERT_CHECK(fs::exists(path, ec), "tokenizer: '", path, "' does not exist");
  bool sentencepiece = ends_with(path, ".model") && fs::is_regular_file(path, ec);
  if (fs::is_directory(path, ec)) {
    const fs::path d(path);
    const bool wordpiece = fs::exists(d / "vocab.txt", ec) || fs::exists(d / "tokenizer.json", ec);
    sentencepiece = !wordpiece && (fs::exists(d / "spiece.model", ec) || fs::exists(d / "sentencepiece.bpe.model", ec));
  }
  if (sentencepiece) return std::make_unique<SentencePieceTokenizer>(SentencePieceTokenizer::from_pretrained(path));
  return std::make_unique<BertTokenizer>(BertTokenizer::from_pretrained(path));
}

}  // namespace qdqbert::tokenization
