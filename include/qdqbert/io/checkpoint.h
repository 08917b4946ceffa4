#pragma once
/// \file
/// Checkpoint I/O: read Hugging Face checkpoint folders (model.safetensors, sharded
/// model.safetensors.index.json, pytorch_model.bin zip archives and their sharded index), load them
/// into any QDQBERT class (a pretrained encoder under any head, or strictly; plain `BertFor*` checkpoints accepted), and write
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

/// Reads every tensor of a checkpoint file or folder (name → tensor, CPU, dtype as stored): the tensors of a
/// single model.safetensors alias its mapping (zero copy, as load_safetensors), those of shards and of
/// pytorch_model.bin are copies. Folder lookup order: model.safetensors, model.safetensors.index.json,
/// pytorch_model.bin, pytorch_model.bin.index.json.
/// To load a model, load_checkpoint / from_pretrained stream instead and need no second copy in memory.
std::map<std::string, at::Tensor> read_checkpoint(const std::string& path);

/// Reads a `torch.save(state_dict)` zip archive (pytorch_model.bin) with a minimal unpickler.
std::map<std::string, at::Tensor> read_pytorch_bin(const std::string& path);

/// What a load did.
struct LoadReport {
  /// Model tensors the checkpoint did not provide. A non-strict load keeps their fresh initialization
  /// (Python `_init_weights`), as Hugging Face does for a head on a pretrained encoder ("newly initialized").
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;  ///< checkpoint tensors the model has no place for ("not used")
  std::vector<std::string> ignored_keys;     ///< known leftovers: position_ids buffers, head weights of another class
  std::vector<std::string> loaded_amax;      ///< quantizers whose `_amax` came from the checkpoint

  /// One line like Hugging Face's warning: how many weights were newly initialized and how many checkpoint
  /// tensors went unused, with the first names of each; "" when every key was accounted for.
  std::string summary(const std::string& class_name, const std::string& source) const;
};

/// Copies a state dict into `model`. Accepts HF key variants: a missing or extra "bert." prefix,
/// legacy LayerNorm `gamma`/`beta`, `embeddings.position_ids`. fp16/bf16/fp64 tensors are converted to
/// the parameter dtype. `<quantizer>._amax` keys register the quantizer's amax (per-tensor or
/// per-channel shapes).
///
/// Always errors, naming `source` and the key: a shape or dtype mismatch, and any missing or unexpected
/// key inside the encoder (`embeddings.*`, `encoder.*`), since that means the checkpoint and config.json
/// describe different encoders. With `strict`, any missing or unexpected key anywhere is an error
/// listing all of them; without it, head weights missing from the checkpoint keep their initialization
/// and unused checkpoint tensors (another head, a pooler the class lacks) are only reported.
///
/// Also errors on a NaN or Inf in any floating tensor (naming it, with the count and the first bad
/// value) unless `allow_non_finite`, and on a stored `_amax` that is not finite or is negative (always).
LoadReport load_state_dict(TaskModel& model, const std::map<std::string, at::Tensor>& state, bool strict = true,
                           const std::string& source = "<state dict>", bool allow_non_finite = false);

/// load_state_dict(model, read_checkpoint(path), strict, path, allow_non_finite), with the same checks,
/// errors and report, but streamed: every file (and shard index) is opened and validated first, then each
/// tensor is read from its file with pread straight into the model's tensor, a few MiB at a time (fp16,
/// bf16 and fp64 converted piece by piece) and checked for NaN/Inf as it is read. The file is never held
/// in memory, so the peak RSS a load adds is the model plus a few MiB.
LoadReport load_checkpoint(TaskModel& model, const std::string& path, bool strict = true,
                           bool allow_non_finite = false);

/// Every tensor of the model's state dict with its Python name (parameters, defined buffers,
/// quantizer `_amax`), including both names of tied weights.
std::vector<std::pair<std::string, at::Tensor>> state_dict(torch::nn::Module& model);

struct PretrainedOptions {
  /// Task to build; empty = from config.json "architectures" (else "base").
  std::string task;
  /// false (default, as Hugging Face): a pretrained encoder under any head; head weights the checkpoint
  /// lacks are initialized and reported. true: every key must match (`--strict` on the CLI).
  bool strict = false;
  /// Print LoadReport::summary() on stderr when some keys were initialized or unused.
  bool log_summary = true;
  /// Override the descriptors stored in config.json (or the process defaults).
  std::optional<nn::QuantDescriptor> quant_desc_input, quant_desc_weight;
  /// Load weights that hold NaN or Inf (refused by default, since every output would be NaN).
  bool allow_non_finite = false;
  /// Override num_labels (heads of a base checkpoint).
  std::optional<int64_t> num_labels;
};

/// Loads config.json + weights from `dir` into the model class of the task (weights streamed with
/// load_checkpoint).
std::shared_ptr<TaskModel> from_pretrained(const std::string& dir, const PretrainedOptions& options = {},
                                           LoadReport* report = nullptr);

/// Writes `dir`/config.json (with "architectures" and a "quantization_config" holding the descriptors in
/// use), `dir`/model.safetensors and `extra_files` (name in `dir` → bytes, e.g. tokenizer_files()), all
/// or none (io::AtomicFileGroup): a failure on any file leaves every one as it was. Creates `dir` if needed.
void save_pretrained(TaskModel& model, const std::string& dir,
                     const std::vector<std::pair<std::string, std::string>>& extra_files = {});

/// The tokenizer files a checkpoint folder has (vocab.txt, tokenizer.json, tokenizer_config.json,
/// special_tokens_map.json, SentencePiece models), as (file name, bytes); empty when it has none.
std::vector<std::pair<std::string, std::string>> tokenizer_files(const std::string& from_dir);

/// Copies tokenizer_files(from_dir) into `to_dir`, all or none. Error when it has none.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);

}  // namespace qdqbert::io
