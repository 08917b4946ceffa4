#pragma once
/// \file
/// qdqbert::Error — the exception type of the torch-free parts of qdqbert (tokenizer, JSON, SQuAD,
/// ONNX writer, file formats). Code that uses torch reports with TORCH_CHECK (c10::Error). Both derive
/// from std::exception, so a caller can catch everything as std::exception.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace qdqbert {

/// An error with a message that names the component and the file, key, shape or position at fault.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

/// Builds a message from any streamable pieces and throws qdqbert::Error.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  detail::append_all(os, args...);
  throw Error(os.str());
}

}  // namespace qdqbert

/// Throws qdqbert::Error with the streamed pieces when `cond` is false.
#define QDQBERT_CHECK(cond, ...)        \
  do {                                  \
    if (!(cond)) ::qdqbert::fail(__VA_ARGS__); \
  } while (0)
