#pragma once
/// \file
/// PTQ study on real text: calibrator sweep (max, percentile 99.9/99.99/99.999, mse, entropy, and the
/// best method per quantizer) with per-channel and per-tensor weights, per-group sensitivity, a partial
/// quantization that reaches a target cosine with the least FP32 GEMM work, and a report (Markdown, JSON,
/// SVG plots). Nothing in the Python toolkit does the last three steps.
///
/// The study is a sequence of steps that return plain data (study_ptq) and a separate writer
/// (write_ptq_study_report); run_ptq_study does both and saves the chosen configuration.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qdqbert/workflow/fidelity.h"

namespace qdqbert::workflow {

struct PtqStudyOptions {
  std::string model_dir;           ///< a BERT checkpoint folder with its tokenizer
  std::vector<std::string> calib_lines, eval_lines;
  std::string output_dir;
  double target_cosine = 0.99;     ///< for the 5th-percentile cosine of the eval embeddings
  int64_t max_length = 128, batch_size = 32;
  int64_t k = 10;                  ///< neighbours for recall@k
  bool per_quantizer_calibrator = true;  ///< also sweep "per-quantizer best" (see PtqStudyResult)
  /// Called with one line per finished step ("sweep 3/14: percentile 99.9, per-channel weights: cosine
  /// p5 0.6736"); the CLI prints them on stderr. The study is long (minutes on real text); unset = quiet.
  std::function<void(const std::string&)> progress;
};

/// One calibrated configuration and how close it stays to FP32.
struct StudyConfig {
  std::string calibration;         ///< "max", "percentile 99.9", ..., "per-quantizer best"
  bool per_channel = true;         ///< weights per output channel (else per tensor)
  EmbeddingFidelity fidelity;
  GemmFlops flops;
  double calib_seconds = 0;
};

/// A group of quantizers (one layer's attention, FFN, residual adds, ...) quantized alone.
struct GroupResult {
  std::string name, pattern;       ///< pattern: a regex over quantizer names (a quant-config rule)
  EmbeddingFidelity fidelity;
  double fp32_flops = 0;           ///< GEMM FLOPs that leave int8 when this group stays in FP32
};

struct PartialStep {
  std::vector<std::string> fp32_groups;
  EmbeddingFidelity fidelity;
  GemmFlops flops;
};

/// The |x| histogram of one activation quantizer with each method's amax.
struct AmaxHistogram {
  std::string quantizer;
  std::vector<double> edges, counts;
  std::vector<std::pair<std::string, double>> amax;  ///< (method, amax)
  double spread = 0;                                 ///< largest / smallest amax
};

struct PtqStudyResult {
  std::string model_dir;
  int64_t calib_lines = 0, eval_lines = 0, k = 10;
  double target_cosine = 0;
  std::vector<StudyConfig> sweep;
  StudyConfig best;                                  ///< highest cosine p5 of the sweep
  std::map<std::string, int64_t> per_quantizer_choice;  ///< method -> quantizers for which it was best
  std::vector<GroupResult> sensitivity;              ///< costliest first (1 - cosine mean)
  /// The partial-quantization search: all quantized, then each group added to FP32 (the least-FLOP order),
  /// then groups that turned out unnecessary returned to int8; the last step is the choice.
  std::vector<PartialStep> partial;
  bool reached = false;
  std::vector<std::string> fp32_groups, fp32_patterns;  ///< the chosen groups kept in FP32
  std::vector<AmaxHistogram> histograms;             ///< the 4 quantizers where the methods disagree most
};

/// Runs the steps: FP32 reference embeddings, amax collection (max and histogram passes on one model),
/// sweep, sensitivity, partial quantization. `calibrated`, when given, receives the model with the best
/// configuration's amax and every quantizer enabled.
PtqStudyResult study_ptq(const PtqStudyOptions& options, std::shared_ptr<TaskModel>* calibrated = nullptr);

/// Writes `dir`/report.md, report.json, histograms.svg, sensitivity.svg and partial.svg (each atomically);
/// returns the Markdown.
std::string write_ptq_study_report(const PtqStudyResult& result, const std::string& dir);

/// study_ptq + write_ptq_study_report + output_dir/{quant_config.json, calibrated/} (the checkpoint
/// with the best amax and its tokenizer). Returns the Markdown report.
std::string run_ptq_study(const PtqStudyOptions& options);

}  // namespace qdqbert::workflow
