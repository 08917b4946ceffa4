#include "qdqbert/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "qdqbert/io/atomic_file.h"

namespace qdqbert::io {
namespace {

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  int64_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
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
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, "safetensors: cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    TORCH_CHECK(false, "safetensors: cannot stat '", path, "': ", std::strerror(errno));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    TORCH_CHECK(false, "safetensors: '", path, "' is ", size, " bytes, too short for the 8-byte header length");
  }
  // MAP_PRIVATE + PROT_WRITE: in-place writes by a caller are copy-on-write, never reach the file.
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  TORCH_CHECK(addr != MAP_FAILED, "safetensors: cannot mmap '", path, "': ", std::strerror(errno));
  mapping_ = std::shared_ptr<void>(addr, [size](void* p) { ::munmap(p, size); });
  const auto* base = static_cast<const uint8_t*>(addr);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  TORCH_CHECK(n <= size - 8, "safetensors: '", path, "': header length ", n, " runs past the end of the file (",
              size, " bytes)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(base + 8), reinterpret_cast<const char*>(base + 8 + n));
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "safetensors: '", path, "': the header is not valid JSON: ", e.what());
  }
  TORCH_CHECK(header.is_object(), "safetensors: '", path, "': the header is not a JSON object");
  data_ = base + 8 + n;
  data_size_ = size - 8 - n;
  std::vector<std::pair<uint64_t, std::string>> ranges;
  for (const auto& [key, v] : header.items()) {
    if (key == "__metadata__") {
      TORCH_CHECK(v.is_object(), "safetensors: '", path, "': __metadata__ is not an object");
      for (const auto& [mk, mv] : v.items()) {
        TORCH_CHECK(mv.is_string(), "safetensors: '", path, "': __metadata__ value of '", mk, "' is not a string");
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    TORCH_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                "safetensors: '", path, "': entry '", key, "' needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    TORCH_CHECK(v["dtype"].is_string(), "safetensors: '", path, "': dtype of '", key, "' is not a string");
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = dtype_by_name(e.dtype);
    TORCH_CHECK(info, "safetensors: '", path, "': tensor '", key, "' has unsupported dtype '", e.dtype, "'");
    TORCH_CHECK(v["shape"].is_array(), "safetensors: '", path, "': shape of '", key, "' is not a list");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      TORCH_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, "safetensors: '", path, "': shape of '", key,
                  "' has a non-integer or negative dim");
      e.shape.push_back(d.get<int64_t>());
      numel *= static_cast<uint64_t>(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    TORCH_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                "safetensors: '", path, "': data_offsets of '", key, "' must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    TORCH_CHECK(e.begin <= e.end && e.end <= data_size_, "safetensors: '", path, "': tensor '", key,
                "' has data_offsets [", e.begin, ", ", e.end, "] outside the ", data_size_, "-byte data section");
    TORCH_CHECK(e.end - e.begin == numel * static_cast<uint64_t>(info->size), "safetensors: '", path, "': tensor '",
                key, "' of dtype ", e.dtype, " and shape ", c10::IntArrayRef(e.shape), " needs ",
                numel * info->size, " bytes but data_offsets span ", e.end - e.begin);
    ranges.emplace_back(e.begin, key);
    entries_[key] = std::move(e);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& prev = entries_[ranges[i - 1].second];
    const auto& cur = entries_[ranges[i].second];
    TORCH_CHECK(cur.begin >= prev.end || cur.begin == cur.end || prev.begin == prev.end, "safetensors: '", path,
                "': tensors '", ranges[i - 1].second, "' and '", ranges[i].second, "' overlap");
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
  if (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(info->size) != 0) {
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

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors_in,
                      const std::map<std::string, std::string>& metadata) {
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
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * info->size;
    header[name] = {{"dtype", info->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  AtomicFile out(path);
  uint64_t n = h.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const auto& c : data) out.write(c.data_ptr(), c.numel() * c.element_size());
  out.commit();
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, std::vector<std::pair<std::string, at::Tensor>>(tensors.begin(), tensors.end()), metadata);
}

}  // namespace qdqbert::io
