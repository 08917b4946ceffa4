#pragma once
/// \file
/// ONNX export with QuantizeLinear/DequantizeLinear pairs for TensorRT. LibTorch has no ONNX exporter,
/// so qdqbert writes the graph itself (ONNX protobuf from libonnx) and checks it with
/// onnx::checker::check_model.
///
/// Every enabled quantizer becomes QuantizeLinear → DequantizeLinear (int8, zero point 0,
/// scale = amax / 127) exactly where the fake quant sits in the LibTorch model. Weights are emitted
/// transposed ([in, out]) for MatMul, so per-row weight scales use axis=1. The LibTorch model matches the
/// graph in FakeQuantMode::kTorchNative (full range [-128, 127]); see set_export_mode().

#include <cstdint>
#include <string>
#include <vector>

namespace qdqbert {
class TaskModel;
}

namespace qdqbert::onnx {

struct ExportOptions {
  int64_t opset = 13;        ///< 13..17; LayerNormalization is a native op from 17, decomposed below
  int64_t batch = 1;         ///< dummy shapes for documentation/value_info only (axes stay dynamic)
  int64_t seq_len = 128;
  bool fold_weights = false; ///< store weights as int8 initializers + DequantizeLinear
  bool check = true;         ///< run onnx::checker::check_model before writing
};

struct ExportReport {
  int64_t quantize_linear = 0;    ///< QuantizeLinear nodes written
  int64_t dequantize_linear = 0;  ///< DequantizeLinear nodes written
  int64_t enabled_quantizers = 0;
  std::vector<std::string> inputs, outputs;
};

/// Exports `model` to `path` (atomically). Errors (c10::Error) name the quantizer or setting at fault:
/// a quantizer without a stored amax (dynamic amax cannot be a static Q/DQ), unsigned, narrow range or
/// != 8 bits; unsupported model features (relative positions, cross-attention); unwritable path.
ExportReport export_model(TaskModel& model, const std::string& path, const ExportOptions& options = {});

/// Switches every quantizer of the model to the torch-native full-range fake quant (true) — what the
/// exported graph computes — or back to the reference kernel (false).
void set_export_mode(TaskModel& model, bool torch_native);

/// Output names of a task's graph, e.g. {"start_logits", "end_logits"} for question-answering.
std::vector<std::string> output_names(const std::string& task);

}  // namespace qdqbert::onnx
