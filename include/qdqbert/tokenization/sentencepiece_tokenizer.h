#pragma once
/// \file
/// qdqbert::tokenization::SentencePieceTokenizer — for checkpoints that ship a sentencepiece `.model`
/// (ALBERT-, XLNet-, T5-style), with the same encoding API as BertTokenizer (default and windowed
/// encodings, offsets in code points, padding, truncation, stride/overflow). Torch-free.
///
/// sentencepiece runs inside a small plugin (libqdqbert_spm.so) loaded with dlmopen(LM_ID_NEWLM): Debian's
/// libsentencepiece links its own protobuf-lite, which crashes next to LibTorch's protobuf when both
/// live in one link-map namespace. The plugin is looked up in this order: `options.plugin_path`, the
/// environment variable QDQBERT_SPM_PLUGIN, the build tree, the install tree (`<libdir>/qdqbert/`), and
/// `lib/qdqbert` next to the running program or library.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qdqbert/tokenization/encoding.h"
#include "qdqbert/tokenization/template.h"
#include "qdqbert/tokenization/tokenizer.h"

namespace qdqbert::tokenization {

struct SentencePieceTokenizerOptions {
  /// Special tokens wrapping the sequences as `cls A sep` / `cls A sep B sep` (ALBERT's template); when
  /// a token is not in the model, the model's bos / eos piece is used instead.
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  /// Lower-case the text before encoding (ALBERT's `do_lower_case`).
  bool do_lower_case = false;
  std::optional<int64_t> model_max_length;
  /// Path of libqdqbert_spm.so; empty = search (see the file comment).
  std::string plugin_path;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  /// Loads a `.model` file.
  explicit SentencePieceTokenizer(const std::string& model_path, SentencePieceTokenizerOptions options = {});
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept;
  SentencePieceTokenizer& operator=(SentencePieceTokenizer&&) noexcept;

  /// `path` is a `.model` file or a folder holding one (spiece.model, sentencepiece.bpe.model, or the
  /// only *.model); tokenizer_config.json supplies do_lower_case and model_max_length when present.
  static SentencePieceTokenizer from_pretrained(const std::string& path);
  /// Trains a model with `SentencePieceTrainer::Train(args)` (e.g. "--input=corpus.txt
  /// --model_prefix=/tmp/m --vocab_size=200"), inside the plugin.
  static void train(const std::string& args, const std::string& plugin_path = {});

  std::vector<std::string> tokenize(std::string_view text) const override;
  TokenizedText tokenize_with_offsets(std::string_view text) const override;
  // encode / encode_batch / encode_windows / encode_windows_batch: the shared ones of Tokenizer.
  std::optional<int64_t> model_max_length() const override;

  /// sentencepiece's Decode (control pieces such as cls/sep/pad are dropped by sentencepiece).
  std::string decode(const std::vector<int64_t>& ids) const;
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;
  std::optional<int64_t> token_to_id(const std::string& token) const override;
  std::string id_to_token(int64_t id) const override;
  int64_t vocab_size() const override;
  int64_t unk_token_id() const override;
  int64_t pad_token_id() const override;
  const Template& post_processor() const override;

  /// The plugin file that was loaded.
  static std::string plugin_location(const std::string& plugin_path = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qdqbert::tokenization
