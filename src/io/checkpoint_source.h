#pragma once
// Checkpoint tensors that are read only when used (private to src/io; tests reach it through src/).
//
// io::from_pretrained streams a checkpoint: every file is opened and validated first (headers, zip
// directory, pickle, shard index: the same checks and messages as reading it whole), then each tensor is
// read with pread straight into its parameter, a chunk at a time, and checked for NaN/Inf chunk by chunk.
// Nothing is read through a mapping (headers and the zip directory included), so the file's pages never
// count in the process's RSS (they stay in the page cache), and the peak is the model itself plus one
// chunk: a converting copy (fp16/bf16/fp64 into fp32) goes through a buffer of kChunkBytes, never a
// whole-tensor temporary. Each view of a .bin storage reads only the span it covers (two names of a tied
// weight read it twice, from the page cache); a strided view reads its span whole, then copies.
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/io/file.h"

namespace qdqbert::io {

/// Reads exactly `n` bytes at byte `pos` of `file` into `out` (pread; retried on EINTR and short reads).
/// Errors (c10::Error) name the file and `what`.
void pread_exact(const MappedFile& file, uint64_t pos, void* out, uint64_t n, const char* what);

/// One tensor of a checkpoint: its dtype and shape now, its values when read() or copy_to() asks.
class TensorSource {
 public:
  /// Bytes of the file read at once by copy_to (and held in a buffer when the dtype is converted).
  static constexpr int64_t kChunkBytes = int64_t{4} << 20;
  /// A piece of the source as read, before any dtype conversion; false stops the copy.
  using Accept = std::function<bool(const at::Tensor& piece)>;

  TensorSource() = default;
  /// A tensor already in memory (what load_state_dict's map holds).
  static TensorSource in_memory(at::Tensor value);
  /// A tensor that only `make` can produce, whole (a compressed zip record, inflated when used).
  static TensorSource made_by(std::function<at::Tensor()> make, at::ScalarType dtype, std::vector<int64_t> sizes);
  /// The view (`sizes`, `strides`, `offset` in elements) of a storage of `dtype` elements starting at byte
  /// `storage_pos` of `file`, read with pread (`key` names it in read errors). The caller has checked,
  /// overflow-safe, that the view lies inside the storage and the storage inside the file.
  static TensorSource in_file(const std::string& key, MappedFile file, uint64_t storage_pos, at::ScalarType dtype,
                              std::vector<int64_t> sizes, std::vector<int64_t> strides, int64_t offset);

  at::ScalarType dtype() const { return dtype_; }
  at::IntArrayRef sizes() const { return sizes_; }
  int64_t numel() const;
  bool is_floating_point() const;

  /// The whole tensor, in memory of its own (read from the file, or what `make` returns).
  at::Tensor read() const;
  /// Copies the tensor into `dst` (same sizes, any dtype; copy_ converts). A contiguous view in a file
  /// goes to a contiguous CPU `dst` in pieces of `chunk_bytes`: straight into `dst` when the dtypes
  /// match, through one piece-sized buffer when they differ. Anything else is read whole first.
  /// `accept` (optional) sees each piece before it is converted; when it returns false the copy stops
  /// (part of `dst` may be written) and copy_to returns false.
  bool copy_to(const at::Tensor& dst, const Accept& accept = {}, int64_t chunk_bytes = kChunkBytes) const;

 private:
  bool contiguous_view() const;
  // The view read from the file: the elements it spans, as a tensor it is a strided view of.
  at::Tensor read_view() const;

  at::ScalarType dtype_ = at::kFloat;
  std::vector<int64_t> sizes_, strides_;
  int64_t offset_ = 0;
  std::function<at::Tensor()> make_;  // in memory, or made whole when used
  std::optional<MappedFile> file_;    // else: in this file, read with pread
  uint64_t storage_pos_ = 0;
  std::string what_;  // "tensor '<key>'", for read errors
};

/// Checkpoint tensors by name, in key order (as read_checkpoint's map).
using TensorSources = std::map<std::string, TensorSource>;

/// Opens and validates a safetensors file (as SafetensorsFile does), reading no tensor data.
TensorSources open_safetensors(const std::string& path);
/// Opens and validates a pytorch_model.bin (zip directory, pickle, views against storages, one dtype per
/// storage; as read_pytorch_bin does), reading no storage.
TensorSources open_pytorch_bin(const std::string& path);
/// Opens a checkpoint file or folder as read_checkpoint finds it (sharded indexes included: shard names,
/// and the index and its shards agreeing key for key, are checked before anything is read).
TensorSources open_checkpoint(const std::string& path);

}  // namespace qdqbert::io
