#pragma once
/// \file
/// The model-independent half of a tokenizer call: wrapping token sequences with special tokens
/// (a post-processing template like the Hugging Face `TemplateProcessing`), truncation, overflow
/// windows and padding. BertTokenizer and SentencePieceTokenizer both turn text into a TokenizedText
/// and hand it to these functions. Torch-free.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qdqbert/tokenization/encoding.h"

namespace qdqbert::tokenization {

/// The tokens of one text, without special tokens added: `tokenizer.tokenize(text)` plus ids and
/// code-point offsets into the text.
struct TokenizedText {
  std::vector<std::string> tokens;
  std::vector<int64_t> ids;
  std::vector<Offset> offsets;
  size_t size() const { return ids.size(); }
};

/// Where special tokens go around one or two sequences, with the type id of every piece
/// (`TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1")`).
struct Template {
  struct Piece {
    int sequence = -1;  ///< 0 = $A, 1 = $B, -1 = the special token `id`
    int64_t id = -1;
    int64_t type_id = 0;
  };
  std::vector<Piece> single, pair;
  int64_t pad_id = 0;
  int64_t pad_type_id = 0;

  /// Number of special tokens added around one (`pair=false`) or two sequences.
  int64_t num_special_tokens(bool is_pair) const;
  /// `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1` with the given ids.
  static Template bert(int64_t cls_id, int64_t sep_id, int64_t pad_id);
};

/// Default encoding of one text or pair, with exactly the slow Python `BertTokenizer` semantics
/// (`prepare_for_model`): one row, one-token-at-a-time `longest_first`, a single overflow list.
/// Where the slow tokenizer would only log an error and return a sequence longer than `max_length`,
/// this throws qdqbert::Error instead. Padding `Longest` is a no-op for one row.
Encoding encode_sequences(const TokenizedText& a, const TokenizedText* b, const EncodeOptions& options,
                          const Template& tmpl, std::optional<int64_t> model_max_length);

/// The windows [start, stop) of a sequence of `n` tokens cut to `max_len` tokens each, consecutive
/// windows overlapping by `stride` tokens, the last one reaching the end (the Rust tokenizers'
/// Encoding::truncate overflow). One window when n <= max_len. Errors: max_len 0, stride >= max_len.
/// The only windowing in qdqbert: encode_windows and SQuAD's context windows use it.
std::vector<std::pair<size_t, size_t>> overflow_windows(size_t n, size_t max_len, size_t stride);

/// Windowed encoding with the semantics of the fast (Rust) tokenizer: the truncated sequence is cut
/// into windows overlapping by `stride` tokens, every window wrapped in special tokens; all windows
/// when `return_overflowing_tokens`, else only the first. Errors (qdqbert::Error): "Sequence to
/// truncate too short", "Second sequence not provided", "`stride` must be strictly less than `max_len`".
/// Rows are not padded (see pad_batch).
std::vector<Encoding> encode_windows(const TokenizedText& a, const TokenizedText* b, const EncodeOptions& options,
                                     const Template& tmpl, std::optional<int64_t> model_max_length);

/// The longest row pad_batch pads to: a max_length above it (a typo, or a hostile tokenizer_config.json or
/// request) is an error instead of an allocation of gigabytes.
constexpr int64_t kMaxPaddedLength = 65536;

/// Pads every row on the right: to the longest row (`Longest`) or to `max_length` (`MaxLength`;
/// longer rows are left as they are). Error for a max_length above kMaxPaddedLength.
void pad_batch(std::vector<Encoding>& rows, Padding padding, std::optional<int64_t> max_length, const Template& tmpl);

/// Resolves `truncation=None` / `max_length=None` as transformers does. Returns the strategy to apply
/// and sets `max_length` (std::nullopt when none applies).
Truncation resolve_truncation(const EncodeOptions& options, std::optional<int64_t> model_max_length,
                              std::optional<int64_t>& max_length);

}  // namespace qdqbert::tokenization
