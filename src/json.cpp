// parse_json / parse_ordered_json: nlohmann's parser with a depth limit and errors that name the origin.
//
// One pass: the parse runs with a parser callback, which nlohmann calls at every container start with the
// number of enclosing containers. nlohmann 3.11's parser is iterative (an explicit state stack, as is the
// destructor), so nothing recurses before the callback sees the first container that is too deep; the
// callback then throws, and the partial document it leaves behind is at most max_depth levels deep.
#include "qdqbert/json.h"

namespace qdqbert {

JsonSyntaxError::JsonSyntaxError(const std::string& origin, const std::string& parser_message)
    : Error(origin + ": invalid JSON: " + parser_message), parser_message_(parser_message) {}

namespace {

/// Thrown by the parser callback at the first container one level too deep; never leaves this file.
struct TooDeep {};

/// The 0-based offset of the bracket that opens level max_depth + 1, or npos. Only called once the parser
/// has stopped at that bracket, so the text before it is valid JSON and a lexical scan that skips string
/// contents counts exactly the containers the parser saw.
size_t offset_of_level(std::string_view text, int max_depth) {
  int level = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++level > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --level;
    }
  }
  return std::string_view::npos;
}

template <typename Json>
Json parse_bounded(std::string_view text, const std::string& origin, int max_depth) {
  QDQBERT_CHECK(max_depth >= 0, origin, ": invalid JSON depth limit ", max_depth);
  using Event = typename Json::parse_event_t;
  // `depth` at a container start is the number of containers around it: the new container's level is
  // depth + 1. Every event is kept (true), so the result equals a parse without a callback.
  const typename Json::parser_callback_t limit = [max_depth](int depth, Event event, Json&) {
    if ((event == Event::object_start || event == Event::array_start) && depth >= max_depth) throw TooDeep{};
    return true;
  };
  try {
    return Json::parse(text.data(), text.data() + text.size(), limit);
  } catch (const TooDeep&) {
    const size_t at = offset_of_level(text, max_depth);
    if (at == std::string_view::npos) fail(origin, ": JSON nested deeper than ", max_depth, " levels");
    fail(origin, ": JSON nested deeper than ", max_depth, " levels (at byte ", at, ")");
  } catch (const nlohmann::json::exception& e) {
    throw JsonSyntaxError(origin, e.what());
  }
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& origin, int max_depth) {
  return parse_bounded<nlohmann::json>(text, origin, max_depth);
}

nlohmann::json parse_json_document(std::string_view text, const std::string& subject) {
  try {
    return parse_json(text, subject);
  } catch (const JsonSyntaxError& e) {
    fail(subject, " is not valid JSON: ", e.parser_message());
  }
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& origin, int max_depth) {
  return parse_bounded<nlohmann::ordered_json>(text, origin, max_depth);
}

}  // namespace qdqbert
