// qdqbert-cli squad-eval: EM/F1 like the official SQuAD v1.1 / v2.0 evaluation scripts.
#include <cstdio>
#include <memory>
#include <unordered_map>

#include "cli.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/metrics.h"
#include "squad_common.h"

namespace qdqbert::cli {
namespace {

struct EvalArgs {
  std::string data, predictions, na_prob_file;
  int version = 1;
  bool v2_flag = false;
  double na_prob_thresh = 1.0;
};

// The official scripts name every unanswered question on stderr.
void warn_missing(const std::vector<std::string>& missing) {
  for (const auto& id : missing) std::fprintf(stderr, "Unanswered question %s will receive score 0.\n", id.c_str());
}

void run_eval(const EvalArgs& a) {
  const bool v2 = a.version == 2 || a.v2_flag;
  squad::ReadOptions ro;
  ro.check_answer_start = false;  // evaluation needs only the answer texts
  const squad::Dataset ds = squad::read_squad(a.data, ro);
  auto preds = squad_cmd::read_predictions(a.predictions);
  const auto refs = squad::references_from(ds);
  if (!v2) {
    QDQBERT_CHECK(a.na_prob_file.empty(), "--na-prob-file needs --version 2");
    const auto r = squad::evaluate_v1(refs, preds);
    warn_missing(r.missing);
    std::printf("%s\n", r.to_json().c_str());
    return;
  }
  if (!a.na_prob_file.empty()) {
    const auto j = squad_cmd::read_json_file(a.na_prob_file, "no-answer probability file");
    QDQBERT_CHECK(j.is_object(), "no-answer probability file ", a.na_prob_file, ": expected {id: probability}");
    for (auto& p : preds) {
      auto it = j.find(p.id);
      QDQBERT_CHECK(it != j.end() && it->is_number(), "no-answer probability file ", a.na_prob_file,
                    ": no number for question id \"", p.id, "\"");
      p.no_answer_probability = it->get<double>();
    }
  }
  const auto r = squad::evaluate_v2(refs, preds, a.na_prob_thresh);
  warn_missing(r.missing);
  std::printf("%s\n", r.to_json(!a.na_prob_file.empty(), 2).c_str());
}

Register reg{{"squad-eval", "SQuAD EM/F1 of a predictions file, like the official v1.1 / v2.0 evaluation scripts",
              [](CLI::App& app) {
                auto args = std::make_shared<EvalArgs>();
                app.add_option("--data", args->data, "SQuAD dataset JSON (dev-v1.1.json / dev-v2.0.json)")
                    ->required()
                    ->check(CLI::ExistingFile);
                app.add_option("--predictions", args->predictions,
                               "predictions JSON: {id: text} or [{id, prediction_text, no_answer_probability}]")
                    ->required()
                    ->check(CLI::ExistingFile);
                app.add_option("--version", args->version, "SQuAD metric version: 1 (v1.1) or 2 (v2.0)")
                    ->check(CLI::IsMember({1, 2}))
                    ->capture_default_str();
                app.add_flag("--version-2-with-negative", args->v2_flag, "same as --version 2");
                app.add_option("--na-prob-file", args->na_prob_file,
                               "v2: {id: no-answer probability} (e.g. null_odds.json); adds best_* thresholds")
                    ->check(CLI::ExistingFile);
                app.add_option("--na-prob-thresh", args->na_prob_thresh,
                               "v2: predict no-answer when the probability exceeds this")
                    ->capture_default_str();
                app.final_callback([args] { run_eval(*args); });
              }}};

}  // namespace
}  // namespace qdqbert::cli
