#pragma once
/// \file
/// Bounded JSON parsing, torch-free (the core target). Every JSON document read from a file or from a
/// user goes through parse_json / parse_ordered_json: they refuse a document nested deeper than
/// kMaxJsonDepth while parsing, before anything recursive (dump(), a copy, a walker) can run on it, and
/// every error names the origin.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "qdqbert/error.h"

namespace qdqbert {

/// The deepest container nesting parse_json accepts; the outermost object or array is level 1, so a
/// document of 256 nested arrays parses and one of 257 does not. Real inputs (config.json, tokenizer
/// files, SQuAD, quant configs, safetensors headers, tokenize requests) nest fewer than 10 levels; deeper
/// nesting is only ever an attack or a corrupt file. nlohmann's dump(), its copy constructor and our own
/// walkers recurse once per level, so a document 100k levels deep would overflow the stack.
constexpr int kMaxJsonDepth = 256;

/// A syntax error from parse_json / parse_ordered_json. what() is "<origin>: invalid JSON: <parser
/// message>"; parser_message() is nlohmann's message alone, for callers that word the error their own way.
class JsonSyntaxError : public Error {
 public:
  JsonSyntaxError(const std::string& origin, const std::string& parser_message);
  /// nlohmann's message ("[json.exception.parse_error.101] parse error at line 1, column 2: ...").
  const std::string& parser_message() const { return parser_message_; }

 private:
  std::string parser_message_;
};

/// Parses `text` (one pass, nothing recursive). `origin` names the input in errors: a file ("config
/// '/path/config.json'") or what the text is ("request"). Throws JsonSyntaxError on a syntax error and
/// qdqbert::Error "<origin>: JSON nested deeper than <max_depth> levels (at byte <offset>)" when a
/// container opens at level max_depth + 1 (offset: 0-based, of that container's opening bracket).
nlohmann::json parse_json(std::string_view text, const std::string& origin, int max_depth = kMaxJsonDepth);

/// parse_json for the readers whose errors say "<subject> is not valid JSON: <parser message>" (the SQuAD
/// data, features and logits readers, squad-eval's predictions): a syntax error is worded that way, a
/// document nested too deep reads "<subject>: JSON nested deeper than ..."; both are qdqbert::Error.
nlohmann::json parse_json_document(std::string_view text, const std::string& subject);

/// parse_json for nlohmann::ordered_json (object keys keep their file order); same checks and errors.
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& origin,
                                          int max_depth = kMaxJsonDepth);

}  // namespace qdqbert
