#pragma once
/// \file
/// qdqbert::Regex — a small linear-time regular-expression matcher for user-supplied patterns (quantizer-name
/// rules in quant configs, --disable/--enable style name filters), torch-free (the core target).
///
/// std::regex (libstdc++) is a backtracking engine: `(.|.)*Z` takes minutes on a 55-character name and deep
/// patterns overflow its recursive compiler. Regex compiles the pattern into a Thompson NFA and simulates it
/// with a state set (a Pike VM without captures), so search/full_match run in O(states × text length) time
/// and O(states) memory whatever the pattern, and compilation is bounded by the limits below.
///
/// Syntax: an ECMAScript subset, byte-oriented (quantizer names are ASCII):
///  - literals; `.` (any byte except '\n'); `\d \D \w \W \s \S`; `\t \n \r`; any escaped ASCII punctuation
///    (`\. \\ \* \+ \? \( \) \[ \] \{ \} \| \^ \$ \/ \-` ...) is that literal character;
///  - classes `[abc]`, `[a-z0-9_]`, `[^...]`, with escapes and `\d \D \w \W \s \S` inside; `]` right after
///    `[` or `[^` is a literal (as in Python/POSIX: `[]a]` is the set {']', 'a'}), `-` first or last is a
///    literal;
///  - groups `( )` and `(?: )` (both only group: the answer is a boolean), alternation `|` including empty
///    alternatives, quantifiers `* + ? {n} {n,} {n,m}` and their lazy forms (same answer), anchors `^` and
///    `$` (start and end of the text; there is no multiline mode).
/// Everything else is refused with qdqbert::Error: backreferences, lookarounds, `\b \B`, unknown escapes,
/// unbalanced `( ) [ ] { }`, a quantifier with nothing to repeat (including a quantifier right after
/// another one, `a**`, and a quantified anchor, `^*`), bad or oversized `{n,m}`, a trailing backslash, an
/// empty class, a reversed range, and patterns beyond the limits below.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace qdqbert {

/// The longest pattern Regex accepts, in bytes. Real quantizer-name patterns are well under 200 bytes; the
/// limit keeps the parse and the error messages (which quote the pattern) small.
constexpr size_t kMaxRegexLength = 4096;

/// The deepest group nesting Regex accepts: `(((a)))` is 3 levels. The parser and the compiler recurse once
/// per level (a few frames each), so the bound keeps a hostile pattern like 20,000 nested parentheses from
/// overflowing the stack; real patterns nest fewer than 5 levels.
constexpr int kMaxRegexNesting = 100;

/// The largest n or m in `{n}`, `{n,}`, `{n,m}`. A counted repeat is expanded into copies of its operand,
/// so the count multiplies the NFA size; larger counts are never needed to match names.
constexpr int kMaxRegexRepeat = 1000;

/// The most NFA states (instructions) a compiled pattern may have after counted repeats are expanded. It
/// bounds the memory of a Regex and the per-byte cost of matching; it is checked while parsing, before any
/// expansion, so `(a{1000}){1000}` (a million states) is refused at once.
constexpr size_t kMaxRegexStates = 100000;

namespace detail {
struct RegexProgram;
}  // namespace detail

/// A compiled pattern. Immutable once built: copies share the compiled program, and search/full_match may
/// be called from several threads at once.
class Regex {
 public:
  /// The empty pattern: search() is true for every text, full_match() only for the empty text (like
  /// std::regex_search / std::regex_match with "").
  Regex() = default;

  /// Compiles `pattern`. `origin` names it in errors (e.g. "quant config 'x.json': rule pattern"). Throws
  /// qdqbert::Error "<origin>: invalid regex '<pattern>': <reason> at offset <k>", where k is the 0-based byte
  /// offset in the pattern of the character at fault (patterns over 200 bytes are quoted cut short, with
  /// "...").
  explicit Regex(std::string_view pattern, const std::string& origin = "regex");

  /// True when some substring of `text` matches (std::regex_search / Python re.search semantics).
  bool search(std::string_view text) const;

  /// True when the whole of `text` matches (std::regex_match / Python re.fullmatch semantics).
  bool full_match(std::string_view text) const;

  /// The pattern as given to the constructor ("" for a default-constructed Regex).
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::shared_ptr<const detail::RegexProgram> program_;  // null: the empty pattern
};

}  // namespace qdqbert
