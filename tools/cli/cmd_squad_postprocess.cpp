// qdqbert-cli squad-postprocess: answers from saved start/end logits (postprocess_qa_predictions).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/metrics.h"
#include "qdqbert/squad/postprocess.h"
#include "squad_common.h"

namespace qdqbert::cli {
namespace {

struct PostArgs {
  std::string data, features, logits, output, nbest_output;
  squad::PostprocessOptions opt;
};

void run_postprocess(const PostArgs& a) {
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"--data", a.data}, {"--features", a.features}, {"--logits", a.logits}};
  check_output_is_not_input("--output", a.output, inputs);
  check_output_is_not_input("--nbest-output", a.nbest_output, inputs);
  check_output_is_not_input("--nbest-output", a.nbest_output, {{"--output", a.output}});
  const squad::Dataset ds = squad::read_squad(a.data);
  const auto features = squad::read_validation_features(a.features);
  const auto [start, end] = squad::read_logits(a.logits);
  const auto res = squad::postprocess_qa_predictions(ds.examples, features, start, end, a.opt);
  // Every output file or none: a failure on the n-best file leaves no predictions file behind.
  io::AtomicFileGroup files;
  files.add(a.output).write(res.predictions_json() + "\n");
  if (!a.nbest_output.empty()) files.add(a.nbest_output).write(res.nbest_json() + "\n");
  std::string null_odds;
  if (a.opt.version_2_with_negative) {
    null_odds = (std::filesystem::path(a.output).parent_path() / "null_odds.json").string();
    files.add(null_odds).write(res.null_odds_json() + "\n");
  }
  files.commit();
  // The metric as the example reports it (no_answer_probability 0.0 for every prediction).
  std::vector<squad::Prediction> preds;
  for (const auto& [id, txt] : res.predictions) preds.push_back({id, txt, 0.0});
  const auto refs = squad::references_from(ds);
  if (a.opt.version_2_with_negative) {
    std::printf("%s\n", squad::evaluate_v2(refs, preds).to_json(true).c_str());
  } else if (ds.has_negative()) {
    std::fprintf(stderr,
                 "squad-postprocess: %s has unanswerable questions; no v1.1 metric printed "
                 "(pass --version-2-with-negative for SQuAD v2)\n",
                 a.data.c_str());
  } else {
    std::printf("%s\n", squad::evaluate_v1(refs, preds).to_json().c_str());
  }
  std::fprintf(stderr, "squad-postprocess: %zu answers from %zu features -> %s%s%s%s%s\n", res.predictions.size(),
               features.size(), a.output.c_str(), a.nbest_output.empty() ? "" : ", ", a.nbest_output.c_str(),
               null_odds.empty() ? "" : ", ", null_odds.c_str());
}

Register reg{{"squad-postprocess", "Answers from saved start/end logits (n-best, max answer length, v2 null threshold)",
              [](CLI::App& app) {
                auto args = std::make_shared<PostArgs>();
                app.add_option("--data", args->data, "SQuAD dataset JSON the features were built from")
                    ->required()
                    ->check(CLI::ExistingFile);
                app.add_option("--features", args->features, "features JSON written by squad-features")
                    ->required()
                    ->check(CLI::ExistingFile);
                app.add_option("--logits", args->logits, "logits JSON {start_logits: [[...]], end_logits: [[...]]}")
                    ->required()
                    ->check(CLI::ExistingFile);
                app.add_option("--n-best-size", args->opt.n_best_size, "candidates kept per example")
                    ->capture_default_str()
                    ->check(positive_number());
                app.add_option("--max-answer-length", args->opt.max_answer_length, "longest answer in tokens")
                    ->capture_default_str()
                    ->check(positive_number());
                app.add_flag("--version-2-with-negative", args->opt.version_2_with_negative,
                             "SQuAD v2: allow the null (no-answer) prediction");
                app.add_option("--null-score-diff-threshold", args->opt.null_score_diff_threshold,
                               "v2: predict no-answer when null score - best span score exceeds this")
                    ->capture_default_str();
                app.add_option("--output", args->output,
                               "predictions JSON {id: text} (null_odds.json goes beside it in v2)")
                    ->required();
                app.add_option("--nbest-output", args->nbest_output,
                               "n-best JSON {id: [{start_logit, end_logit, text, probability}]}");
                app.final_callback([args] { run_postprocess(*args); });
              }}};

}  // namespace
}  // namespace qdqbert::cli
