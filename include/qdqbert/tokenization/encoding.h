#pragma once
/// \file
/// Encoding options and results shared by the qdqbert tokenizers (BertTokenizer, SentencePieceTokenizer).
/// Mirrors the keyword arguments and the BatchEncoding of the Hugging Face tokenizer call
/// `tokenizer(text, text_pair, add_special_tokens=..., truncation=..., max_length=..., padding=...,
/// stride=..., return_overflowing_tokens=...)`. Torch-free.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qdqbert::tokenization {

/// `truncation=` of the Python call. `None` is Python's `False` / `"do_not_truncate"`.
enum class Truncation { None, LongestFirst, OnlyFirst, OnlySecond };
/// `padding=` of the Python call. `Longest` is Python's `True` / `"longest"`.
enum class Padding { None, Longest, MaxLength };

/// Parses "longest_first" | "only_first" | "only_second" | "do_not_truncate" (throws qdqbert::Error).
Truncation parse_truncation(const std::string& s);
/// Parses "longest" | "max_length" | "do_not_pad" (throws qdqbert::Error).
Padding parse_padding(const std::string& s);

/// `[start, end)` in Unicode code points of the original text (Python string indices); (0, 0) for
/// special tokens and padding.
using Offset = std::pair<int64_t, int64_t>;

/// Keyword arguments of the Python call.
struct EncodeOptions {
  bool add_special_tokens = true;
  /// std::nullopt is Python's `truncation=None`: `longest_first` when `max_length` is given and no
  /// padding is requested, otherwise no truncation (the transformers resolution rule).
  std::optional<Truncation> truncation;
  /// std::nullopt: the tokenizer's `model_max_length` where truncation/`max_length` padding needs one.
  std::optional<int64_t> max_length;
  Padding padding = Padding::None;
  int64_t stride = 0;
  bool return_overflowing_tokens = false;
};

/// One encoded row: a sequence (default encoding) or one overflow window (windowed encoding).
struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> token_type_ids;
  std::vector<int64_t> attention_mask;
  std::vector<int64_t> special_tokens_mask;
  std::vector<Offset> offset_mapping;
  /// 0 for tokens of the first text, 1 for the second, -1 for special tokens and padding
  /// (Python's `sequence_ids()`, with -1 for None).
  std::vector<int> sequence_ids;
  /// Slow-tokenizer overflow (default encoding with `return_overflowing_tokens`): the truncated tail
  /// preceded by `stride` kept tokens, and `total - max_length` (reported even when <= 0).
  std::vector<int64_t> overflowing_tokens;
  std::optional<int64_t> num_truncated_tokens;

  size_t size() const { return input_ids.size(); }
};

/// Several rows: one per text of a batch (default encoding) or one per window (windowed encoding).
struct BatchEncoding {
  std::vector<Encoding> encodings;
  /// Row -> index of the text (or text pair) it came from.
  std::vector<int64_t> overflow_to_sample_mapping;

  size_t size() const { return encodings.size(); }
  const Encoding& operator[](size_t i) const { return encodings.at(i); }
};

}  // namespace qdqbert::tokenization
