// qdqbert-cli calibrate: post-training calibration of a checkpoint with batches from a file.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "cli.h"
#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/tokenization/tokenizer.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/embed.h"
#include "qdqbert/workflow/quant_config.h"

namespace qdqbert::cli {
namespace {

struct CalibArgs {
  std::string model, task, calib_data, calib_text, method = "max", quant_config, output;
  double percentile = 99.99;
  int64_t num_bins = 2048, start_bin = 128, stride = 1, calib_lines = 512, batch_size = 32, max_length = 128;
  int threads = 0;
  bool strict = false;
};

// --calib-data batches, or --calib-text lines tokenized with the checkpoint's own tokenizer.
std::vector<ModelInputs> calibration_batches(const CalibArgs& a) {
  QDQBERT_CHECK(a.calib_data.empty() != a.calib_text.empty(), "give exactly one of --calib-data and --calib-text");
  if (!a.calib_data.empty()) return workflow::read_calibration_batches(a.calib_data);
  auto lines = workflow::read_text_lines(a.calib_text);
  if (static_cast<int64_t>(lines.size()) > a.calib_lines) lines.resize(static_cast<size_t>(a.calib_lines));
  return workflow::encode_batches(*tokenization::load_tokenizer(a.model), lines, a.max_length,
                                  a.batch_size);
}

void run(const CalibArgs& a) {
  check_output_is_not_input("--output", a.output,
                            {{"--model", a.model}, {"--calib-data", a.calib_data}, {"--calib-text", a.calib_text}});
  set_threads(a.threads);
  const std::vector<ModelInputs> batches = calibration_batches(a);
  io::PretrainedOptions options;
  options.task = a.task;
  options.strict = a.strict;
  workflow::QuantConfig qc;
  if (!a.quant_config.empty()) qc = workflow::QuantConfig::from_json_file(a.quant_config);
  qc.apply_to(options);
  if (a.method != "max") {
    // Histogram methods need histogram calibrators on the input quantizers.
    nn::QuantDescriptor in = options.quant_desc_input ? *options.quant_desc_input : nn::default_quant_desc_input();
    if (!options.quant_desc_input) {
      auto cfg = Config::from_json_file(a.model + "/config.json");
      if (cfg.quant_desc_input) in = *cfg.quant_desc_input;
    }
    in.calib_method = "histogram";
    options.quant_desc_input = in;
  }
  auto model = io::from_pretrained(a.model, options);
  qc.apply(*model);
  if (a.method != "max") {
    for (auto& [n, q] : named_quantizers(model->module())) {
      if (q->calibrator() && q->calibrator()->kind() == calib::CalibratorKind::kHistogram) {
        q->set_calibrator(std::make_unique<calib::HistogramCalibrator>(q->num_bits(), std::vector<int64_t>{},
                                                                       q->is_unsigned(), a.num_bins));
      }
    }
  }
  workflow::CalibrationOptions co;
  co.method = a.method;
  co.amax_options.percentile = a.percentile;
  co.amax_options.start_bin = a.start_bin;
  co.amax_options.stride = a.stride;
  co.filter = [&](const std::string&) { return true; };
  auto report = workflow::calibrate(*model, batches, co);
  // With the tokenizer files, the output is a checkpoint embed / qat / infer can read; all files or none.
  io::save_pretrained(*model, a.output, io::tokenizer_files(a.model));
  std::printf("calibrated %zu quantizers with %s over %zu batches; saved to %s\n", report.calibrated.size(),
              a.method.c_str(), batches.size(), a.output.c_str());
}

Register reg({"calibrate", "Calibrate quantizers (max, percentile, mse, entropy) and save the checkpoint",
              [](CLI::App& app) {
                auto a = std::make_shared<CalibArgs>();
                app.add_option("--model", a->model, "checkpoint folder")->required();
                app.add_option("--task", a->task, "model task (default: from config.json)");
                auto* data = app.add_option("--calib-data", a->calib_data, "safetensors with batch<k>_<argument> tensors");
                app.add_option("--calib-text", a->calib_text,
                               "UTF-8 text, one input per line, tokenized with the checkpoint's tokenizer")
                    ->excludes(data);
                app.add_option("--calib-lines", a->calib_lines, "--calib-text lines to use")->check(int_range(1, 1 << 30));
                app.add_option("--batch-size", a->batch_size, "--calib-text lines per batch")->check(int_range(1, kMaxBatchSize));
                app.add_option("--max-length", a->max_length, "--calib-text: truncate to this many tokens")
                    ->check(int_range(3, 512));
                app.add_option("--method", a->method, "max, percentile, mse or entropy")
                    ->check(CLI::IsMember({"max", "percentile", "mse", "entropy"}));
                app.add_option("--percentile", a->percentile, "percentile for --method percentile")
                    ->check(number_range(0.0, 100.0));
                app.add_option("--num-bins", a->num_bins, "histogram bins")->check(int_range(1, kMaxNumBins));
                app.add_option("--start-bin", a->start_bin, "first candidate bin (mse, entropy)")
                    ->check(non_negative_number());
                app.add_option("--stride", a->stride, "candidate stride (mse, entropy)")->check(positive_number());
                app.add_option("--quant-config", a->quant_config, "quantizer configuration JSON");
                add_strict_flag(app, a->strict);
                app.add_option("--output", a->output, "folder to write (save_pretrained)")->required();
                add_threads_option(app, a->threads);
                app.final_callback([a] { run(*a); });
              }});

}  // namespace
}  // namespace qdqbert::cli
