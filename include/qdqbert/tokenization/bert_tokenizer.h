#pragma once
/// \file
/// qdqbert::tokenization::BertTokenizer — the C++ twin of Hugging Face's slow `BertTokenizer`
/// (transformers v4.34): basic tokenization (clean-up, CJK splitting, NFC, lower-casing, accent
/// stripping, punctuation splitting, never_split, special-token literals) and WordPiece, with
/// code-point offsets into the original text. Unicode data comes from utf8proc. Torch-free.
///
/// Two encodings, both shaped like the Python call `tokenizer(text, text_pair, **kwargs)`:
///  * `encode` / `encode_batch` — the default encoding: exactly the slow tokenizer's ids, type ids,
///    masks, truncation and single overflow list (except that an impossible truncation throws).
///  * `encode_windows` / `encode_windows_batch` — the windowed encoding of the fast tokenizer, which is
///    what question answering needs. A question-answering caller uses it like this (qdqbert's own SQuAD
///    features tokenize the context once and window it with the same overflow_windows, template.h):
///    \code
///    EncodeOptions o;
///    o.truncation = Truncation::OnlySecond;   // keep the question whole, window the context
///    o.max_length = 384;
///    o.stride = 128;                          // tokens shared by consecutive windows
///    o.return_overflowing_tokens = true;      // all windows, not just the first
///    o.padding = Padding::MaxLength;
///    BatchEncoding b = tok.encode_windows_batch(questions, contexts, o);
///    // b.encodings[k]: input_ids, token_type_ids, attention_mask, offset_mapping (code points into the
///    // context for sequence_ids == 1), sequence_ids; b.overflow_to_sample_mapping[k] = example index.
///    \endcode
///    Offsets count Unicode code points (Python string indices), not bytes; see utf8_to_code_points.
///
/// Errors are qdqbert::Error: missing/malformed vocabulary, special token absent from the vocabulary,
/// invalid UTF-8 (with the byte position), impossible truncation.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "qdqbert/tokenization/encoding.h"
#include "qdqbert/tokenization/template.h"
#include "qdqbert/tokenization/tokenizer.h"

namespace qdqbert::tokenization {

/// Constructor options of the Python `BertTokenizer` (same names and defaults).
struct BertTokenizerOptions {
  bool do_lower_case = true;
  bool do_basic_tokenize = true;
  std::vector<std::string> never_split;
  bool tokenize_chinese_chars = true;
  /// std::nullopt: follow `do_lower_case` (Python's `strip_accents=None`).
  std::optional<bool> strip_accents;
  std::string unk_token = "[UNK]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string cls_token = "[CLS]";
  std::string mask_token = "[MASK]";
  /// Further special tokens (`additional_special_tokens`): split out of text like `[MASK]`.
  std::vector<std::string> additional_special_tokens;
  /// std::nullopt: unbounded (Python's VERY_LARGE_INTEGER).
  std::optional<int64_t> model_max_length;
  int64_t max_input_chars_per_word = 100;
  std::string continuing_subword_prefix = "##";
  bool clean_up_tokenization_spaces = true;
};

class BertTokenizer : public Tokenizer {
 public:
  /// `vocab` lists the tokens in id order (id = position), as in vocab.txt.
  BertTokenizer(std::vector<std::string> vocab, BertTokenizerOptions options = {});
  ~BertTokenizer() override;
  BertTokenizer(BertTokenizer&&) noexcept;
  BertTokenizer& operator=(BertTokenizer&&) noexcept;
  BertTokenizer(const BertTokenizer&);
  BertTokenizer& operator=(const BertTokenizer&);

  /// `BertTokenizer.from_pretrained(path)`: `path` is a checkpoint folder or a vocab.txt file. A folder
  /// with tokenizer.json (BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing) is read from
  /// it; otherwise vocab.txt plus tokenizer_config.json / special_tokens_map.json when present.
  /// `overrides`, when given, replace the options read from the folder.
  static BertTokenizer from_pretrained(const std::string& path,
                                       const std::optional<BertTokenizerOptions>& overrides = std::nullopt);
  /// Reads a vocab.txt file (one token per line, id = line number).
  static BertTokenizer from_vocab_file(const std::string& path, BertTokenizerOptions options = {});
  /// Parses the text of a Hugging Face tokenizer.json (a BERT WordPiece one). `origin` names it in errors.
  static BertTokenizer from_tokenizer_json(const std::string& json_text, const std::string& origin = "tokenizer.json");
  /// Parses the lines of a vocab.txt (`origin` names it in errors).
  static std::vector<std::string> parse_vocab(const std::string& text, const std::string& origin = "vocab.txt");

  /// `tokenizer.tokenize(text)`: tokens without special tokens added.
  std::vector<std::string> tokenize(std::string_view text) const override;
  /// tokenize() plus ids and code-point offsets of every token.
  TokenizedText tokenize_with_offsets(std::string_view text) const override;

  // encode / encode_batch / encode_windows / encode_windows_batch: the shared ones of Tokenizer.
  std::optional<int64_t> model_max_length() const override;

  /// `tokenizer.decode(ids, skip_special_tokens, clean_up_tokenization_spaces)`.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false,
                     std::optional<bool> clean_up_tokenization_spaces = std::nullopt) const;
  /// `convert_ids_to_tokens`: unknown ids give the unk token.
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                 bool skip_special_tokens = false) const;
  /// `convert_tokens_to_ids`: unknown tokens give the unk id.
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& tokens) const;
  /// `convert_tokens_to_string`: joins with spaces and glues `##` pieces.
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const;
  /// The id of `token`, or std::nullopt.
  std::optional<int64_t> token_to_id(const std::string& token) const override;
  std::string id_to_token(int64_t id) const override;

  int64_t vocab_size() const override;
  const BertTokenizerOptions& options() const;
  const Template& post_processor() const override;
  int64_t unk_token_id() const override;
  int64_t cls_token_id() const;
  int64_t sep_token_id() const;
  int64_t pad_token_id() const override;
  int64_t mask_token_id() const;
  /// Ids of all special tokens (`all_special_ids`).
  std::vector<int64_t> all_special_ids() const;

  /// Replaces the post-processing template (from a tokenizer.json TemplateProcessing).
  void set_post_processor(Template t);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Decodes UTF-8 into code points; throws qdqbert::Error naming the byte position of the first
/// invalid sequence (overlong forms, surrogates and values above U+10FFFF are invalid).
std::u32string utf8_to_code_points(std::string_view text);
/// Encodes code points as UTF-8.
std::string code_points_to_utf8(std::u32string_view cps);
void append_utf8(std::string& out, char32_t cp);

}  // namespace qdqbert::tokenization
