#pragma once
/// \file
/// The pickle (data.pkl) of a `torch.save(state_dict)` archive, parsed without torch (the core target):
/// a minimal pickle VM for what state dicts pickle to, with every tensor view checked against its
/// storage before the torch layer (read_pytorch_bin) creates a tensor.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qdqbert::io {

/// One tensor of a pickled state dict: a view of a storage record ("data/<storage_key>").
struct PickledTensor {
  std::string storage_key;
  std::string storage_type;  ///< "FloatStorage", "HalfStorage", ... (see pickled_storage_element_size)
  int64_t offset = 0;        ///< in elements
  std::vector<int64_t> size, stride;
};

/// Bytes per element of a torch storage class name, 0 for one the reader does not support.
int64_t pickled_storage_element_size(const std::string& storage_type);

/// The most objects one pickle may create (about 15 per tensor in a real state dict).
constexpr size_t kMaxPickleObjects = size_t{4} << 20;

/// Parses `data` (the data.pkl record; `path` names the archive in errors) into (name, tensor) pairs in
/// pickle order. `storage_bytes` gives the byte size of each storage record by key. Refuses
/// (qdqbert::Error): unknown opcodes or classes (nothing is ever executed), a truncated or malformed
/// pickle, more than kMaxPickleObjects objects, an unknown storage type or a missing storage record, a
/// view with a negative offset, size or stride, an element count or extent that overflows 64 bits, a
/// view reaching past its storage or with more elements than it, a root that is not a dict of
/// (str, tensor) pairs, and a name given twice. However deeply the pickle nests, nothing recurses.
std::vector<std::pair<std::string, PickledTensor>> parse_state_dict_pickle(
    const uint8_t* data, size_t size, const std::map<std::string, uint64_t>& storage_bytes, const std::string& path);

}  // namespace qdqbert::io
