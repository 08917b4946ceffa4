#pragma once
/// \file
/// The safetensors header, parsed and validated without torch (the core target), so that every check on
/// untrusted sizes and offsets runs before a tensor exists, and so that a fuzzer can reach it alone.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qdqbert::io {

/// Header entry of one tensor.
struct SafetensorsEntry {
  std::string dtype;  ///< "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  ///< relative to the data section
};

/// What a safetensors file's first bytes say about the rest.
struct SafetensorsLayout {
  uint64_t data_offset = 0;  ///< where the data section starts (8 + header length)
  uint64_t data_size = 0;    ///< bytes in the data section
  std::map<std::string, SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
};

/// Bytes per element of a safetensors dtype name, 0 for a name the library does not read.
int64_t safetensors_dtype_size(const std::string& dtype);

/// Parses and validates the header of a safetensors file of `size` bytes starting at `file` (`path`
/// names it in errors). Reads only the first 8 + N bytes (N the header length it finds there, when it
/// fits in `size`), so `file` may hold just those. Every count, product and offset is overflow-checked.
/// Refuses (qdqbert::Error, naming the path and the tensor): a header length past the end, invalid or too
/// deeply nested JSON, an entry without dtype/shape/data_offsets, an unknown dtype, a negative or
/// non-integer dim, a shape whose byte size does not fit in 64 bits or differs from its data_offsets span,
/// offsets outside the data section, and any two tensors whose byte ranges overlap (empty tensors occupy
/// nothing).
SafetensorsLayout parse_safetensors_layout(const uint8_t* file, uint64_t size, const std::string& path);

}  // namespace qdqbert::io
