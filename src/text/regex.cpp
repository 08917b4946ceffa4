// qdqbert::Regex: a parser into a small syntax tree, a compiler from the tree into a Thompson NFA (a
// program of Class / Split / Jump / Begin / End / Match instructions), and a Pike-VM simulation of that NFA
// with one state set per text position.
//
// Bounds: the parser recurses once per group level (parse_alternation -> parse_sequence -> parse_repeat ->
// parse_atom -> parse_alternation) and checks the level against kMaxRegexNesting before it recurses; the
// tree is at most three nodes deep per group level (sequence, repeat, alternation), so the compiler's
// recursion is bounded too. Every tree node records how many instructions it will compile to, computed and
// checked against kMaxRegexStates as soon as the node is built, before anything is expanded. The tree lives
// in one vector (children are indices), so freeing it recurses nowhere.
//
// Matching keeps, per text position, the set of NFA states reached (a sparse set, so membership, insertion
// and clearing are O(1)); an epsilon closure visits each state at most once per position, which also makes
// loops over empty-matching bodies (`(a*)*`, `(|a)+`) terminate. Time is O(states × text length), memory
// O(states). Laziness and captures do not change whether a match exists, so they are parsed and ignored.
#include "qdqbert/regex.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "qdqbert/error.h"

namespace qdqbert {

namespace detail {

/// A set of bytes, one bit each.
using ByteSet = std::array<uint64_t, 4>;

enum class Op : uint8_t {
  kClass,  // consume one byte that is in classes[x]
  kSplit,  // continue at x and at y
  kJump,   // continue at x
  kBegin,  // continue at the next instruction if at the start of the text
  kEnd,    // continue at the next instruction if at the end of the text
  kMatch,  // accept
};

struct Inst {
  Op op;
  uint32_t x = 0;
  uint32_t y = 0;
};

struct RegexProgram {
  std::vector<Inst> code;  // starts at 0; ends with the one kMatch
  std::vector<ByteSet> classes;
};

}  // namespace detail

namespace {

using detail::ByteSet;
using detail::Inst;
using detail::Op;
using detail::RegexProgram;

void add_byte(ByteSet& set, unsigned char c) { set[c >> 6] |= uint64_t{1} << (c & 63); }

bool has_byte(const ByteSet& set, unsigned char c) { return (set[c >> 6] >> (c & 63)) & 1; }

void add_range(ByteSet& set, unsigned char lo, unsigned char hi) {
  for (unsigned c = lo; c <= hi; ++c) add_byte(set, static_cast<unsigned char>(c));
}

void add_set(ByteSet& set, const ByteSet& other) {
  for (size_t i = 0; i < set.size(); ++i) set[i] |= other[i];
}

ByteSet complement(ByteSet set) {
  for (uint64_t& word : set) word = ~word;
  return set;
}

ByteSet byte_set(unsigned char c) {
  ByteSet set{};
  add_byte(set, c);
  return set;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/// The set of `\d`, `\w` or `\s` (lower case) and its complement (upper case); `kind` is the escape letter.
ByteSet class_escape(char kind) {
  ByteSet set{};
  switch (kind) {
    case 'd':
    case 'D':
      add_range(set, '0', '9');
      break;
    case 'w':
    case 'W':
      add_range(set, '0', '9');
      add_range(set, 'a', 'z');
      add_range(set, 'A', 'Z');
      add_byte(set, '_');
      break;
    default:  // 's', 'S': the ASCII whitespace of ECMAScript's \s
      for (char c : {' ', '\t', '\n', '\v', '\f', '\r'}) add_byte(set, static_cast<unsigned char>(c));
      break;
  }
  return (kind >= 'A' && kind <= 'Z') ? complement(set) : set;
}

/// A syntax-tree node. Children are indices into the tree's node vector.
struct Node {
  enum class Kind { kClass, kBegin, kEnd, kSequence, kAlternation, kRepeat };
  Kind kind = Kind::kSequence;
  uint32_t set = 0;            // kClass: index into the classes
  int min = 0, max = 0;        // kRepeat: max < 0 means unbounded
  std::vector<uint32_t> kids;  // kSequence, kAlternation: the items; kRepeat: the operand
  size_t states = 0;           // instructions this node compiles to
};

/// What an escape sequence stands for: one byte, or a set (\d \w \s and their complements).
struct Escape {
  bool is_set = false;
  unsigned char byte = 0;
  ByteSet set{};
};

/// A quoted pattern for error messages: whole up to 200 bytes, otherwise its start and "...".
std::string quote(std::string_view pattern) {
  constexpr size_t kQuoted = 200;
  if (pattern.size() <= kQuoted) return std::string(pattern);
  return std::string(pattern.substr(0, kQuoted)) + "...";
}

class Parser {
 public:
  Parser(std::string_view pattern, const std::string& origin, RegexProgram& program)
      : pattern_(pattern), origin_(origin), program_(program) {}

  /// Parses the whole pattern; returns the root node.
  uint32_t parse() {
    if (pattern_.size() > kMaxRegexLength) {
      error("pattern longer than " + std::to_string(kMaxRegexLength) + " bytes", kMaxRegexLength);
    }
    const uint32_t root = parse_alternation(0);
    if (pos_ < pattern_.size()) error("unmatched ')'", pos_);  // parse_sequence stops only at '|', ')' or the end
    check_states(nodes_[root].states, 0);
    return root;
  }

  const std::vector<Node>& nodes() const { return nodes_; }

 private:
  [[noreturn]] void error(const std::string& reason, size_t offset) const {
    fail(origin_, ": invalid regex '", quote(pattern_), "': ", reason, " at offset ", offset);
  }

  /// Refuses a node of `states` instructions (plus the final Match) over kMaxRegexStates.
  void check_states(size_t states, size_t offset) const {
    if (states + 1 > kMaxRegexStates) {
      error("pattern needs more than " + std::to_string(kMaxRegexStates) + " NFA states", offset);
    }
  }

  bool at_end() const { return pos_ >= pattern_.size(); }
  char peek() const { return pattern_[pos_]; }

  uint32_t add_node(Node node) {
    nodes_.push_back(std::move(node));
    return static_cast<uint32_t>(nodes_.size() - 1);
  }

  uint32_t add_class(const ByteSet& set) {
    program_.classes.push_back(set);
    Node node;
    node.kind = Node::Kind::kClass;
    node.set = static_cast<uint32_t>(program_.classes.size() - 1);
    node.states = 1;
    return add_node(std::move(node));
  }

  /// alternation := sequence ('|' sequence)*; `depth` is the number of groups around it.
  uint32_t parse_alternation(int depth) {
    const size_t start = pos_;
    std::vector<uint32_t> branches{parse_sequence(depth)};
    while (!at_end() && peek() == '|') {
      ++pos_;
      branches.push_back(parse_sequence(depth));
    }
    if (branches.size() == 1) return branches[0];
    Node node;
    node.kind = Node::Kind::kAlternation;
    node.states = 2 * (branches.size() - 1);  // a Split and a Jump per branch but the last
    for (uint32_t b : branches) node.states += nodes_[b].states;
    check_states(node.states, start);
    node.kids = std::move(branches);
    return add_node(std::move(node));
  }

  /// sequence := repeat*, up to '|', ')' or the end.
  uint32_t parse_sequence(int depth) {
    Node node;
    node.kind = Node::Kind::kSequence;
    while (!at_end() && peek() != '|' && peek() != ')') {
      const size_t start = pos_;
      const uint32_t item = parse_repeat(depth);
      node.states += nodes_[item].states;
      check_states(node.states, start);
      node.kids.push_back(item);
    }
    if (node.kids.size() == 1) return node.kids[0];
    return add_node(std::move(node));  // no items: kSequence of nothing, which matches the empty string
  }

  static bool is_quantifier(char c) { return c == '*' || c == '+' || c == '?' || c == '{'; }

  /// repeat := atom quantifier? where quantifier := ('*' | '+' | '?' | '{n}' | '{n,}' | '{n,m}') '?'?
  uint32_t parse_repeat(int depth) {
    const uint32_t atom = parse_atom(depth);
    if (at_end() || !is_quantifier(peek())) return atom;
    const size_t at = pos_;
    if (atom_is_anchor_) error("nothing to repeat (an anchor)", at);
    int min = 0, max = -1;
    switch (peek()) {
      case '*':
        ++pos_;
        break;
      case '+':
        min = 1;
        ++pos_;
        break;
      case '?':
        max = 1;
        ++pos_;
        break;
      default:
        parse_braces(min, max);
        break;
    }
    if (!at_end() && peek() == '?') ++pos_;  // lazy: the same yes/no answer
    if (!at_end() && is_quantifier(peek())) error("nothing to repeat (a quantifier after a quantifier)", pos_);
    // x{min,max} compiles to min copies of x, then, unbounded: a loop (a Split and a Jump around x when
    // min == 0; else the last copy gets a Split back to itself); bounded: max - min copies of x behind a Split.
    const uint64_t s = nodes_[atom].states;
    uint64_t states = 0;
    if (max < 0) {
      states = min == 0 ? s + 2 : static_cast<uint64_t>(min) * s + 1;
    } else {
      states = static_cast<uint64_t>(min) * s + static_cast<uint64_t>(max - min) * (s + 1);
    }
    check_states(states, at);
    Node node;
    node.kind = Node::Kind::kRepeat;
    node.min = min;
    node.max = max;
    node.kids = {atom};
    node.states = states;
    return add_node(std::move(node));
  }

  /// Reads a decimal count, saturated just above kMaxRegexRepeat; returns false when there are no digits.
  bool parse_count(int& value) {
    if (at_end() || !is_digit(peek())) return false;
    value = 0;
    while (!at_end() && is_digit(peek())) {
      value = std::min(value * 10 + (peek() - '0'), kMaxRegexRepeat + 1);
      ++pos_;
    }
    return true;
  }

  /// `{n}`, `{n,}` or `{n,m}` at pos_ ('{').
  void parse_braces(int& min, int& max) {
    const size_t at = pos_;
    ++pos_;
    const char* const malformed = "malformed repeat braces (expected {n}, {n,} or {n,m}; write \\{ for a '{')";
    if (!parse_count(min)) error(malformed, at);
    max = min;
    if (!at_end() && peek() == ',') {
      ++pos_;
      if (!parse_count(max)) max = -1;
    }
    if (at_end() || peek() != '}') error(malformed, at);
    ++pos_;
    if (min > kMaxRegexRepeat || max > kMaxRegexRepeat) {
      error("repeat count larger than " + std::to_string(kMaxRegexRepeat), at);
    }
    if (max >= 0 && min > max) error("invalid repeat range {m,n} with m > n", at);
  }

  /// One atom at pos_; sets atom_is_anchor_ when it is a bare `^` or `$` (which cannot be quantified; a group
  /// holding one, `(^)*`, can).
  uint32_t parse_atom(int depth) {
    const size_t at = pos_;
    const char c = peek();
    atom_is_anchor_ = c == '^' || c == '$';
    switch (c) {
      case '(': {
        const uint32_t group = parse_group(depth);
        atom_is_anchor_ = false;  // the group's own atoms may have set it
        return group;
      }
      case '*':
      case '+':
      case '?':
      case '{':
        error("nothing to repeat", at);
      case ']':
        error("unmatched ']' (write \\] for a literal ']')", at);
      case '}':
        error("unmatched '}' (write \\} for a literal '}')", at);
      case '[':
        return parse_class();
      case '.':
        ++pos_;
        return add_class(complement(byte_set('\n')));
      case '^':
      case '$': {
        ++pos_;
        Node node;
        node.kind = c == '^' ? Node::Kind::kBegin : Node::Kind::kEnd;
        node.states = 1;
        return add_node(std::move(node));
      }
      case '\\': {
        const Escape e = parse_escape(false);
        return add_class(e.is_set ? e.set : byte_set(e.byte));
      }
      default:
        ++pos_;
        return add_class(byte_set(static_cast<unsigned char>(c)));
    }
  }

  /// `( ... )` or `(?: ... )` at pos_.
  uint32_t parse_group(int depth) {
    const size_t open = pos_;
    ++pos_;
    if (!at_end() && peek() == '?') {
      const std::string_view rest = pattern_.substr(pos_);
      if (rest.substr(0, 2) == "?:") {
        pos_ += 2;
      } else if (rest.substr(0, 2) == "?=" || rest.substr(0, 2) == "?!") {
        error("lookahead assertions are not supported", open);
      } else if (rest.substr(0, 3) == "?<=" || rest.substr(0, 3) == "?<!") {
        error("lookbehind assertions are not supported", open);
      } else if (rest.substr(0, 2) == "?<") {
        error("named groups are not supported", open);
      } else {
        error("unsupported group syntax '(?' (only '(' and '(?:' are supported)", open);
      }
    }
    if (depth + 1 > kMaxRegexNesting) {
      error("groups nested deeper than " + std::to_string(kMaxRegexNesting) + " levels", open);
    }
    const uint32_t inner = parse_alternation(depth + 1);
    if (at_end()) error("unmatched '('", open);
    ++pos_;  // ')': parse_alternation stops only there or at the end
    return inner;
  }

  /// A backslash escape at pos_; `in_class` when inside [...].
  Escape parse_escape(bool in_class) {
    const size_t at = pos_;
    if (pos_ + 1 >= pattern_.size()) error("trailing backslash", at);
    const char c = pattern_[pos_ + 1];
    pos_ += 2;
    Escape e;
    switch (c) {
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 's':
      case 'S':
        e.is_set = true;
        e.set = class_escape(c);
        return e;
      case 't':
        e.byte = '\t';
        return e;
      case 'n':
        e.byte = '\n';
        return e;
      case 'r':
        e.byte = '\r';
        return e;
      case 'b':
      case 'B':
        if (!in_class) error("word boundary assertions (\\b, \\B) are not supported", at);
        break;
      default:
        if (c >= '1' && c <= '9') error("backreferences are not supported", at);
        break;
    }
    if (is_alnum(c)) error(std::string("unsupported escape '\\") + c + "'", at);
    e.byte = static_cast<unsigned char>(c);  // an escaped non-alphanumeric byte is that byte
    return e;
  }

  /// One member of a class at pos_: a byte or an escape.
  Escape parse_class_atom() {
    if (peek() == '\\') return parse_escape(true);
    Escape e;
    e.byte = static_cast<unsigned char>(peek());
    ++pos_;
    return e;
  }

  /// `[...]` at pos_.
  uint32_t parse_class() {
    const size_t open = pos_;
    ++pos_;
    bool negate = false;
    if (!at_end() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    const bool starts_with_bracket = !at_end() && peek() == ']';
    ByteSet set{};
    bool first = true;
    for (;;) {
      if (at_end()) {
        error(starts_with_bracket ? "empty character class (a ']' right after '[' or '[^' is a literal, and the class "
                                    "is never closed)"
                                  : "unterminated character class (unmatched '[')",
              open);
      }
      if (peek() == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      const size_t atom_at = pos_;
      const Escape lo = parse_class_atom();
      // A '-' between two members makes a range; first, last (before ']') or after a range it is a literal.
      if (pos_ + 1 < pattern_.size() && peek() == '-' && pattern_[pos_ + 1] != ']') {
        ++pos_;
        const Escape hi = parse_class_atom();
        if (lo.is_set || hi.is_set) error("invalid range in character class (a class escape as an endpoint)", atom_at);
        if (lo.byte > hi.byte) error("reversed range in character class", atom_at);
        add_range(set, lo.byte, hi.byte);
      } else if (lo.is_set) {
        add_set(set, lo.set);
      } else {
        add_byte(set, lo.byte);
      }
    }
    return add_class(negate ? complement(set) : set);
  }

  std::string_view pattern_;
  const std::string& origin_;
  RegexProgram& program_;
  size_t pos_ = 0;
  bool atom_is_anchor_ = false;
  std::vector<Node> nodes_;
};

/// Compiles the syntax tree into program.code. Recursion follows the tree, whose depth is bounded by the
/// nesting limit.
class Compiler {
 public:
  Compiler(const std::vector<Node>& nodes, RegexProgram& program) : nodes_(nodes), code_(program.code) {}

  void compile(uint32_t root) {
    code_.reserve(nodes_[root].states + 1);
    emit(root);
    code_.push_back(Inst{Op::kMatch});
    // The parser's state counts mirror emit(); a mismatch would be a bug here, not a user error.
    QDQBERT_CHECK(code_.size() == nodes_[root].states + 1, "regex: compiled ", code_.size(), " instructions where ",
                  nodes_[root].states + 1, " were counted");
  }

 private:
  uint32_t here() const { return static_cast<uint32_t>(code_.size()); }

  uint32_t push(Op op, uint32_t x = 0, uint32_t y = 0) {
    code_.push_back(Inst{op, x, y});
    return here() - 1;
  }

  /// Emits node `id`. A node counted at 0 states emits nothing and is skipped whole, and so are the copies of a
  /// 0-state operand in a repeat, so the work is proportional to the states emitted: `((((){1000}){1000}){1000})`
  /// costs nothing rather than 10^9 empty calls.
  void emit(uint32_t id) {
    const Node& node = nodes_[id];
    if (node.states == 0) return;
    switch (node.kind) {
      case Node::Kind::kClass:
        push(Op::kClass, node.set);
        break;
      case Node::Kind::kBegin:
        push(Op::kBegin);
        break;
      case Node::Kind::kEnd:
        push(Op::kEnd);
        break;
      case Node::Kind::kSequence:
        for (uint32_t kid : node.kids) emit(kid);
        break;
      case Node::Kind::kAlternation: {
        // Split(branch, next split) ... branch; Jump(end) ... last branch; end:
        std::vector<uint32_t> jumps;
        for (size_t i = 0; i + 1 < node.kids.size(); ++i) {
          const uint32_t split = push(Op::kSplit, here() + 1);
          emit(node.kids[i]);
          jumps.push_back(push(Op::kJump));
          code_[split].y = here();
        }
        emit(node.kids.back());
        for (uint32_t j : jumps) code_[j].x = here();
        break;
      }
      case Node::Kind::kRepeat:
        emit_repeat(node);
        break;
    }
  }

  void emit_repeat(const Node& node) {
    const uint32_t kid = node.kids[0];
    const int copies = nodes_[kid].states == 0 ? 0 : node.min;  // min copies of nothing are nothing
    if (node.max < 0) {
      if (node.min == 0) {
        // loop: Split(body, out); body; Jump(loop); out:
        const uint32_t loop = push(Op::kSplit, here() + 1);
        emit(kid);
        push(Op::kJump, loop);
        code_[loop].y = here();
        return;
      }
      for (int i = 0; i + 1 < copies; ++i) emit(kid);
      // body: x; Split(body, out); out:
      const uint32_t body = here();
      emit(kid);
      push(Op::kSplit, body, here() + 1);
      return;
    }
    for (int i = 0; i < copies; ++i) emit(kid);
    for (int i = node.min; i < node.max; ++i) {
      // Split(body, out); body; out:
      const uint32_t split = push(Op::kSplit, here() + 1);
      emit(kid);
      code_[split].y = here();
    }
  }

  const std::vector<Node>& nodes_;
  std::vector<Inst>& code_;
};

/// A set of NFA states with O(1) insert, lookup and clear (the sparse-set trick; no initialisation needed).
class StateSet {
 public:
  explicit StateSet(size_t n) : dense_(n), sparse_(n) {}
  bool contains(uint32_t s) const { return sparse_[s] < size_ && dense_[sparse_[s]] == s; }
  void insert(uint32_t s) {
    sparse_[s] = size_;
    dense_[size_++] = s;
  }
  void clear() { size_ = 0; }
  size_t size() const { return size_; }
  uint32_t operator[](size_t i) const { return dense_[i]; }

 private:
  std::vector<uint32_t> dense_, sparse_;
  uint32_t size_ = 0;
};

/// Adds `start` and every state reachable from it without consuming a byte, at text position `pos` of a
/// text of `length` bytes, to `set`. Iterative: `stack` is scratch space of at least 2 * states + 1 entries,
/// which is enough because each state is expanded at most once and pushes at most two.
void add_closure(const std::vector<Inst>& code, StateSet& set, std::vector<uint32_t>& stack, uint32_t start, size_t pos,
                 size_t length) {
  size_t top = 0;
  stack[top++] = start;
  while (top > 0) {
    const uint32_t s = stack[--top];
    if (set.contains(s)) continue;
    set.insert(s);
    const Inst& inst = code[s];
    switch (inst.op) {
      case Op::kSplit:
        stack[top++] = inst.y;
        stack[top++] = inst.x;
        break;
      case Op::kJump:
        stack[top++] = inst.x;
        break;
      case Op::kBegin:
        if (pos == 0) stack[top++] = s + 1;
        break;
      case Op::kEnd:
        if (pos == length) stack[top++] = s + 1;
        break;
      case Op::kClass:
      case Op::kMatch:
        break;
    }
  }
}

/// The Pike-VM simulation: `whole` for full_match, else search (a new thread starts at every position).
bool run(const RegexProgram& program, std::string_view text, bool whole) {
  const std::vector<Inst>& code = program.code;
  StateSet current(code.size()), next(code.size());
  std::vector<uint32_t> stack(2 * code.size() + 1);
  const size_t length = text.size();
  for (size_t pos = 0;; ++pos) {
    if (pos == 0 || !whole) add_closure(code, current, stack, 0, pos, length);
    if (current.size() == 0) return false;  // only when whole: a search always has the start thread
    for (size_t i = 0; i < current.size(); ++i) {
      const uint32_t s = current[i];
      const Inst& inst = code[s];
      if (inst.op == Op::kMatch) {
        if (!whole || pos == length) return true;
      } else if (inst.op == Op::kClass && pos < length &&
                 has_byte(program.classes[inst.x], static_cast<unsigned char>(text[pos]))) {
        add_closure(code, next, stack, s + 1, pos + 1, length);
      }
    }
    if (pos == length) return false;
    std::swap(current, next);
    next.clear();
  }
}

}  // namespace

Regex::Regex(std::string_view pattern, const std::string& origin) : pattern_(pattern) {
  auto program = std::make_shared<RegexProgram>();
  Parser parser(pattern, origin, *program);
  const uint32_t root = parser.parse();
  Compiler(parser.nodes(), *program).compile(root);
  program_ = std::move(program);
}

bool Regex::search(std::string_view text) const { return program_ ? run(*program_, text, false) : true; }

bool Regex::full_match(std::string_view text) const { return program_ ? run(*program_, text, true) : text.empty(); }

}  // namespace qdqbert
