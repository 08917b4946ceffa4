// qdqbert-cli squad-features: the preprocessed SQuAD windows (validation and train views) as JSON.
// Needs the tokenizer component (through squad::make_bert_text_encoder).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "qdqbert/error.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/postprocess.h"

namespace qdqbert::cli {
namespace {

struct FeatArgs {
  std::string data, tokenizer, output;
  squad::FeatureOptions opt;
  bool v2 = false, no_pad = false;
};

void run_features(FeatArgs a) {
  check_output_is_not_input("--output", a.output, {{"--data", a.data}, {"--tokenizer", a.tokenizer}});
  a.opt.pad_to_max_length = !a.no_pad;
  const squad::Dataset ds = squad::read_squad(a.data);
  if (!a.v2) {
    for (const auto& e : ds.examples) {
      QDQBERT_CHECK(!e.answers.empty(), "squad-features: ", a.data, ": question id \"", e.id,
                    "\" has no answer; pass --version-2-with-negative for SQuAD v2 data");
    }
  }
  const auto encoder = squad::make_bert_text_encoder(a.tokenizer, true);
  const auto features = squad::build_features(ds.examples, *encoder, a.opt);
  nlohmann::ordered_json config;
  config["name"] = "qdqbert-cli squad-features";
  config["max_seq_length"] = a.opt.max_seq_length;
  config["doc_stride"] = a.opt.doc_stride;
  config["pad_to_max_length"] = a.opt.pad_to_max_length;
  config["version_2_with_negative"] = a.v2;
  config["truncation"] = "only_second";
  config["tokenizer_vocab"] = a.tokenizer;
  config["do_lower_case"] = true;
  squad::write_text_file(a.output,
                         squad::features_to_json(features, static_cast<int64_t>(ds.examples.size()), config.dump()));
  std::fprintf(stderr, "squad-features: %zu questions -> %zu features -> %s\n", ds.examples.size(), features.size(),
               a.output.c_str());
}

Register reg{{"squad-features", "SQuAD feature windows (max_seq_length / doc_stride), validation and train views",
              [](CLI::App& app) {
                auto args = std::make_shared<FeatArgs>();
                app.add_option("--data", args->data, "SQuAD dataset JSON")->required()->check(CLI::ExistingFile);
                app.add_option("--tokenizer", args->tokenizer, "tokenizer folder or vocab.txt")
                    ->required()
                    ->check(CLI::ExistingPath);
                app.add_option("--max-seq-length", args->opt.max_seq_length, "tokens per window")
                    ->capture_default_str()
                    ->check(int_range(1, kMaxLength));
                app.add_option("--doc-stride", args->opt.doc_stride, "context tokens shared by consecutive windows")
                    ->capture_default_str()
                    ->check(non_negative_number());
                app.add_flag("--version-2-with-negative", args->v2, "SQuAD v2 data (unanswerable questions allowed)");
                app.add_flag("--no-pad-to-max-length", args->no_pad, "do not pad windows to --max-seq-length");
                app.add_option("--output", args->output, "features JSON")->required();
                app.final_callback([args] { run_features(*args); });
              }}};

}  // namespace
}  // namespace qdqbert::cli
