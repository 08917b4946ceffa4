#pragma once
// qdqbert::text, UTF-8 (internal, torch-free): the project's one UTF-8 codec. A validating decoder that names the
// byte offset and the reason of the first invalid sequence, the encoder, and the code-point length of UTF-8 text.
// The Python `str` behaviours built on it are in text/pystr.h.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qdqbert::text {

/// The first invalid sequence of a byte string.
struct Utf8Error {
  size_t byte;         ///< 0-based offset of the sequence's first byte
  std::string reason;  ///< e.g. "byte 0xff cannot start a character", "overlong encoding"
};

/// Validates UTF-8 strictly (overlong forms, surrogates and values above U+10FFFF are invalid, as in
/// utf8proc_iterate and Python's decoder); returns nullopt for valid text.
std::optional<Utf8Error> find_invalid_utf8(std::string_view s);

/// Decodes UTF-8 into code points. Invalid input throws qdqbert::Error
/// "<component>: invalid UTF-8 in <what> at byte N (<reason>)", N being Utf8Error::byte.
std::u32string decode_utf8(std::string_view s, std::string_view component, std::string_view what);

/// Appends the UTF-8 encoding of `cp`, a Unicode scalar value.
void append_utf8(std::string& out, char32_t cp);

/// Encodes Unicode scalar values as UTF-8.
std::string encode_utf8(std::u32string_view cps);

/// Number of code points of valid UTF-8 (Python len() of the decoded str): the bytes that are not continuation bytes.
int64_t code_point_length(std::string_view s);

}  // namespace qdqbert::text
