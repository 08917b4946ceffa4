// Tokenizer throughput: BertTokenizer (basic tokenization + WordPiece, offsets included) on ~4 MB of
// generated English-like text, single thread. Prints tokens per second and MB per second.
// Usage: bench_tokenizer [vocab.txt] [--benchmark_* flags]; without a vocab.txt a synthetic one is used.
//        bench_tokenizer --compare MODEL_DIR TEXT_FILE IDS_OUT [ROUNDS]: the checkpoint's own tokenizer on
//        every line of TEXT_FILE (no special tokens, no truncation), median seconds of ROUNDS passes, one
//        thread; writes the ids (one line of space-separated ids per text line) for bench/tokenizer_hf.py,
//        which times HF tokenizers on the same lines and checks that the ids are identical.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/tokenizer.h"

namespace tok = qdqbert::tokenization;

namespace {

std::string g_vocab_path;

std::vector<std::string> syllables() {
  return {"the",  "qu",  "ick",  "bro", "wn",   "fox",  "ju",  "mps",  "ov",   "er",   "la",   "zy",
          "dog",  "ri",  "ver",  "gla", "cier", "val",  "ley", "moun", "tain", "ques", "tion", "an",
          "swer", "con", "text", "win", "dow",  "stri", "de",  "to",   "ken",  "ca",   "fé",   "na",
          "ïve",  "re",  "su",   "mé",  "in",   "ter",  "na",  "tio",  "nal"};
}

const std::string& corpus() {
  static const std::string text = [] {
    std::mt19937 rng(42);
    const auto syl = syllables();
    std::uniform_int_distribution<size_t> pick(0, syl.size() - 1), nsyl(1, 4), punct(0, 15);
    std::string s;
    s.reserve(4 << 20);
    while (s.size() < (4u << 20)) {
      const size_t n = nsyl(rng);
      std::string w;
      for (size_t k = 0; k < n; ++k) w += syl[pick(rng)];
      if (punct(rng) == 0 && w[0] >= 'a' && w[0] <= 'z') w[0] = static_cast<char>(w[0] - 32);  // some capitals
      s += w;
      const size_t p = punct(rng);
      s += p == 1 ? ", " : p == 2 ? ". " : p == 3 ? "'s " : " ";
    }
    return s;
  }();
  return text;
}

tok::BertTokenizer make_tokenizer() {
  if (!g_vocab_path.empty()) return tok::BertTokenizer::from_vocab_file(g_vocab_path);
  std::vector<std::string> v{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (char c = 'a'; c <= 'z'; ++c) {
    v.push_back(std::string(1, c));
    v.push_back("##" + std::string(1, c));
  }
  for (const char* p : {".", ",", "'", "é", "##é", "ï", "##ï"}) v.push_back(p);
  for (const auto& s : syllables()) {
    v.push_back(s);
    v.push_back("##" + s);
  }
  return tok::BertTokenizer(v);
}

void BM_BertTokenize(benchmark::State& state) {
  const tok::BertTokenizer t = make_tokenizer();
  const std::string& text = corpus();
  // Tokenize paragraph-sized chunks (what an encoder sees), like a data pipeline would.
  // Chunk boundaries are moved to a character start (never inside a UTF-8 sequence).
  std::vector<std::string_view> chunks;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = std::min(text.size(), i + 2048);
    while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
    chunks.push_back(std::string_view(text).substr(i, j - i));
    i = j;
  }
  int64_t tokens = 0;
  for (auto _ : state) {
    for (const auto& c : chunks) {
      const tok::TokenizedText tt = t.tokenize_with_offsets(c);
      tokens += static_cast<int64_t>(tt.size());
      benchmark::DoNotOptimize(tt.ids.data());
    }
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_BertTokenize)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

int compare(const std::string& model, const std::string& text_file, const std::string& ids_out, int rounds) {
  const auto t = tok::load_tokenizer(model);
  std::ifstream in(text_file);
  if (!in) {
    std::fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_file.c_str());
    return 1;
  }
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    bytes += line.size();
    lines.push_back(std::move(line));
  }
  std::vector<std::vector<int64_t>> ids(lines.size());
  std::vector<double> seconds;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < lines.size(); ++i) ids[i] = t->tokenize_with_offsets(lines[i]).ids;
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  int64_t tokens = 0;
  std::ofstream out(ids_out);
  for (const auto& v : ids) {
    tokens += static_cast<int64_t>(v.size());
    for (size_t j = 0; j < v.size(); ++j) out << (j ? " " : "") << v[j];
    out << "\n";
  }
  std::printf("qdqbert %zu lines %.2f MB %lld tokens median %.4f s\n", lines.size(), bytes / 1e6,
              static_cast<long long>(tokens), seconds[seconds.size() / 2]);
  return out ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "--compare") {
    return compare(argv[2], argv[3], argv[4], argc > 5 ? std::max(1, std::atoi(argv[5])) : 5);
  }
  benchmark::Initialize(&argc, argv);
  if (argc > 1) g_vocab_path = argv[1];
  std::printf("corpus: %.1f MB of generated text, vocab: %s\n", static_cast<double>(corpus().size()) / (1 << 20),
              g_vocab_path.empty() ? "synthetic" : g_vocab_path.c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
