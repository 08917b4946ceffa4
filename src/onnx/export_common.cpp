// Parts of the ONNX export API that do not need libonnx (built with and without QDQBERT_WITH_ONNX).
#include <torch/torch.h>

#include "qdqbert/models/qdqbert.h"
#include "qdqbert/onnx/export.h"

namespace qdqbert::onnx {

std::vector<std::string> output_names(const std::string& task) { return task_spec(task).outputs; }

void set_export_mode(TaskModel& model, bool torch_native) {
  for (auto& [n, q] : named_quantizers(model.module())) {
    q->set_fake_quant_mode(torch_native ? nn::FakeQuantMode::kTorchNative : nn::FakeQuantMode::kReference);
  }
}

}  // namespace qdqbert::onnx
