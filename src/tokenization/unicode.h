#pragma once
// Unicode helpers of the tokenizers (internal): BERT's character classes and lower-casing, NFD and NFC, all on
// characters that carry their source span. All character data comes from utf8proc; the UTF-8 codec and Python
// str.isspace() are in text/utf8.h and text/pystr.h.
#include <cstdint>
#include <string>
#include <vector>

namespace qdqbert::tokenization::unicode {

/// A character with the [start, end) code-point span of the original text it came from.
struct Char {
  char32_t c;
  int32_t start, end;
};
using Chars = std::vector<Char>;

bool is_control(char32_t c);      // BERT _is_control: category C*, except \t \n \r
bool is_whitespace(char32_t c);   // BERT _is_whitespace: space \t \n \r or category Zs
bool is_punctuation(char32_t c);  // BERT _is_punctuation
bool is_cjk(char32_t c);          // BERT _is_chinese_char
bool is_mn(char32_t c);           // category Mn (removed by accent stripping)

/// Python str.lower() of the one character `ch` (text::lower_char) with ch's span; appends to `out`.
void lower_into(const Char& ch, Chars& out);
/// NFD with spans (full canonical decomposition + canonical ordering).
Chars nfd(const Chars& in);
/// NFC with spans: a composed cluster spans all of its source characters.
Chars nfc(const Chars& in);

}  // namespace qdqbert::tokenization::unicode
