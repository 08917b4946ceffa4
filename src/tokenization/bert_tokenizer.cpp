// BertTokenizer: the slow transformers (v4.34) pipeline, character by character with source spans so
// that every token knows the code points of the original text it came from.
#include "qdqbert/tokenization/bert_tokenizer.h"

#include <algorithm>
#include <unordered_set>

#include "qdqbert/error.h"
#include "text/pystr.h"
#include "text/utf8.h"
#include "tokenization/unicode.h"

namespace qdqbert::tokenization {

using unicode::Char;
using unicode::Chars;

// ------------------------------------------------------------------------------------------------
// UTF-8 (the public names of qdqbert::text's codec)
// ------------------------------------------------------------------------------------------------
std::u32string utf8_to_code_points(std::string_view s) { return text::decode_utf8(s, "tokenizer", "input text"); }

void append_utf8(std::string& out, char32_t cp) { text::append_utf8(out, cp); }

std::string code_points_to_utf8(std::u32string_view cps) { return text::encode_utf8(cps); }

// ------------------------------------------------------------------------------------------------
// Impl
// ------------------------------------------------------------------------------------------------
struct BertTokenizer::Impl {
  BertTokenizerOptions opt;
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, int64_t> vocab;
  std::unordered_set<std::string> never_split;
  std::vector<std::u32string> literals;  // special tokens split out of text, longest first
  std::vector<int64_t> literal_ids;
  std::vector<int64_t> special_ids;
  Template tmpl;
  int64_t unk_id = -1, cls_id = -1, sep_id = -1, pad_id = -1, mask_id = -1;
  bool lower = false, strip = false;
  size_t max_entry_bytes = 0;  // the longest vocabulary entry, in UTF-8 bytes

  int64_t lookup(const std::string& t) const {
    auto it = vocab.find(t);
    return it == vocab.end() ? unk_id : it->second;
  }

  void push(TokenizedText& out, std::string token, int64_t id, int32_t s, int32_t e) const {
    out.tokens.push_back(std::move(token));
    out.ids.push_back(id);
    out.offsets.push_back({s, e});
  }

  static std::pair<int32_t, int32_t> span_of(const Char* b, const Char* e) {
    int32_t s = b->start, t = b->end;
    for (const Char* p = b; p != e; ++p) {
      s = std::min(s, p->start);
      t = std::max(t, p->end);
    }
    return {s, t};
  }

  void wordpiece(const Char* b, const Char* e, TokenizedText& out) const {
    const size_t n = static_cast<size_t>(e - b);
    if (n == 0) return;
    if (static_cast<int64_t>(n) > opt.max_input_chars_per_word) {
      auto [s, t] = span_of(b, e);
      push(out, opt.unk_token, unk_id, s, t);
      return;
    }
    std::string bytes;
    std::vector<size_t> pos(n + 1);
    for (size_t i = 0; i < n; ++i) {
      pos[i] = bytes.size();
      append_utf8(bytes, b[i].c);
    }
    pos[n] = bytes.size();
    const size_t mark = out.size();
    std::string cand;
    size_t start = 0;
    while (start < n) {
      // Candidates longer than the longest vocabulary entry cannot match: starting at the longest that
      // can keeps the greedy longest-match result and makes a word of n characters cost O(n * L^2) for
      // entries of at most L bytes, whatever max_input_chars_per_word allows (tokenizer.json can set 1e9).
      const size_t prefix = start > 0 ? opt.continuing_subword_prefix.size() : 0;
      size_t end = n;
      if (max_entry_bytes < prefix + (pos[n] - pos[start])) {
        const size_t budget = max_entry_bytes >= prefix ? max_entry_bytes - prefix : 0;
        end = static_cast<size_t>(std::upper_bound(pos.begin() + static_cast<std::ptrdiff_t>(start), pos.end(),
                                                   pos[start] + budget) - pos.begin()) - 1;
      }
      int64_t found = -1;
      while (start < end) {
        cand.clear();
        if (start > 0) cand += opt.continuing_subword_prefix;
        cand.append(bytes, pos[start], pos[end] - pos[start]);
        auto it = vocab.find(cand);
        if (it != vocab.end()) {
          found = it->second;
          break;
        }
        --end;
      }
      if (found < 0) {  // the whole word is unknown
        out.tokens.resize(mark);
        out.ids.resize(mark);
        out.offsets.resize(mark);
        auto [s, t] = span_of(b, e);
        push(out, opt.unk_token, unk_id, s, t);
        return;
      }
      auto [s, t] = span_of(b + start, b + end);
      push(out, cand, found, s, t);
      start = end;
    }
  }

  // One whitespace-separated word of the basic tokenizer.
  void basic_word(const Char* b, const Char* e, TokenizedText& out) const {
    if (!never_split.empty()) {
      std::string w;
      for (const Char* p = b; p != e; ++p) append_utf8(w, p->c);
      if (never_split.count(w)) {
        auto [s, t] = span_of(b, e);
        push(out, w, lookup(w), s, t);
        return;
      }
    }
    Chars word(b, e);
    if (lower) {
      Chars l;
      l.reserve(word.size());
      for (const Char& c : word) unicode::lower_into(c, l);
      word.swap(l);
    }
    if (strip) {
      Chars d = unicode::nfd(word);
      word.clear();
      for (const Char& c : d) {
        if (!unicode::is_mn(c.c)) word.push_back(c);
      }
    }
    // Punctuation split, then WordPiece on every piece (a piece cannot hold whitespace unless accent
    // stripping made some: split on it too, as the reference's final whitespace_tokenize does).
    size_t i = 0;
    const size_t n = word.size();
    while (i < n) {
      const char32_t c = word[i].c;
      if (text::is_space(c)) {
        ++i;
      } else if (unicode::is_punctuation(c)) {
        wordpiece(word.data() + i, word.data() + i + 1, out);
        ++i;
      } else {
        size_t j = i + 1;
        while (j < n && !unicode::is_punctuation(word[j].c) && !text::is_space(word[j].c)) ++j;
        wordpiece(word.data() + i, word.data() + j, out);
        i = j;
      }
    }
  }

  template <typename F>
  static void split_ws(const Chars& chars, F&& f) {
    size_t i = 0;
    const size_t n = chars.size();
    while (i < n) {
      while (i < n && text::is_space(chars[i].c)) ++i;
      size_t j = i;
      while (j < n && !text::is_space(chars[j].c)) ++j;
      if (j > i) f(chars.data() + i, chars.data() + j);
      i = j;
    }
  }

  // A piece of text between special-token literals; [b, e) are code-point indices.
  void segment(const std::u32string& cps, size_t b, size_t e, TokenizedText& out) const {
    if (b >= e) return;
    Chars chars;
    chars.reserve(e - b);
    if (!opt.do_basic_tokenize) {
      for (size_t i = b; i < e; ++i)
        chars.push_back(Char{cps[i], static_cast<int32_t>(i), static_cast<int32_t>(i + 1)});
      split_ws(chars, [&](const Char* wb, const Char* we) { wordpiece(wb, we, out); });
      return;
    }
    Chars lowered;
    for (size_t i = b; i < e; ++i) {
      const Char ch{cps[i], static_cast<int32_t>(i), static_cast<int32_t>(i + 1)};
      if (opt.do_lower_case) {
        unicode::lower_into(ch, lowered);
      } else {
        lowered.push_back(ch);
      }
    }
    for (const Char& ch : lowered) {
      const char32_t c = ch.c;
      if (c == 0 || c == 0xFFFD || unicode::is_control(c)) continue;
      if (unicode::is_whitespace(c)) {
        chars.push_back(Char{U' ', ch.start, ch.end});
      } else if (opt.tokenize_chinese_chars && unicode::is_cjk(c)) {
        chars.push_back(Char{U' ', ch.start, ch.end});
        chars.push_back(ch);
        chars.push_back(Char{U' ', ch.start, ch.end});
      } else {
        chars.push_back(ch);
      }
    }
    const Chars normalized = unicode::nfc(chars);
    split_ws(normalized, [&](const Char* wb, const Char* we) { basic_word(wb, we, out); });
  }

  void tokenize(std::string_view text, TokenizedText& out) const {
    const std::u32string cps = utf8_to_code_points(text);
    size_t seg = 0, i = 0;
    const size_t n = cps.size();
    while (i < n) {
      size_t hit = literals.size();
      for (size_t k = 0; k < literals.size(); ++k) {
        const auto& lit = literals[k];
        if (lit.size() <= n - i && cps.compare(i, lit.size(), lit) == 0) {
          hit = k;
          break;  // literals are sorted longest first
        }
      }
      if (hit == literals.size()) {
        ++i;
        continue;
      }
      segment(cps, seg, i, out);
      const size_t len = literals[hit].size();
      push(out, code_points_to_utf8(literals[hit]), literal_ids[hit], static_cast<int32_t>(i),
           static_cast<int32_t>(i + len));
      i += len;
      seg = i;
    }
    segment(cps, seg, n, out);
  }
};

namespace {
int64_t require_id(const std::unordered_map<std::string, int64_t>& vocab, const std::string& token, const char* role) {
  auto it = vocab.find(token);
  if (it == vocab.end()) {
    fail("BertTokenizer: the special token ", role, " = '", token, "' is not in the vocabulary (", vocab.size(),
         " entries)");
  }
  return it->second;
}
}  // namespace

BertTokenizer::BertTokenizer(std::vector<std::string> vocab, BertTokenizerOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (vocab.empty()) fail("BertTokenizer: the vocabulary is empty");
  m.opt = std::move(options);
  if (m.opt.max_input_chars_per_word < 0) fail("BertTokenizer: max_input_chars_per_word must be >= 0");
  m.id_to_token = std::move(vocab);
  m.vocab.reserve(m.id_to_token.size());
  for (size_t i = 0; i < m.id_to_token.size(); ++i) {
    m.vocab[m.id_to_token[i]] = static_cast<int64_t>(i);
    m.max_entry_bytes = std::max(m.max_entry_bytes, m.id_to_token[i].size());
  }
  m.unk_id = require_id(m.vocab, m.opt.unk_token, "unk_token");
  m.sep_id = require_id(m.vocab, m.opt.sep_token, "sep_token");
  m.cls_id = require_id(m.vocab, m.opt.cls_token, "cls_token");
  m.pad_id = require_id(m.vocab, m.opt.pad_token, "pad_token");
  if (!m.opt.mask_token.empty()) m.mask_id = require_id(m.vocab, m.opt.mask_token, "mask_token");
  m.tmpl = Template::bert(m.cls_id, m.sep_id, m.pad_id);
  std::vector<std::string> specials{m.opt.unk_token, m.opt.sep_token, m.opt.pad_token, m.opt.cls_token};
  if (!m.opt.mask_token.empty()) specials.push_back(m.opt.mask_token);
  for (const auto& t : m.opt.additional_special_tokens) {
    if (!t.empty()) specials.push_back(t);
  }
  for (const auto& t : specials) {
    std::u32string cp = utf8_to_code_points(t);
    if (std::find(m.literals.begin(), m.literals.end(), cp) != m.literals.end()) continue;
    m.literals.push_back(std::move(cp));
    m.literal_ids.push_back(require_id(m.vocab, t, "special token"));
  }
  // Longest first, so that the first literal matching at a position is the longest one.
  std::vector<size_t> order(m.literals.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return m.literals[a].size() > m.literals[b].size(); });
  std::vector<std::u32string> lits;
  std::vector<int64_t> ids;
  for (size_t i : order) {
    lits.push_back(m.literals[i]);
    ids.push_back(m.literal_ids[i]);
  }
  m.literals = std::move(lits);
  m.literal_ids = std::move(ids);
  m.special_ids = m.literal_ids;
  std::sort(m.special_ids.begin(), m.special_ids.end());
  for (const auto& w : m.opt.never_split) {
    utf8_to_code_points(w);  // validates
    m.never_split.insert(w);
  }
  m.lower = m.opt.do_lower_case;
  m.strip = m.opt.do_lower_case ? m.opt.strip_accents.value_or(true) : m.opt.strip_accents.value_or(false);
}

BertTokenizer::~BertTokenizer() = default;
BertTokenizer::BertTokenizer(BertTokenizer&&) noexcept = default;
BertTokenizer& BertTokenizer::operator=(BertTokenizer&&) noexcept = default;
BertTokenizer::BertTokenizer(const BertTokenizer& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
BertTokenizer& BertTokenizer::operator=(const BertTokenizer& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}

std::vector<std::string> BertTokenizer::tokenize(std::string_view text) const {
  return tokenize_with_offsets(text).tokens;
}

TokenizedText BertTokenizer::tokenize_with_offsets(std::string_view text) const {
  TokenizedText out;
  impl_->tokenize(text, out);
  return out;
}

std::optional<int64_t> BertTokenizer::model_max_length() const { return impl_->opt.model_max_length; }

std::vector<std::string> BertTokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                              bool skip_special_tokens) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (skip_special_tokens && std::binary_search(impl_->special_ids.begin(), impl_->special_ids.end(), id)) continue;
    out.push_back(id_to_token(id));
  }
  return out;
}

std::vector<int64_t> BertTokenizer::convert_tokens_to_ids(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> out;
  out.reserve(tokens.size());
  for (const auto& t : tokens) out.push_back(impl_->lookup(t));
  return out;
}

namespace {
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    const size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out += to;
    i = j + from.size();
  }
  out.append(s, i, std::string::npos);
  s.swap(out);
}

// Python str.strip(): Unicode whitespace at both ends.
std::string py_strip(const std::string& s) {
  std::u32string cps = utf8_to_code_points(s);
  size_t b = 0, e = cps.size();
  while (b < e && text::is_space(cps[b])) ++b;
  while (e > b && text::is_space(cps[e - 1])) --e;
  return code_points_to_utf8(std::u32string_view(cps).substr(b, e - b));
}
}  // namespace

std::string BertTokenizer::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  std::string s;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) s += ' ';
    s += tokens[i];
  }
  replace_all(s, " " + impl_->opt.continuing_subword_prefix, "");
  return py_strip(s);
}

std::string BertTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens,
                                  std::optional<bool> clean_up_tokenization_spaces) const {
  std::string text = convert_tokens_to_string(convert_ids_to_tokens(ids, skip_special_tokens));
  if (clean_up_tokenization_spaces.value_or(impl_->opt.clean_up_tokenization_spaces)) {
    static const std::pair<const char*, const char*> rules[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : rules) replace_all(text, from, to);
  }
  return text;
}

std::optional<int64_t> BertTokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

std::string BertTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(impl_->id_to_token.size())) return impl_->opt.unk_token;
  return impl_->id_to_token[static_cast<size_t>(id)];
}

int64_t BertTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }
const BertTokenizerOptions& BertTokenizer::options() const { return impl_->opt; }
const Template& BertTokenizer::post_processor() const { return impl_->tmpl; }
int64_t BertTokenizer::unk_token_id() const { return impl_->unk_id; }
int64_t BertTokenizer::cls_token_id() const { return impl_->cls_id; }
int64_t BertTokenizer::sep_token_id() const { return impl_->sep_id; }
int64_t BertTokenizer::pad_token_id() const { return impl_->pad_id; }
int64_t BertTokenizer::mask_token_id() const { return impl_->mask_id; }
std::vector<int64_t> BertTokenizer::all_special_ids() const { return impl_->special_ids; }

void BertTokenizer::set_post_processor(Template t) {
  const int64_t n = vocab_size();
  for (const auto* pieces : {&t.single, &t.pair}) {
    for (const auto& p : *pieces) {
      if (p.sequence < 0 && (p.id < 0 || p.id >= n))
        fail("BertTokenizer: post-processor special token id ", p.id, " is outside the vocabulary (size ", n, ")");
    }
  }
  if (t.pad_id < 0 || t.pad_id >= n)
    fail("BertTokenizer: pad id ", t.pad_id, " is outside the vocabulary (size ", n, ")");
  impl_->tmpl = std::move(t);
}

}  // namespace qdqbert::tokenization
