#pragma once
/// \file
/// Checkpoint I/O: read Hugging Face checkpoint folders (model.safetensors, sharded
/// model.safetensors.index.json, pytorch_model.bin zip archives and their sharded index), load them
/// into any QDQBERT class (strict by default; plain `BertFor*` checkpoints accepted), and write
/// `save_pretrained` folders the Python reference can load.

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/config.h"
#include "qdqbert/models/qdqbert.h"

namespace qdqbert::io {

/// Reads every tensor of a checkpoint file or folder (name → tensor, CPU, dtype as stored).
/// Folder lookup order: model.safetensors, model.safetensors.index.json, pytorch_model.bin,
/// pytorch_model.bin.index.json.
std::map<std::string, at::Tensor> read_checkpoint(const std::string& path);

/// Reads a `torch.save(state_dict)` zip archive (pytorch_model.bin) with a minimal unpickler.
std::map<std::string, at::Tensor> read_pytorch_bin(const std::string& path);

/// What a load did.
struct LoadReport {
  std::vector<std::string> missing_keys;     ///< model tensors the checkpoint did not provide
  std::vector<std::string> unexpected_keys;  ///< checkpoint tensors the model has no place for
  std::vector<std::string> ignored_keys;     ///< known leftovers: position_ids buffers, head weights of another class
  std::vector<std::string> loaded_amax;      ///< quantizers whose `_amax` came from the checkpoint
};

/// Copies a state dict into `model`. Accepts HF key variants: a missing or extra "bert." prefix,
/// legacy LayerNorm `gamma`/`beta`, `embeddings.position_ids`. fp16/bf16/fp64 tensors are converted to
/// the parameter dtype. `<quantizer>._amax` keys register the quantizer's amax (per-tensor or
/// per-channel shapes). A wrong shape is an error naming `source` and the key; with `strict`, any
/// missing or unexpected key is an error listing all of them.
LoadReport load_state_dict(TaskModel& model, const std::map<std::string, at::Tensor>& state, bool strict = true,
                           const std::string& source = "<state dict>");

/// Every tensor of the model's state dict with its Python name (parameters, defined buffers,
/// quantizer `_amax`), including both names of tied weights.
std::vector<std::pair<std::string, at::Tensor>> state_dict(torch::nn::Module& model);

struct PretrainedOptions {
  /// Task to build; empty = from config.json "architectures" (else "base").
  std::string task;
  bool strict = true;
  /// Override the descriptors stored in config.json (or the process defaults).
  std::optional<nn::QuantDescriptor> quant_desc_input, quant_desc_weight;
  /// Override num_labels (heads of a base checkpoint).
  std::optional<int64_t> num_labels;
};

/// Loads config.json + weights from `dir` into the model class of the task.
std::shared_ptr<TaskModel> from_pretrained(const std::string& dir, const PretrainedOptions& options = {},
                                           LoadReport* report = nullptr);

/// Writes `dir`/config.json (with "architectures" and a "quantization_config" holding the descriptors in
/// use) and `dir`/model.safetensors, each atomically. Creates `dir` if needed.
void save_pretrained(TaskModel& model, const std::string& dir);

}  // namespace qdqbert::io
