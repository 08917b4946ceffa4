// Unicode helpers of the tokenizers: BERT's character classes, span-keeping lower-casing, NFD and NFC. Every
// property comes from utf8proc; only BERT's own definitions (its CJK ranges and its ASCII punctuation rule) are
// spelled out here.
#include "tokenization/unicode.h"

#include <utf8proc.h>

#include <algorithm>

#include "text/pystr.h"

namespace qdqbert::tokenization::unicode {
namespace {

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

int ccc(char32_t c) { return utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->combining_class; }

bool is_c_category(utf8proc_category_t cat) {
  return cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO;
}

// Appends the full canonical decomposition of `ch` (Hangul included) with ch's span.
void decompose_into(const Char& ch, Chars& out) {
  if (ch.c < 0xC0) {  // nothing below U+00C0 decomposes canonically
    out.push_back(ch);
    return;
  }
  utf8proc_int32_t buf[32];
  int boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(ch.c), buf, 32, UTF8PROC_DECOMPOSE, &boundclass);
  if (n <= 0 || n > 32) {
    out.push_back(ch);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) out.push_back(Char{static_cast<char32_t>(buf[i]), ch.start, ch.end});
}

// Canonical ordering: a stable sort by combining class of every run of non-starters.
void canonical_order(Chars& s) {
  size_t i = 0;
  while (i < s.size()) {
    if (ccc(s[i].c) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && ccc(s[j].c) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(j),
                       [](const Char& a, const Char& b) { return ccc(a.c) < ccc(b.c); });
    }
    i = j;
  }
}

// NFC of an already decomposed and ordered run (code points only).
std::u32string compose(const Chars& d, size_t begin, size_t end) {
  std::vector<utf8proc_int32_t> buf;
  buf.reserve(end - begin + 1);
  for (size_t i = begin; i < end; ++i) buf.push_back(static_cast<utf8proc_int32_t>(d[i].c));
  if (buf.empty()) return {};
  buf.push_back(0);
  const utf8proc_ssize_t n =
      utf8proc_normalize_utf32(buf.data(), static_cast<utf8proc_ssize_t>(end - begin),
                               static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE));
  std::u32string out;
  for (utf8proc_ssize_t i = 0; i < std::max<utf8proc_ssize_t>(n, 0); ++i) out.push_back(static_cast<char32_t>(buf[i]));
  return out;
}

}  // namespace

bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return is_c_category(category(c));
}

bool is_whitespace(char32_t c) {
  if (c == U' ' || c == U'\t' || c == U'\n' || c == U'\r') return true;
  return category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  if (c < 0x80) return false;
  const utf8proc_category_t cat = category(c);
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_mn(char32_t c) { return c >= 0x300 && category(c) == UTF8PROC_CATEGORY_MN; }

void lower_into(const Char& ch, Chars& out) {
  char32_t l[2];
  const int n = text::lower_char(ch.c, l);
  for (int i = 0; i < n; ++i) out.push_back(Char{l[i], ch.start, ch.end});
}

Chars nfd(const Chars& in) {
  Chars out;
  out.reserve(in.size() + 4);
  bool marks = false;
  for (const Char& ch : in) {
    decompose_into(ch, out);
    if (ch.c >= 0x300) marks = true;
  }
  if (marks) canonical_order(out);
  return out;
}

Chars nfc(const Chars& in) {
  // Text made only of characters below U+0300 is already NFC: none of them has a singleton
  // decomposition or composes with a preceding character (combining marks start at U+0300).
  if (std::all_of(in.begin(), in.end(), [](const Char& ch) { return ch.c < 0x300; })) return in;
  const Chars d = nfd(in);
  Chars out;
  out.reserve(d.size());
  // Group into runs that start at a starter; merge consecutive runs while composition crosses them
  // (Hangul L+V+T and the other starter-starter pairs).
  auto emit = [&](size_t b, size_t e) {
    const std::u32string composed = compose(d, b, e);
    bool same = composed.size() == e - b;
    for (size_t i = 0; same && i < composed.size(); ++i) same = composed[i] == d[b + i].c;
    if (same) {
      out.insert(out.end(), d.begin() + static_cast<std::ptrdiff_t>(b), d.begin() + static_cast<std::ptrdiff_t>(e));
      return;
    }
    int32_t s = d[b].start, t = d[b].end;
    for (size_t i = b; i < e; ++i) {
      s = std::min(s, d[i].start);
      t = std::max(t, d[i].end);
    }
    for (char32_t c : composed) out.push_back(Char{c, s, t});
  };
  size_t cur_b = 0, cur_e = 0;
  size_t i = 0;
  while (i < d.size()) {
    size_t j = i + 1;
    while (j < d.size() && ccc(d[j].c) != 0) ++j;
    if (cur_e == cur_b) {
      cur_b = i;
      cur_e = j;
    } else {
      // Does run [i, j) compose with the current one?
      const bool crosses = (d[i].c >= 0x300) && (compose(d, cur_b, j) != compose(d, cur_b, cur_e) + compose(d, i, j));
      if (crosses) {
        cur_e = j;
      } else {
        emit(cur_b, cur_e);
        cur_b = i;
        cur_e = j;
      }
    }
    i = j;
  }
  if (cur_e > cur_b) emit(cur_b, cur_e);
  return out;
}

}  // namespace qdqbert::tokenization::unicode
