// qdqbert-cli export-onnx: write a QuantizeLinear/DequantizeLinear ONNX graph for TensorRT.
#include <torch/torch.h>

#include "cli.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/onnx/export.h"

namespace qdqbert::cli {
namespace {

struct ExportArgs {
  bool strict = false;
  std::string model, task, output, quant_config;
  int64_t opset = 13, batch = 1, seq_len = 128;
  bool fold = false;
};

void run(const ExportArgs& a) {
  auto model = load_model(a.model, a.task, a.quant_config, a.strict);
  onnx::ExportOptions o;
  o.opset = a.opset;
  o.batch = a.batch;
  o.seq_len = a.seq_len;
  o.fold_weights = a.fold;
  auto r = onnx::export_model(*model, a.output, o);
  std::printf("wrote %s: %s, %lld enabled quantizers, %lld QuantizeLinear, %lld DequantizeLinear, outputs:",
              a.output.c_str(), model->class_name().c_str(), static_cast<long long>(r.enabled_quantizers),
              static_cast<long long>(r.quantize_linear), static_cast<long long>(r.dequantize_linear));
  for (const auto& n : r.outputs) std::printf(" %s", n.c_str());
  std::printf("\n");
}

Register reg({"export-onnx", "Export a calibrated model to ONNX with Q/DQ nodes (TensorRT int8)", [](CLI::App& app) {
                auto a = std::make_shared<ExportArgs>();
                app.add_option("--model", a->model, "checkpoint folder (calibrated)")->required();
                app.add_option("--task", a->task, "model task (default: from config.json)");
                app.add_option("--output", a->output, "ONNX file to write")->required();
                app.add_option("--opset", a->opset, "ONNX opset (13..17; 17 uses LayerNormalization)")
                    ->check(int_range(13, 17));
                app.add_option("--batch", a->batch, "dummy batch size (axes stay dynamic)")->check(positive_number());
                app.add_option("--seq-len", a->seq_len, "dummy sequence length")->check(positive_number());
                app.add_option("--quant-config", a->quant_config, "quantizer configuration JSON");
                add_strict_flag(app, a->strict);
                app.add_flag("--fold-weights", a->fold, "store weights as int8 initializers + DequantizeLinear");
                app.final_callback([a] { run(*a); });
              }});

}  // namespace
}  // namespace qdqbert::cli
