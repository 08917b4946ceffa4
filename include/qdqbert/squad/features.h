#pragma once
/// \file
/// SQuAD feature windows, like `prepare_validation_features` / `prepare_train_features` of the Hugging
/// Face `run_quant_qa.py` on a fast BERT tokenizer called with the question first, the context second,
/// `truncation="only_second"`, `max_length`, `stride`, overflow and offsets. Torch-free.
///
/// The tokenizer is reached through `TextEncoder`, so this layer does not depend on a particular
/// tokenizer class: the window splitting, special tokens, padding, type ids, sequence ids and labels
/// are computed here (the behaviour of the Rust `tokenizers` pair truncation with stride).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/squad/dataset.h"

namespace qdqbert::squad {

/// `[start, end)` character (code point) offsets.
struct Offset {
  int64_t start = 0;
  int64_t end = 0;
  bool operator==(const Offset& o) const { return start == o.start && end == o.end; }
};

/// One text tokenized without special tokens: ids and code-point offsets into that text.
struct EncodedText {
  std::vector<int64_t> ids;
  std::vector<Offset> offsets;
};

/// What feature building needs from a tokenizer (implemented for qdqbert's BertTokenizer by
/// `make_bert_text_encoder`; tests may supply their own).
class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  /// Tokenizes one text (no special tokens, no truncation).
  virtual EncodedText encode(const std::string& text) const = 0;
  virtual int64_t cls_token_id() const = 0;
  virtual int64_t sep_token_id() const = 0;
  virtual int64_t pad_token_id() const = 0;
};

/// Mirrors the example's `--max_seq_length`, `--doc_stride`, `--pad_to_max_length`.
struct FeatureOptions {
  int64_t max_seq_length = 384;
  int64_t doc_stride = 128;
  bool pad_to_max_length = true;
};

/// One window. Both views of the reference are here: the validation view (`example_id`,
/// `offset_mapping` with null outside the context) and the train view (`raw_offsets`, labels).
struct Feature {
  int64_t feature_index = 0;
  std::string example_id;
  int64_t example_index = 0;  ///< `overflow_to_sample_mapping`
  std::vector<int64_t> input_ids, token_type_ids, attention_mask;
  /// -1 for special tokens and padding (Python None), 0 question, 1 context.
  std::vector<int> sequence_ids;
  /// Validation view: context offsets, nullopt for every other position.
  std::vector<std::optional<Offset>> offset_mapping;
  /// Train view: offsets as the tokenizer returns them ([0, 0] for special tokens and padding).
  std::vector<Offset> raw_offsets;
  int64_t start_position = 0, end_position = 0;  ///< train labels (CLS index when not in the window)
};

/// Builds the windows of every example, ordered by example then window. Questions are tokenized as
/// written (the reference does not left-strip them). Throws qdqbert::Error (naming the question id) when the question
/// leaves no room for context or `doc_stride` is not smaller than the context budget of a split question.
std::vector<Feature> build_features(const std::vector<Example>& examples, const TextEncoder& encoder,
                                    const FeatureOptions& options);

/// The context windows `[begin, end)` (token indices) that a context of `num_tokens` tokens is split
/// into with a budget of `window` tokens and `stride` tokens of overlap.
std::vector<std::pair<int64_t, int64_t>> context_windows(int64_t num_tokens, int64_t window, int64_t stride);

/// Writes features in the layout of `tests/data/squad/README.md` §1 (`config`, `num_examples`,
/// `validation_features`, `train_features`). `config_json` is inserted verbatim as "config" (a JSON
/// object text; empty for none).
std::string features_to_json(const std::vector<Feature>& features, int64_t num_examples,
                             const std::string& config_json = "");

/// Reads the validation view (`example_id`, `offset_mapping`; the other fields when present) from a
/// features JSON file of that layout.
std::vector<Feature> read_validation_features(const std::string& path);
/// read_validation_features on text already read (`path` names it in errors).
std::vector<Feature> parse_validation_features(const std::string& text, const std::string& path);

/// Train labels of one window, like `prepare_train_features` (including its quirk when the answer
/// starts in the window's last context token). Exposed for testing.
std::pair<int64_t, int64_t> train_labels(const Example& example, const std::vector<int64_t>& input_ids,
                                         const std::vector<int>& sequence_ids, const std::vector<Offset>& offsets,
                                         int64_t cls_token_id);

/// A TextEncoder over qdqbert::tokenization::BertTokenizer loaded from a vocab.txt or a tokenizer
/// folder (defined in src/squad/bert_pair_encoder.cpp; needs the tokenizer component).
std::unique_ptr<TextEncoder> make_bert_text_encoder(const std::string& vocab_or_dir, bool do_lower_case = true);

}  // namespace qdqbert::squad
