#pragma once
/// \file
/// The interface BertTokenizer (WordPiece) and SentencePieceTokenizer share, so that code which only
/// encodes text (embed, calibration and distillation batches, the CLI) takes either. Torch-free.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qdqbert/tokenization/encoding.h"
#include "qdqbert/tokenization/template.h"

namespace qdqbert::tokenization {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Tokens without special tokens.
  virtual std::vector<std::string> tokenize(std::string_view text) const = 0;
  /// tokenize() plus ids and code-point offsets of every token.
  virtual TokenizedText tokenize_with_offsets(std::string_view text) const = 0;
  /// Default encoding of a text or text pair: tokenize_with_offsets() of each, then the post-processor's
  /// template with truncation and padding (template.h). The same for every tokenizer.
  Encoding encode(std::string_view text, std::optional<std::string_view> text_pair = std::nullopt,
                  const EncodeOptions& options = {}) const;
  /// Default encoding of a batch (`pairs` empty or as long as `texts`); padding spans the batch.
  BatchEncoding encode_batch(const std::vector<std::string>& texts, const std::vector<std::string>& pairs = {},
                             const EncodeOptions& options = {}) const;
  /// Windowed (fast-tokenizer) encoding: overflowing windows overlapping by options.stride tokens.
  BatchEncoding encode_windows(std::string_view text, std::optional<std::string_view> text_pair = std::nullopt,
                               const EncodeOptions& options = {}) const;
  BatchEncoding encode_windows_batch(const std::vector<std::string>& texts, const std::vector<std::string>& pairs = {},
                                     const EncodeOptions& options = {}) const;
  /// tokenizer_config.json's model_max_length (std::nullopt: unbounded), the default max_length.
  virtual std::optional<int64_t> model_max_length() const = 0;
  /// The id of `token`, or std::nullopt.
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  /// The token of `id` (the unknown token for an id outside the vocabulary).
  virtual std::string id_to_token(int64_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t unk_token_id() const = 0;
  virtual int64_t pad_token_id() const = 0;
  virtual const Template& post_processor() const = 0;

 protected:
  Tokenizer() = default;
  Tokenizer(const Tokenizer&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;
};

/// The tokenizer of a checkpoint folder (or file): a SentencePiece model when `path` is a `.model` file or
/// a folder with spiece.model / sentencepiece.bpe.model and neither vocab.txt nor tokenizer.json; else
/// BertTokenizer::from_pretrained. Errors name the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace qdqbert::tokenization
