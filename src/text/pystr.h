#pragma once
// qdqbert::text, Python `str` (internal, torch-free): the str behaviours that the Python references (SQuAD's
// evaluation script, transformers' tokenizers) rely on, on code points: isspace(), `\w`, lower(), split(), and
// slicing by code-point index. Character data comes from utf8proc; the UTF-8 codec is in text/utf8.h.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qdqbert::text {

/// Python str.isspace() of one code point (CPython's _PyUnicode_IsWhitespace: category Zs or bidirectional class
/// WS, B or S); what str.split() and str.strip() split on.
bool is_space(char32_t c);

/// Python's `\w` in a str pattern: letters, numbers and underscore.
bool is_word(char32_t c);

/// Python str.lower() of the one-character string `c`: the full mapping without context (U+0130 -> "i\u0307",
/// U+03A3 -> U+03C3). Writes one or two code points to `out` and returns how many.
int lower_char(char32_t c, char32_t (&out)[2]);

/// Python str.lower(): lower_char of every code point, except that U+03A3 becomes final sigma (U+03C2) where
/// Unicode's Final_Sigma condition holds.
std::u32string lower(std::u32string_view s);

/// Python str.split() with no argument.
std::vector<std::u32string> split(std::u32string_view s);

/// Python `s[begin:end]` on code points, as UTF-8 (bounds clamped to [0, len] like a slice with non-negative bounds).
std::string slice(std::u32string_view s, int64_t begin, int64_t end);

}  // namespace qdqbert::text
