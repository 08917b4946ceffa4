// Built instead of export.cpp when ONNX export is off (QDQBERT_WITH_ONNX=OFF, or AUTO with a LibTorch whose
// bundled protobuf headers clash with libonnx): every entry point reports that clearly.
#include <torch/torch.h>

#include "qdqbert/models/qdqbert.h"
#include "qdqbert/onnx/export.h"

namespace qdqbert::onnx {

ExportReport export_model(TaskModel&, const std::string& path, const ExportOptions&) {
  TORCH_CHECK(false, "qdqbert was built without ONNX export (QDQBERT_WITH_ONNX): cannot write '", path, "'");
}

}  // namespace qdqbert::onnx
