#pragma once
// Internal helpers of qdqbert::squad: UTF-8 <-> code points and the few Python `str` behaviours the
// SQuAD reference relies on (indices are code points, str.lower(), str.split()).
#include <cstdint>
#include <string>
#include <vector>

namespace qdqbert::squad::text {

/// Decodes UTF-8; throws qdqbert::Error naming `what` on malformed input.
std::u32string decode(const std::string& s, const std::string& what = "text");
std::string encode(const std::u32string& s);

/// Number of code points (Python len()).
int64_t length(const std::string& s);

/// Python `s[begin:end]` on code points (indices clamped like a Python slice with non-negative bounds).
std::string slice(const std::u32string& s, int64_t begin, int64_t end);

/// Python str.isspace() for one code point (what str.split() and str.strip() use).
bool is_space(char32_t c);

/// Python's `\w` for str patterns: letters, numbers and underscore.
bool is_word(char32_t c);

/// Python str.lower(): full lower-casing (U+0130 -> "i\u0307", final sigma).
std::u32string lower(const std::u32string& s);

/// Python str.split() with no argument.
std::vector<std::u32string> split(const std::u32string& s);

}  // namespace qdqbert::squad::text
