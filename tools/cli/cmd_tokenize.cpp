// qdqbert-cli tokenize: BertTokenizer from a checkpoint folder or vocab.txt, one text (pair) from the
// command line or a JSONL file of requests shaped like the Python tokenizer call.
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli.h"
#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/request.h"

namespace qdqbert::cli {
namespace {

namespace tok = qdqbert::tokenization;

struct TokenizeArgs {
  std::string tokenizer;
  std::optional<std::string> text, text_pair;
  std::optional<int64_t> max_length;
  std::string truncation, padding;
  int64_t stride = 0;
  bool return_offsets = false, overflow = false, no_special = false;
  std::string requests, output;
};

template <typename T>
std::string join(const std::vector<T>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? " " : "") << v[i];
  return os.str();
}

void print_row(const tok::Encoding& e, bool offsets) {
  std::cout << "input_ids: " << join(e.input_ids) << "\n";
  std::cout << "token_type_ids: " << join(e.token_type_ids) << "\n";
  std::cout << "attention_mask: " << join(e.attention_mask) << "\n";
  if (offsets) {
    std::cout << "offset_mapping:";
    for (const auto& [s, t] : e.offset_mapping) std::cout << " (" << s << "," << t << ")";
    std::cout << "\n";
  }
}

void run(const TokenizeArgs& a) {
  const tok::BertTokenizer t = tok::BertTokenizer::from_pretrained(a.tokenizer);
  if (!a.requests.empty()) {
    if (a.output.empty()) fail("--requests needs --output");
    check_output_is_not_input("--output", a.output, {{"--requests", a.requests}, {"--tokenizer", a.tokenizer}});
    std::ifstream in(a.requests, std::ios::binary);
    if (!in) fail("cannot open requests file '", a.requests, "'");
    tok::RequestRunner runner(t);
    std::string line, out;
    size_t n = 0;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      out += runner.run(line);
      out += '\n';
      ++n;
    }
    if (in.bad()) fail("cannot read requests file '", a.requests, "'");
    io::AtomicFile f(a.output);
    f.write(out);
    f.commit();
    std::cerr << "tokenize: " << n << " requests -> " << a.output << "\n";
    return;
  }
  if (!a.text) fail("give --text (and optionally --text-pair), or --requests IN.jsonl --output OUT.jsonl");
  tok::EncodeOptions o;
  o.add_special_tokens = !a.no_special;
  o.max_length = a.max_length;
  if (!a.truncation.empty()) o.truncation = tok::parse_truncation(a.truncation);
  if (!a.padding.empty()) o.padding = tok::parse_padding(a.padding);
  o.stride = a.stride;
  o.return_overflowing_tokens = a.overflow;
  const std::optional<std::string_view> pair =
      a.text_pair ? std::optional<std::string_view>(*a.text_pair) : std::nullopt;
  std::cout << "tokens: " << join(t.tokenize(*a.text)) << "\n";
  if (a.text_pair) std::cout << "tokens_pair: " << join(t.tokenize(*a.text_pair)) << "\n";
  if (a.overflow) {
    const tok::BatchEncoding b = t.encode_windows(*a.text, pair, o);
    for (size_t i = 0; i < b.size(); ++i) {
      std::cout << "window " << i << ": " << join(t.convert_ids_to_tokens(b[i].input_ids)) << "\n";
      print_row(b[i], a.return_offsets);
    }
  } else {
    const tok::Encoding e = t.encode(*a.text, pair, o);
    std::cout << "encoded: " << join(t.convert_ids_to_tokens(e.input_ids)) << "\n";
    print_row(e, a.return_offsets);
  }
}

const Register reg{Subcommand{
    "tokenize", "Tokenize text with a BERT WordPiece tokenizer (same ids as the Python BertTokenizer)",
    [](CLI::App& app) {
      auto a = std::make_shared<TokenizeArgs>();
      app.add_option("--tokenizer", a->tokenizer,
                     "checkpoint folder (vocab.txt, tokenizer.json, tokenizer_config.json) "
                     "or a vocab.txt file")
          ->required();
      app.add_option("--text", a->text, "text to encode");
      app.add_option("--text-pair", a->text_pair, "second text of a pair");
      app.add_option("--max-length", a->max_length, "max_length of the Python call")->check(int_range(0, kMaxLength));
      app.add_option("--truncation", a->truncation, "longest_first | only_first | only_second | do_not_truncate");
      app.add_option("--padding", a->padding, "longest | max_length | do_not_pad");
      app.add_option("--stride", a->stride, "tokens shared by consecutive overflow windows");
      app.add_flag("--return-overflowing-tokens", a->overflow,
                   "windowed encoding: print every overflow window (fast-tokenizer semantics)");
      app.add_flag("--return-offsets", a->return_offsets, "print code-point offsets of every token");
      app.add_flag("--no-special-tokens", a->no_special, "add_special_tokens=False");
      app.add_option("--requests", a->requests,
                     "JSONL file of requests {\"init\": {...}, \"call\": {text, text_pair, truncation, ...}}");
      app.add_option("--output", a->output, "JSONL answers, one line per request (written atomically)");
      app.callback([a] { run(*a); });
    }}};

}  // namespace
}  // namespace qdqbert::cli
