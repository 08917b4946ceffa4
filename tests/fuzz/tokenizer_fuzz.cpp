// libFuzzer target: BertTokenizer on arbitrary bytes (tokenize, default and windowed encodings with
// fuzzed options, decode), the vocab.txt and tokenizer.json loaders, and the JSON request runner.
// Only qdqbert::Error may escape the library; every other exception, crash or broken invariant is a bug.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/request.h"

namespace tok = qdqbert::tokenization;

namespace {

std::vector<std::string> small_vocab() {
  std::vector<std::string> v{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* w :
       {"a", "b", "c",   "e", "the", "##s", "##e",  "##a",  "un", "##able", ",",   ".",   "!",   "é", "東", "##東",
        "ß", "i", "##i", "σ", "ς",   "ᄒ",  "##ᅡ", "##ᆫ", "[",  "]",      "##b", "##c", "don", "'", "t"}) {
    v.push_back(w);
  }
  return v;
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_encoding(const tok::Encoding& e, size_t n_a, size_t n_b) {
  const size_t n = e.input_ids.size();
  check(e.token_type_ids.size() == n && e.attention_mask.size() == n && e.special_tokens_mask.size() == n &&
        e.offset_mapping.size() == n && e.sequence_ids.size() == n);
  for (size_t i = 0; i < n; ++i) {
    const auto [s, t] = e.offset_mapping[i];
    check(s >= 0 && s <= t);
    if (e.sequence_ids[i] == 0) check(static_cast<size_t>(t) <= n_a);
    if (e.sequence_ids[i] == 1) check(static_cast<size_t>(t) <= n_b);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t mode = data[0] % 4, flags = data[1], knobs = data[2];
  const std::string rest(reinterpret_cast<const char*>(data + 3), size - 3);
  try {
    if (mode == 0) {
      static const std::vector<std::string> vocab = small_vocab();
      tok::BertTokenizerOptions o;
      o.do_lower_case = flags & 1;
      o.do_basic_tokenize = !(flags & 2);
      o.tokenize_chinese_chars = !(flags & 4);
      if (flags & 8) o.strip_accents = static_cast<bool>(flags & 16);
      if (flags & 32) o.never_split = {"un", "Don't"};
      o.max_input_chars_per_word = 1 + (knobs & 15);
      const tok::BertTokenizer t(vocab, o);
      // Split the rest into text and pair at the first 0x01 byte.
      const size_t cut = rest.find('\x01');
      const std::string a = rest.substr(0, cut);
      const std::optional<std::string> b =
          cut == std::string::npos ? std::nullopt : std::optional<std::string>(rest.substr(cut + 1));
      const tok::TokenizedText ta = t.tokenize_with_offsets(a);
      const size_t n_a = tok::utf8_to_code_points(a).size();
      const size_t n_b = b ? tok::utf8_to_code_points(*b).size() : 0;
      for (size_t i = 0; i < ta.size(); ++i) {
        check(ta.offsets[i].first >= 0 && ta.offsets[i].first <= ta.offsets[i].second &&
              static_cast<size_t>(ta.offsets[i].second) <= n_a);
        check(t.token_to_id(ta.tokens[i]).value_or(t.unk_token_id()) == ta.ids[i]);
      }
      tok::EncodeOptions eo;
      eo.add_special_tokens = !(knobs & 16);
      const int trunc = (knobs >> 5) & 3;
      if (trunc) eo.truncation = static_cast<tok::Truncation>(trunc);
      eo.max_length = static_cast<int64_t>(flags >> 6) * 4 + (knobs & 7);
      eo.stride = (knobs >> 3) & 3;
      eo.return_overflowing_tokens = flags & 64;
      eo.padding = static_cast<tok::Padding>((flags >> 7) * 2);
      const std::optional<std::string_view> bv = b ? std::optional<std::string_view>(*b) : std::nullopt;
      try {
        const tok::Encoding e = t.encode(a, bv, eo);
        check_encoding(e, n_a, n_b);
        (void)t.decode(e.input_ids, knobs & 1);
      } catch (const qdqbert::Error&) {
      }
      // Pair longest_first with overflow combines every window of A with every window of B (the Rust
      // merge order; truncation=None resolves to it here): quadratic by design, so keep those inputs small.
      const bool quadratic = b && eo.return_overflowing_tokens && trunc <= 1 && a.size() * b->size() > 4096;
      if (!quadratic) try {
          const tok::BatchEncoding w = t.encode_windows(a, bv, eo);
          for (const auto& e : w.encodings) {
            check_encoding(e, n_a, n_b);
            if (eo.truncation && *eo.truncation != tok::Truncation::None && eo.padding == tok::Padding::None) {
              check(static_cast<int64_t>(e.size()) <= *eo.max_length);
            }
          }
        } catch (const qdqbert::Error&) {
        }
    } else if (mode == 1) {
      const auto vocab = tok::BertTokenizer::parse_vocab(rest);
      const tok::BertTokenizer t(vocab);
      (void)t.encode("[CLS] some text, with words [MASK]", std::string_view("and a pair"));
    } else if (mode == 2) {
      const tok::BertTokenizer t = tok::BertTokenizer::from_tokenizer_json(rest);
      (void)t.encode("some text, with words", std::string_view("and a pair"));
    } else {
      static tok::RequestRunner runner{tok::BertTokenizer(small_vocab())};
      const std::string out = runner.run(rest);
      check(!out.empty() && out.front() == '{');
    }
  } catch (const qdqbert::Error&) {
  }
  return 0;
}
