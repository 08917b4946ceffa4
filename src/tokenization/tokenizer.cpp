#include "qdqbert/tokenization/tokenizer.h"

#include <filesystem>

#include "qdqbert/error.h"
#include "qdqbert/strings.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/sentencepiece_tokenizer.h"

namespace qdqbert::tokenization {

Encoding Tokenizer::encode(std::string_view text, std::optional<std::string_view> text_pair,
                           const EncodeOptions& options) const {
  const TokenizedText a = tokenize_with_offsets(text);
  if (text_pair) {
    const TokenizedText b = tokenize_with_offsets(*text_pair);
    return encode_sequences(a, &b, options, post_processor(), model_max_length());
  }
  return encode_sequences(a, nullptr, options, post_processor(), model_max_length());
}

namespace {
void check_pairs(const std::vector<std::string>& texts, const std::vector<std::string>& pairs) {
  if (!pairs.empty() && pairs.size() != texts.size()) {
    fail("tokenizer: batch of ", texts.size(), " texts but ", pairs.size(), " text pairs");
  }
}
}  // namespace

BatchEncoding Tokenizer::encode_batch(const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                                      const EncodeOptions& options) const {
  check_pairs(texts, pairs);
  BatchEncoding out;
  EncodeOptions row_options = options;
  if (options.padding == Padding::Longest) row_options.padding = Padding::None;
  // transformers resolves truncation=None from the batch-level padding request.
  if (!options.truncation && options.padding != Padding::None) row_options.truncation = Truncation::None;
  for (size_t i = 0; i < texts.size(); ++i) {
    out.encodings.push_back(
        encode(texts[i], pairs.empty() ? std::nullopt : std::optional<std::string_view>(pairs[i]), row_options));
    out.overflow_to_sample_mapping.push_back(static_cast<int64_t>(i));
  }
  if (options.padding == Padding::Longest) pad_batch(out.encodings, Padding::Longest, std::nullopt, post_processor());
  return out;
}

BatchEncoding Tokenizer::encode_windows(std::string_view text, std::optional<std::string_view> text_pair,
                                        const EncodeOptions& options) const {
  std::vector<std::string> texts{std::string(text)}, pairs;
  if (text_pair) pairs.emplace_back(*text_pair);
  return encode_windows_batch(texts, pairs, options);
}

BatchEncoding Tokenizer::encode_windows_batch(const std::vector<std::string>& texts,
                                              const std::vector<std::string>& pairs,
                                              const EncodeOptions& options) const {
  check_pairs(texts, pairs);
  BatchEncoding out;
  for (size_t i = 0; i < texts.size(); ++i) {
    const TokenizedText a = tokenize_with_offsets(texts[i]);
    std::optional<TokenizedText> b;
    if (!pairs.empty()) b = tokenize_with_offsets(pairs[i]);
    for (auto& r : tokenization::encode_windows(a, b ? &*b : nullptr, options, post_processor(), model_max_length())) {
      out.encodings.push_back(std::move(r));
      out.overflow_to_sample_mapping.push_back(static_cast<int64_t>(i));
    }
  }
  pad_batch(out.encodings, options.padding, options.max_length ? options.max_length : model_max_length(),
            post_processor());
  return out;
}

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
