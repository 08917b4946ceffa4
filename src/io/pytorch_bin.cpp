// pytorch_model.bin reader: the zip archive written by torch.save (format since torch 1.6) read with
// LibTorch's PyTorchStreamReader and a minimal pickle VM that understands what a state dict pickles
// to (OrderedDict, torch._utils._rebuild_tensor_v2, persistent storage ids). LibTorch 1.13's
// pickle_load cannot read an OrderedDict, hence this (io::parse_state_dict_pickle, torch-free).
//
// Untrusted input: the archive's directory is listed and checked first (io::list_zip: every record
// inside the file, nothing inflating past the file's size), and the pickle's views are checked against
// their storages (parse_state_dict_pickle) before any tensor exists.
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "io/checkpoint_source.h"
#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/file.h"
#include "qdqbert/io/pickle_state_dict.h"
#include "qdqbert/io/zip.h"
#include "qdqbert/strings.h"

namespace qdqbert::io {
namespace {

// LibTorch's zip reader over the file list_zip checked: the same open descriptor, read with pread, so
// what LibTorch reads is the file that was accepted (never a second open by name), and the records it
// copies out do not also stay resident as mapped pages.
class CheckedFileReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit CheckedFileReader(MappedFile file) : file_(std::move(file)) {}
  size_t size() const override { return static_cast<size_t>(file_.size()); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what) const override {
    if (pos >= file_.size()) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, file_.size() - pos));
    pread_exact(file_, pos, buf, n, what);
    return n;
  }

 private:
  MappedFile file_;
};

// What a storage record is: where its bytes start in the file, and whether they are stored as they are.
struct StorageRecord {
  uint64_t data_offset = 0, size = 0;
  bool stored = true;
};

}  // namespace

TensorSources open_pytorch_bin(const std::string& path) {
  // The directory first: a regular file only, every record inside it, nothing inflating past its size.
  std::string prefix;
  std::map<std::string, uint64_t> storage_bytes;
  std::map<std::string, StorageRecord> records_by_key;
  bool has_pickle = false;
  std::optional<MappedFile> file;
  try {
    file.emplace(path, "pytorch_model.bin");
    // With pread, not through the mapping: a page touched there stays resident (on this kernel a whole
    // 2 MiB folio per local header), and the loads that follow would pay for it in peak RSS.
    const MappedFile& f = *file;
    const std::vector<ZipEntry> records = list_zip(
        [&f](uint64_t offset, uint64_t n, uint8_t* out) { pread_exact(f, offset, out, n, "the zip directory"); },
        f.size(), path);
    TORCH_CHECK(!records.empty(), "pytorch_model.bin '", path, "': the zip archive is empty");
    // torch.save puts every record under one folder named after the archive ("archive/data.pkl").
    const size_t slash = records.front().name.find('/');
    prefix = slash == std::string::npos ? std::string() : records.front().name.substr(0, slash + 1);
    for (const auto& r : records) {
      if (r.name == prefix + "data.pkl") has_pickle = true;
      if (starts_with(r.name, prefix + "data/")) {
        const std::string key = r.name.substr(prefix.size() + 5);
        storage_bytes[key] = r.size;
        records_by_key[key] = {r.data_offset, r.size, r.method == 0};
      }
    }
  } catch (const Error& e) {
    TORCH_CHECK(false, e.what(), " (the legacy non-zip torch.save format is not supported)");
  }
  TORCH_CHECK(has_pickle, "pytorch_model.bin '", path, "': no data.pkl record");
  std::shared_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_shared<caffe2::serialize::PyTorchStreamReader>(std::make_shared<CheckedFileReader>(*file));
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "pytorch_model.bin '", path, "' is not a torch.save zip archive: ", e.what_without_backtrace());
  }
  std::vector<std::pair<std::string, PickledTensor>> pickled;
  {
    auto [ptr, n] = zip->getRecord("data.pkl");
    try {
      pickled = parse_state_dict_pickle(static_cast<const uint8_t*>(ptr.get()), n, storage_bytes, path);
    } catch (const Error& e) {
      TORCH_CHECK(false, e.what());
    }
  }
  static const std::map<std::string, at::ScalarType> dtypes = {
      {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort}, {"CharStorage", at::kChar}, {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  std::map<std::string, at::ScalarType> storage_dtype;
  TensorSources out;
  for (const auto& [name, t] : pickled) {
    const at::ScalarType dtype = dtypes.at(t.storage_type);  // parse_state_dict_pickle knows only these
    const auto [it, fresh] = storage_dtype.emplace(t.storage_key, dtype);
    TORCH_CHECK(fresh || it->second == dtype, "pytorch_model.bin '", path, "': storage ", t.storage_key,
                " is read as both ", it->second, " and ", dtype);
    const StorageRecord& record = records_by_key.at(t.storage_key);  // the pickle parser checked it exists
    if (record.stored) {
      out.emplace(name, TensorSource::in_file(name, *file, record.data_offset, dtype, t.size, t.stride, t.offset));
      continue;
    }
    // A compressed record (torch.save never writes one) inflates whole, when the tensor is read.
    auto make = [zip, path, key = t.storage_key, bytes = record.size, dtype, t = t] {
      auto [data, n] = zip->getRecord("data/" + key);
      TORCH_CHECK(n == bytes, "pytorch_model.bin '", path, "': storage ", key, " inflates to ", n,
                  " bytes, but the zip directory says ", bytes);
      at::Tensor s = torch::empty({static_cast<int64_t>(n / c10::elementSize(dtype))}, torch::dtype(dtype));
      std::memcpy(s.data_ptr(), data.get(), n);
      return s.as_strided(t.size, t.stride, t.offset).clone();
    };
    out.emplace(name, TensorSource::made_by(make, dtype, t.size));
  }
  return out;
}

std::map<std::string, at::Tensor> read_pytorch_bin(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, source] : open_pytorch_bin(path)) out[name] = source.read();
  return out;
}

}  // namespace qdqbert::io
