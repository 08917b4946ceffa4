// qdqbert::text, Python `str`: isspace(), `\w`, lower() (with CPython's Final_Sigma rule), split() and slicing.
// Every character property comes from utf8proc.
#include "text/pystr.h"

#include <utf8proc.h>

#include <algorithm>

#include "text/utf8.h"

namespace qdqbert::text {
namespace {

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

bool is_cased(char32_t c) {
  const auto cp = static_cast<utf8proc_int32_t>(c);
  return utf8proc_islower(cp) || utf8proc_isupper(cp) || category(c) == UTF8PROC_CATEGORY_LT;
}

bool is_case_ignorable(char32_t c) {
  switch (c) {
    case U'\'':
    case U'.':
    case U':':
    case U'^':
    case U'`':
    case 0xB7:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0xFE52:
    case 0xFF07:
    case 0xFF0E:
      return true;
    default:
      break;
  }
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      return false;
  }
}

// Unicode's Final_Sigma condition for s[i], as CPython evaluates it in str.lower().
bool is_final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && is_case_ignorable(s[k])) ++k;
  return k == s.size() || !is_cased(s[k]);
}

}  // namespace

bool is_space(char32_t c) {
  if (c < 0x80) return c == U' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (category(c) == UTF8PROC_CATEGORY_ZS) return true;
  const int bidi = utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->bidi_class;
  return bidi == UTF8PROC_BIDI_CLASS_WS || bidi == UTF8PROC_BIDI_CLASS_B || bidi == UTF8PROC_BIDI_CLASS_S;
}

bool is_word(char32_t c) {
  if (c == U'_') return true;
  if (c < 0x80) return (c >= U'0' && c <= U'9') || (c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z');
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

int lower_char(char32_t c, char32_t (&out)[2]) {
  if (c < 0x80) {
    out[0] = c >= U'A' && c <= U'Z' ? c + 32 : c;
    return 1;
  }
  if (c == 0x130) {  // the one unconditional multi-code-point lower-case mapping (SpecialCasing.txt)
    out[0] = U'i';
    out[1] = 0x307;
    return 2;
  }
  out[0] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
  return 1;
}

std::u32string lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  char32_t l[2];
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 0x3A3) {
      out.push_back(is_final_sigma(s, i) ? 0x3C2 : 0x3C3);
      continue;
    }
    out.append(l, static_cast<size_t>(lower_char(s[i], l)));
  }
  return out;
}

std::vector<std::u32string> split(std::u32string_view s) {
  std::vector<std::u32string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string slice(std::u32string_view s, int64_t begin, int64_t end) {
  const int64_t n = static_cast<int64_t>(s.size());
  begin = std::min(std::max<int64_t>(begin, 0), n);
  end = std::min(std::max<int64_t>(end, 0), n);
  if (end <= begin) return {};
  return encode_utf8(s.substr(static_cast<size_t>(begin), static_cast<size_t>(end - begin)));
}

}  // namespace qdqbert::text
