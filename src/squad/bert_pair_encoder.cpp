// squad::TextEncoder over qdqbert::tokenization::BertTokenizer (make_bert_text_encoder).
// The tokenizer component comes from another branch: until both are merged this file builds a stub
// that reports its absence, so the SQuAD library, its tests and the CLI build on their own.
#include <filesystem>

#include "qdqbert/error.h"
#include "qdqbert/squad/features.h"

#include "qdqbert/tokenization/bert_tokenizer.h"

namespace qdqbert::squad {


namespace {

class BertTextEncoder final : public TextEncoder {
 public:
  explicit BertTextEncoder(tokenization::BertTokenizer tok) : tok_(std::move(tok)) {}

  // The fast tokenizer tokenizes each sequence of a pair on its own (no special tokens), then windows
  // and wraps them; build_features does the windowing and wrapping.
  EncodedText encode(const std::string& text) const override {
    const tokenization::TokenizedText t = tok_.tokenize_with_offsets(text);
    EncodedText out;
    out.ids = t.ids;
    out.offsets.reserve(t.offsets.size());
    for (const auto& [s, e] : t.offsets) out.offsets.push_back({s, e});
    return out;
  }
  int64_t cls_token_id() const override { return tok_.cls_token_id(); }
  int64_t sep_token_id() const override { return tok_.sep_token_id(); }
  int64_t pad_token_id() const override { return tok_.pad_token_id(); }

 private:
  tokenization::BertTokenizer tok_;
};

}  // namespace

std::unique_ptr<TextEncoder> make_bert_text_encoder(const std::string& vocab_or_dir, bool do_lower_case) {
  if (std::filesystem::is_regular_file(vocab_or_dir)) {
    tokenization::BertTokenizerOptions opt;
    opt.do_lower_case = do_lower_case;
    return std::make_unique<BertTextEncoder>(tokenization::BertTokenizer::from_vocab_file(vocab_or_dir, opt));
  }
  // A checkpoint folder: its tokenizer.json / tokenizer_config.json decide the options.
  return std::make_unique<BertTextEncoder>(tokenization::BertTokenizer::from_pretrained(vocab_or_dir));
}

}  // namespace qdqbert::squad
