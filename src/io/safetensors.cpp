#include "qdqbert/io/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/checkpoint_source.h"
#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/io/file.h"

namespace qdqbert::io {
namespace {

// The dtype names of safetensors_layout.h as torch types (their sizes come from c10::elementSize).
struct DtypeInfo {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"I64", at::kLong},
    {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},   {"U8", at::kByte},       {"BOOL", at::kBool},
};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes) {
    if (n == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes) {
    if (t == d.type) return &d;
  }
  return nullptr;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  try {
    MappedFile file(path, "safetensors");
    SafetensorsLayout layout = parse_safetensors_layout(file.data(), file.size(), path);
    mapping_ = file.mapping();
    data_ = file.data() + layout.data_offset;
    data_size_ = layout.data_size;
    entries_ = std::move(layout.entries);
    metadata_ = std::move(layout.metadata);
  } catch (const Error& e) {
    TORCH_CHECK(false, e.what());  // one exception type from the torch layer
  }
}

std::vector<std::string> SafetensorsFile::keys() const {
  std::vector<std::pair<uint64_t, std::string>> v;
  for (const auto& [k, e] : entries_) v.emplace_back(e.begin, k);
  std::sort(v.begin(), v.end());
  std::vector<std::string> out;
  for (auto& p : v) out.push_back(p.second);
  return out;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& key) const {
  auto it = entries_.find(key);
  TORCH_CHECK_INDEX(it != entries_.end(), "safetensors: '", path_, "' has no tensor '", key, "'");
  return it->second;
}

at::Tensor SafetensorsFile::get(const std::string& key) const {
  const SafetensorsEntry& e = entry(key);
  const DtypeInfo* info = dtype_by_name(e.dtype);
  auto options = at::TensorOptions().dtype(info->type);
  if (e.end == e.begin) return at::empty(e.shape, options);
  void* ptr = const_cast<uint8_t*>(data_ + e.begin);
  if (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(c10::elementSize(info->type)) != 0) {
    // Misaligned for its dtype: copy instead of aliasing.
    at::Tensor t = at::empty(e.shape, options);
    std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
    return t;
  }
  auto keep = mapping_;
  return torch::from_blob(ptr, e.shape, [keep](void*) mutable { keep.reset(); }, options);
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& k : f.keys()) out[k] = f.get(k);
  return out;
}

TensorSources open_safetensors(const std::string& path) {
  std::optional<MappedFile> file;
  SafetensorsLayout layout;
  try {
    file.emplace(path, "safetensors");
    // The header with pread, not through the mapping (a page touched there stays resident, and on this
    // kernel a whole 2 MiB folio may come with it): its 8-byte length, then as much of the header as
    // the file holds. parse_safetensors_layout reads nothing past 8 + that length.
    const uint64_t size = file->size();
    std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(size, 8)));
    pread_exact(*file, 0, head.data(), head.size(), "the header length");
    if (size >= 8) {
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | head[i];
      if (n <= size - 8) {
        head.resize(static_cast<size_t>(8 + n));
        pread_exact(*file, 8, head.data() + 8, n, "the header");
      }
    }
    layout = parse_safetensors_layout(head.data(), size, path);
  } catch (const Error& e) {
    TORCH_CHECK(false, e.what());  // the same message as SafetensorsFile's
  }
  TensorSources out;
  for (const auto& [k, e] : layout.entries) {
    // Row-major strides. Their products fit: parse_safetensors_layout checked the shape's byte size
    // against the span in the file (an empty tensor keeps strides of 1, never used).
    std::vector<int64_t> strides(e.shape.size(), 1);
    if (e.end > e.begin) {
      for (size_t d = e.shape.size(); d-- > 1;) strides[d - 1] = strides[d] * e.shape[d];
    }
    out.emplace(k, TensorSource::in_file(k, *file, layout.data_offset + e.begin, dtype_by_name(e.dtype)->type, e.shape,
                                         strides, 0));
  }
  return out;
}

void write_safetensors(AtomicFile& out, const std::vector<std::pair<std::string, at::Tensor>>& tensors_in,
                       const std::map<std::string, std::string>& metadata) {
  const std::string& path = out.path();
  auto tensors = tensors_in;
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<at::Tensor> data;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    TORCH_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined (writing '", path, "')");
    TORCH_CHECK(i == 0 || tensors[i - 1].first != name, "save_safetensors: duplicate tensor name '", name, "'");
    const DtypeInfo* info = dtype_by_type(t.scalar_type());
    TORCH_CHECK(info, "save_safetensors: tensor '", name, "' has unsupported dtype ", t.scalar_type());
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c10::elementSize(info->type);
    header[name] = {{"dtype", info->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  uint64_t n = h.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const auto& c : data) out.write(c.data_ptr(), c.numel() * c.element_size());
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  AtomicFile out(path);
  write_safetensors(out, tensors, metadata);
  out.commit();
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, std::vector<std::pair<std::string, at::Tensor>>(tensors.begin(), tensors.end()), metadata);
}

}  // namespace qdqbert::io
