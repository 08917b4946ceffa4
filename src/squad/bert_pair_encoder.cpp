// TextEncoder over qdqbert::tokenization::BertTokenizer. The tokenizer component lives on another
// branch; until it is merged this file builds a stub that reports its absence.
#include "qdqbert/error.h"
#include "qdqbert/squad/features.h"

#if __has_include("qdqbert/tokenization/bert_tokenizer.h")
#define QDQBERT_SQUAD_HAVE_TOKENIZER 1
#include "qdqbert/tokenization/bert_tokenizer.h"
#else
#define QDQBERT_SQUAD_HAVE_TOKENIZER 0
#endif

namespace qdqbert::squad {

#if QDQBERT_SQUAD_HAVE_TOKENIZER
#error "write the BertTokenizer adapter"
#else
std::unique_ptr<TextEncoder> make_bert_text_encoder(const std::string& vocab_or_dir, bool /*do_lower_case*/) {
  fail("squad: qdqbert was built without the tokenizer component (qdqbert/tokenization/bert_tokenizer.h); "
       "cannot load ",
       vocab_or_dir);
}
#endif

}  // namespace qdqbert::squad
