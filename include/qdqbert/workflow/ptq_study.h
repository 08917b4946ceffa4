#pragma once
/// \file
/// PTQ study on real text: calibrator sweep (max, percentile 99.9/99.99/99.999, mse, entropy) with
/// per-channel and per-tensor weights, per-group sensitivity, a greedy partial-quantization choice that
/// reaches a target cosine, and a report (Markdown, JSON, SVG plots). Nothing in the Python toolkit does
/// the last three steps.

#include <functional>
#include <string>
#include <vector>

namespace qdqbert::workflow {

struct PtqStudyOptions {
  std::string model_dir;           ///< a BERT checkpoint folder with its tokenizer
  std::vector<std::string> calib_lines, eval_lines;
  std::string output_dir;
  double target_cosine = 0.99;     ///< for the 5th-percentile cosine of the eval embeddings
  int64_t max_length = 128, batch_size = 32;
  int threads = 0;
  /// Called with one line per finished step ("sweep 3/12: percentile 99.9, per-channel weights: cosine
  /// p5 0.6736"); the CLI prints them on stderr. The study is long (minutes on real text); unset = quiet.
  std::function<void(const std::string&)> progress;
};

/// Runs the study and writes output_dir/{report.md, report.json, quant_config.json, calibrated/,
/// histograms.svg, sensitivity.svg}. Returns the Markdown report.
std::string run_ptq_study(const PtqStudyOptions& options);

}  // namespace qdqbert::workflow
