// Truncation, overflow windows, special tokens and padding: the model-independent half of a
// tokenizer call (transformers' prepare_for_model / truncate_sequences / pad, and the tokenizers
// crate's truncate_encodings + TemplateProcessing + Encoding::merge_with for windows).
#include "qdqbert/tokenization/template.h"

#include <algorithm>

#include "qdqbert/error.h"

namespace qdqbert::tokenization {

Truncation parse_truncation(const std::string& s) {
  if (s == "longest_first" || s == "true") return Truncation::LongestFirst;
  if (s == "only_first") return Truncation::OnlyFirst;
  if (s == "only_second") return Truncation::OnlySecond;
  if (s == "do_not_truncate" || s == "false") return Truncation::None;
  fail("tokenizer: unknown truncation strategy '", s,
       "' (expected longest_first, only_first, only_second or do_not_truncate)");
}

Padding parse_padding(const std::string& s) {
  if (s == "longest" || s == "true") return Padding::Longest;
  if (s == "max_length") return Padding::MaxLength;
  if (s == "do_not_pad" || s == "false") return Padding::None;
  fail("tokenizer: unknown padding strategy '", s, "' (expected longest, max_length or do_not_pad)");
}

int64_t Template::num_special_tokens(bool is_pair) const {
  const auto& pieces = is_pair ? pair : single;
  return static_cast<int64_t>(
      std::count_if(pieces.begin(), pieces.end(), [](const Piece& p) { return p.sequence < 0; }));
}

Template Template::bert(int64_t cls_id, int64_t sep_id, int64_t pad_id) {
  Template t;
  t.single = {{-1, cls_id, 0}, {0, -1, 0}, {-1, sep_id, 0}};
  t.pair = {{-1, cls_id, 0}, {0, -1, 0}, {-1, sep_id, 0}, {1, -1, 1}, {-1, sep_id, 1}};
  t.pad_id = pad_id;
  return t;
}

Truncation resolve_truncation(const EncodeOptions& options, std::optional<int64_t> model_max_length,
                              std::optional<int64_t>& max_length) {
  max_length = options.max_length;
  Truncation t;
  if (options.truncation) {
    t = *options.truncation;
  } else {
    t = (options.max_length && options.padding == Padding::None) ? Truncation::LongestFirst : Truncation::None;
  }
  if (t != Truncation::None && !max_length) max_length = model_max_length;
  if (max_length && *max_length < 0) fail("tokenizer: max_length must be >= 0, got ", *max_length);
  if (options.stride < 0) fail("tokenizer: stride must be >= 0, got ", options.stride);
  if (!max_length) t = Truncation::None;
  return t;
}

namespace {

struct Span {
  const TokenizedText* text;
  size_t begin, end;
};

// Appends one token that stands for no text (a template special token or padding).
void push_textless(Encoding& e, int64_t id, int64_t type_id, int64_t attention) {
  e.input_ids.push_back(id);
  e.token_type_ids.push_back(type_id);
  e.attention_mask.push_back(attention);
  e.special_tokens_mask.push_back(1);
  e.offset_mapping.push_back({0, 0});
  e.sequence_ids.push_back(-1);
}

// Wraps one or two sequence slices with the template's special tokens.
Encoding build(const Template& tmpl, const Span& a, const Span* b, bool add_special_tokens) {
  Encoding e;
  auto add_seq = [&](const Span& s, int seq, int64_t type_id) {
    for (size_t i = s.begin; i < s.end; ++i) {
      e.input_ids.push_back(s.text->ids[i]);
      e.token_type_ids.push_back(type_id);
      e.attention_mask.push_back(1);
      e.special_tokens_mask.push_back(0);
      e.offset_mapping.push_back(s.text->offsets[i]);
      e.sequence_ids.push_back(seq);
    }
  };
  if (!add_special_tokens) {
    add_seq(a, 0, 0);
    if (b) add_seq(*b, 1, 0);
    return e;
  }
  for (const auto& p : (b ? tmpl.pair : tmpl.single)) {
    if (p.sequence == 0) {
      add_seq(a, 0, p.type_id);
    } else if (p.sequence == 1) {
      if (b) add_seq(*b, 1, p.type_id);
    } else {
      push_textless(e, p.id, p.type_id, 1);
    }
  }
  return e;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> overflow_windows(size_t n, size_t max_len, size_t stride) {
  if (max_len >= n) return {{0, n}};
  // The Rust tokenizer would move the whole sequence into one over-long overflow window here.
  if (max_len == 0)
    fail("tokenizer: max_length leaves no room for a sequence of ", n,
         " tokens (its share of the "
         "budget after the special tokens is 0); use a larger max_length");
  if (stride >= max_len)
    fail("tokenizer: `stride` must be strictly less than `max_len=", max_len,
         "` (the window left for the truncated sequence once the other sequence and the "
         "special tokens are counted); stride is ",
         stride);
  std::vector<std::pair<size_t, size_t>> out;
  const size_t step = max_len - stride;
  for (size_t start = 0;; start += step) {
    const size_t stop = std::min(start + max_len, n);
    out.push_back({start, stop});
    if (stop == n) break;
  }
  return out;
}

Encoding encode_sequences(const TokenizedText& a, const TokenizedText* b, const EncodeOptions& options,
                          const Template& tmpl, std::optional<int64_t> model_max_length) {
  std::optional<int64_t> max_length;
  const Truncation strategy = resolve_truncation(options, model_max_length, max_length);
  const bool pair = b != nullptr;
  if (options.return_overflowing_tokens && strategy == Truncation::LongestFirst && pair) {
    fail(
        "tokenizer: Not possible to return overflowing tokens for pair of sequences with the `longest_first`. "
        "Please select another truncation strategy than `longest_first`, for instance `only_second` or "
        "`only_first`.");
  }
  size_t len_a = a.size(), len_b = pair ? b->size() : 0;
  const int64_t n_special = options.add_special_tokens ? tmpl.num_special_tokens(pair) : 0;
  const int64_t total = static_cast<int64_t>(len_a + len_b) + n_special;
  std::vector<int64_t> overflow;
  if (strategy != Truncation::None && max_length && total > *max_length) {
    const size_t remove = static_cast<size_t>(total - *max_length);
    const size_t stride = static_cast<size_t>(options.stride);
    auto cut_tail = [&](const TokenizedText& t, size_t& len, const char* which) {
      if (len <= remove) {
        fail("tokenizer: cannot truncate to max_length=", *max_length, ": ", remove, " tokens must be removed but the ",
             which, " sequence has only ", len,
             " (Sequence to truncate too short to respect the provided max_length); choose another truncation "
             "strategy or a larger max_length");
      }
      const size_t window = std::min(len, stride + remove);
      overflow.assign(t.ids.begin() + static_cast<std::ptrdiff_t>(len - window),
                      t.ids.begin() + static_cast<std::ptrdiff_t>(len));
      len -= remove;
    };
    if (strategy == Truncation::OnlyFirst || (strategy == Truncation::LongestFirst && !pair)) {
      cut_tail(a, len_a, "first");
    } else if (strategy == Truncation::LongestFirst) {
      if (remove > len_a + len_b) {
        fail("tokenizer: cannot truncate the pair to max_length=", *max_length, ": the special tokens alone take ",
             n_special, " positions");
      }
      for (size_t k = 0; k < remove; ++k) {
        if (len_a > len_b) {
          --len_a;
        } else {
          --len_b;
        }
      }
    } else if (strategy == Truncation::OnlySecond) {
      if (!pair) {
        fail(
            "tokenizer: truncation=only_second needs a second sequence (Truncation error: Second sequence not "
            "provided); the text has ",
            total, " tokens with special tokens, more than max_length=", *max_length);
      }
      cut_tail(*b, len_b, "second");
    }
  }
  Span sa{&a, 0, len_a};
  Span sb{b, 0, len_b};
  Encoding e = build(tmpl, sa, pair ? &sb : nullptr, options.add_special_tokens);
  if (options.return_overflowing_tokens) {
    e.overflowing_tokens = std::move(overflow);
    if (max_length) e.num_truncated_tokens = total - *max_length;
  }
  if (options.padding == Padding::MaxLength) {
    std::vector<Encoding> rows(1, std::move(e));
    pad_batch(rows, Padding::MaxLength, options.max_length ? options.max_length : model_max_length, tmpl);
    return std::move(rows[0]);
  }
  return e;
}

std::vector<Encoding> encode_windows(const TokenizedText& a, const TokenizedText* b, const EncodeOptions& options,
                                     const Template& tmpl, std::optional<int64_t> model_max_length) {
  std::optional<int64_t> max_length;
  const Truncation strategy = resolve_truncation(options, model_max_length, max_length);
  const bool pair = b != nullptr;
  const size_t stride = static_cast<size_t>(options.stride);
  std::vector<std::pair<size_t, size_t>> wa{{0, a.size()}}, wb{{0, pair ? b->size() : 0}};
  if (strategy != Truncation::None && max_length) {
    const int64_t n_special = options.add_special_tokens ? tmpl.num_special_tokens(pair) : 0;
    if (*max_length < n_special) {
      fail("tokenizer: max_length=", *max_length, " is smaller than the ", n_special,
           " special tokens the encoding needs");
    }
    const size_t budget = static_cast<size_t>(*max_length - n_special);
    const size_t n1 = a.size(), n2 = pair ? b->size() : 0;
    if (n1 + n2 > budget) {
      if (strategy == Truncation::LongestFirst && pair) {
        size_t s1 = std::min(n1, n2), s2 = std::max(n1, n2);
        s2 = s1 > budget ? s1 : std::max(s1, budget - s1);
        if (s1 + s2 > budget) {
          s1 = budget / 2;
          s2 = s1 + budget % 2;
        }
        if (n1 > n2) std::swap(s1, s2);
        wa = overflow_windows(n1, s1, stride);
        wb = overflow_windows(n2, s2, stride);
      } else {
        if (strategy == Truncation::OnlySecond && !pair) {
          fail(
              "tokenizer: Truncation error: Second sequence not provided (truncation=only_second needs a text "
              "pair)");
        }
        const bool first = strategy != Truncation::OnlySecond;
        const size_t n = first ? n1 : n2;
        const size_t remove = n1 + n2 - budget;
        if (n <= remove) {
          fail("tokenizer: Truncation error: Sequence to truncate too short to respect the provided max_length (",
               remove, " tokens must be removed from the ", first ? "first" : "second", " sequence of ", n,
               " tokens, max_length=", *max_length, ")");
        }
        (first ? wa : wb) = overflow_windows(n, n - remove, stride);
      }
    }
  }
  // Rust merge order: (A0,B0), then for every later window A_i: (A_i,B0), (A_i,B_j>0)..., then (A0,B_j>0).
  std::vector<std::pair<size_t, size_t>> order{{0, 0}};
  for (size_t i = 1; i < wa.size(); ++i) {
    for (size_t j = 0; j < wb.size(); ++j) order.push_back({i, j});
  }
  for (size_t j = 1; j < wb.size(); ++j) order.push_back({0, j});
  if (!options.return_overflowing_tokens) order.resize(1);
  std::vector<Encoding> rows;
  rows.reserve(order.size());
  for (const auto& [i, j] : order) {
    Span sa{&a, wa[i].first, wa[i].second};
    Span sb{b, wb[j].first, wb[j].second};
    rows.push_back(build(tmpl, sa, pair ? &sb : nullptr, options.add_special_tokens));
  }
  return rows;
}

void pad_batch(std::vector<Encoding>& rows, Padding padding, std::optional<int64_t> max_length, const Template& tmpl) {
  if (padding == Padding::None) return;
  size_t target = 0;
  if (padding == Padding::Longest) {
    for (const auto& r : rows) target = std::max(target, r.size());
  } else {
    if (!max_length) return;  // transformers warns and leaves the rows unpadded
    if (*max_length > kMaxPaddedLength) {
      fail("tokenizer: padding to max_length=", *max_length, " is refused: at most ", kMaxPaddedLength,
           " tokens per row (no BERT-family model has more positions)");
    }
    target = static_cast<size_t>(std::max<int64_t>(*max_length, 0));
  }
  for (auto& r : rows) {
    while (r.size() < target) push_textless(r, tmpl.pad_id, tmpl.pad_type_id, 0);
  }
}

}  // namespace qdqbert::tokenization
