#pragma once
/// \file
/// JSON requests shaped like the Python tokenizer call, as `qdqbert-cli tokenize --requests` reads them:
/// `{"init": {do_lower_case, do_basic_tokenize, never_split, tokenize_chinese_chars, strip_accents},
///   "call": {text, text_pair, add_special_tokens, truncation, max_length, padding, stride,
///            return_overflowing_tokens}}` (other keys are ignored). The answer is one JSON object with the
/// Python key names: `tokens`, `tokens_pair`, `input_ids`, `token_type_ids`, `attention_mask`,
/// `special_tokens_mask`, `offset_mapping`, `overflowing_tokens`, `num_truncated_tokens`, `decoded`,
/// `decoded_skip_special`, `windows` (the windowed encoding: `{"windows": [...], "overflow_to_sample_mapping":
/// [...]}` or `{"error": ...}`), or `error` when the default encoding is rejected. Torch-free.

#include <map>
#include <memory>
#include <string>

#include "qdqbert/tokenization/bert_tokenizer.h"

namespace qdqbert::tokenization {

class RequestRunner {
 public:
  /// `base` supplies the vocabulary, special tokens and post-processor; a request's `init` overrides
  /// its constructor options.
  explicit RequestRunner(BertTokenizer base);
  /// Answers one request line with one JSON line (no trailing newline). Never throws for a bad request:
  /// the answer is then `{"error": "..."}`.
  std::string run(const std::string& request_line);

 private:
  const BertTokenizer& tokenizer_for(const std::string& init_json);
  BertTokenizer base_;
  std::map<std::string, std::unique_ptr<BertTokenizer>> cache_;
};

}  // namespace qdqbert::tokenization
