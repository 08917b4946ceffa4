// qdqbert-cli embed: sentence embeddings for every line of a text file with a checkpoint's own tokenizer.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>

#include "cli.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/tokenization/tokenizer.h"
#include "qdqbert/workflow/embed.h"

namespace qdqbert::cli {
namespace {

struct EmbedArgs {
  bool strict = false, export_mode = false, sentence_only = false;
  std::string model, text_file, output, quant_config, batching = "length";
  int64_t max_length = 128, batch_size = 32;
  int threads = 0;
};

void run(const EmbedArgs& a) {
  check_output_is_not_input("--output", a.output, {{"--model", a.model}, {"--text-file", a.text_file}});
  set_threads(a.threads);
  auto lines = workflow::read_text_lines(a.text_file);
  const auto tok = tokenization::load_tokenizer(a.model);
  auto model = load_model(a.model, "base", a.quant_config, a.strict);
  if (a.export_mode) onnx::set_export_mode(*model, true);
  workflow::EmbedOptions o;
  o.max_length = a.max_length;
  o.batch_size = a.batch_size;
  o.length_sorted = a.batching == "length";
  o.hidden_states = !a.sentence_only;
  const bool bar = static_cast<int64_t>(lines.size()) > a.batch_size;
  if (bar) {
    o.progress = [](int64_t done, int64_t total) {
      const int width = 30, filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\rembed [%s%s] %lld/%lld lines", std::string(filled, '#').c_str(),
                   std::string(width - filled, ' ').c_str(), static_cast<long long>(done),
                   static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  auto e = workflow::embed(*model, *tok, lines, o);
  std::map<std::string, at::Tensor> tensors = {{"input_ids", e.input_ids},
                                               {"attention_mask", e.attention_mask},
                                               {"sentence_embedding", e.sentence_embedding}};
  if (e.last_hidden_state.defined()) tensors["last_hidden_state"] = e.last_hidden_state;
  io::save_safetensors(a.output, tensors, {{"format", "pt"}, {"producer", "qdqbert-cli embed"}});
  std::printf("embedded %zu lines (padded length %lld, dim %lld) -> %s\n", lines.size(),
              static_cast<long long>(e.input_ids.size(1)), static_cast<long long>(e.sentence_embedding.size(1)),
              a.output.c_str());
}

Register reg({"embed", "Sentence embeddings (mean-pooled, L2-normalised) for each line of a text file",
              [](CLI::App& app) {
                auto a = std::make_shared<EmbedArgs>();
                app.add_option("--model", a->model, "checkpoint folder with its tokenizer files")->required();
                app.add_option("--text-file", a->text_file, "UTF-8 text, one input per line")->required();
                app.add_option("--output", a->output, "safetensors to write")->required();
                app.add_option("--quant-config", a->quant_config, "quantizer configuration JSON");
                add_strict_flag(app, a->strict);
                app.add_flag("--export-mode", a->export_mode,
                             "fake quant as the exported ONNX graph computes it (full range [-128, 127])");
                app.add_option("--max-length", a->max_length, "truncate to this many tokens")
                    ->check(int_range(3, kMaxLength));
                app.add_option("--batch-size", a->batch_size, "lines per forward pass")->check(int_range(1, kMaxBatchSize));
                app.add_option("--batching", a->batching,
                               "length (default): batches of lines of like token count (little padding), written in "
                               "the order of the text; input: batches of consecutive lines")
                    ->check(CLI::IsMember({"length", "input"}));
                app.add_flag("--sentence-only", a->sentence_only,
                             "write input_ids, attention_mask and sentence_embedding, not last_hidden_state (every "
                             "token's vector: at length 128, 128x the size of the sentence embedding)");
                add_threads_option(app, a->threads);
                app.final_callback([a] { run(*a); });
              }});

}  // namespace
}  // namespace qdqbert::cli
