#pragma once
/// \file
/// The quant_trainer flags of squad_qa (CLI11; app code, not installed, so the library never depends on
/// CLI11): --wprec, --aprec, --quant-per-tensor, --quant-disable, --quant-disable-keyword, --quant-disable-layer-module,
/// --quant-enable-layer-module, --calibrator, --percentile, --num-calib-batch, --fuse-qkv, --clip-gelu,
/// --recalibrate-weights.
#include <CLI/CLI.hpp>

#include "qdqbert/workflow/quant_trainer.h"

namespace squad_qa {

inline void add_quant_flags(CLI::App& app, qdqbert::workflow::QuantTrainerOptions& o) {
  app.add_option("--wprec", o.wprec, "weight precision in bits")->check(CLI::Range(2, 16));
  app.add_option("--aprec", o.aprec, "activation precision in bits")->check(CLI::Range(2, 16));
  app.add_flag("--quant-per-tensor", o.quant_per_tensor, "per-tensor weight scaling");
  app.add_flag("--quant-disable", o.quant_disable, "disable all quantizers");
  app.add_option("--quant-disable-keyword", o.quant_disable_keyword, "disable quantizers matching these regexes");
  app.add_option("--quant-disable-layer-module", o.quant_disable_layer_module,
                 "disable quantizers under layer.<i>.<module> (regex)");
  app.add_option("--quant-enable-layer-module", o.quant_enable_layer_module,
                 "enable quantizers under layer.<i>.<module> (regex)");
  app.add_option("--calibrator", o.calibrator, "max, percentile, mse or entropy")
      ->check(CLI::IsMember({"max", "percentile", "mse", "entropy"}));
  app.add_option("--percentile", o.percentile, "percentile for the percentile calibrator")->check(CLI::Range(0.0, 100.0));
  app.add_option("--num-calib-batch", o.num_calib_batch, "number of batches for calibration")
      ->check(CLI::PositiveNumber);
  app.add_flag("--fuse-qkv", o.fuse_qkv, "use the same amax for q, k and v (TensorRT)");
  app.add_option("--clip-gelu", o.clip_gelu, "clip the GELU output amax to N")->check(CLI::NonNegativeNumber);
  app.add_flag("--recalibrate-weights", o.recalibrate_weights, "recalibrate weight amax to max|W|");
}

}  // namespace squad_qa
