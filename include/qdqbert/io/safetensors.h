#pragma once
/// \file
/// safetensors read (mmap, zero-copy for little-endian contiguous data) and atomic write.
/// Format: 8-byte little-endian header length N, N bytes of JSON
/// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, raw data.

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qdqbert/io/atomic_file.h"  // write_file_atomic, for callers that used to find it here
#include "qdqbert/io/safetensors_layout.h"

namespace qdqbert::io {

/// An opened safetensors file. Tensors returned by `get` alias the read-only mapping (zero copy) and
/// keep it alive; clone() before writing to them in place.
class SafetensorsFile {
 public:
  /// Maps and validates `path` (parse_safetensors_layout: header length, JSON, dtypes, overflow-checked
  /// shapes vs byte ranges, overlaps, bounds; a regular file only). Throws c10::Error naming the file and
  /// key at fault.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  /// Tensor names in file order (sorted by offset).
  std::vector<std::string> keys() const;
  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  const SafetensorsEntry& entry(const std::string& key) const;
  /// The tensor `key` (error naming the file when absent).
  at::Tensor get(const std::string& key) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;  // owns the mmap
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// Reads every tensor of a file (name → tensor), zero copy.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

/// Writes tensors (sorted by name, as the Python library does) with optional metadata, atomically:
/// a temporary file in the same directory renamed over `path` once complete.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// The bytes save_safetensors writes, into a staged file the caller commits (with others, in a group).
void write_safetensors(AtomicFile& out, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace qdqbert::io
