// qdqbert::text, UTF-8: the strict decoder (one sequence at a time, with the reason of a failure), the encoder and
// the code-point count. Accepts exactly what utf8proc_iterate accepts.
#include "text/utf8.h"

#include <sstream>

#include "qdqbert/error.h"

namespace qdqbert::text {
namespace {

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Decodes the sequence that starts at s[i] (i < s.size()) into `cp` and returns its length in bytes; for an
// invalid sequence returns 0 and writes the reason to `why` (left alone otherwise).
size_t decode_one(std::string_view s, size_t i, char32_t& cp, std::string& why) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) {
    cp = b;
    return 1;
  }
  size_t len;
  char32_t min;
  if ((b & 0xE0) == 0xC0) {
    len = 2, cp = b & 0x1F, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3, cp = b & 0x0F, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4, cp = b & 0x07, min = 0x10000;
  } else {
    why = concat("byte 0x", std::hex, static_cast<int>(b), " cannot start a character");
    return 0;
  }
  if (len > s.size() - i) {
    why = concat("truncated ", len, "-byte sequence");
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      why = concat("bad continuation byte at ", i + k);
      return 0;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min) {
    why = "overlong encoding";
    return 0;
  }
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    why = concat("code point U+", std::hex, static_cast<uint32_t>(cp), " is not a Unicode scalar value");
    return 0;
  }
  return len;
}

}  // namespace

std::optional<Utf8Error> find_invalid_utf8(std::string_view s) {
  std::string why;
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    const size_t n = decode_one(s, i, cp, why);
    if (n == 0) return Utf8Error{i, std::move(why)};
    i += n;
  }
  return std::nullopt;
}

std::u32string decode_utf8(std::string_view s, std::string_view component, std::string_view what) {
  std::u32string out;
  out.reserve(s.size());
  std::string why;
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    const size_t n = decode_one(s, i, cp, why);
    if (n == 0) fail(component, ": invalid UTF-8 in ", what, " at byte ", i, " (", why, ")");
    out.push_back(cp);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

int64_t code_point_length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace qdqbert::text
