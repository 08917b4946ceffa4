// libFuzzer target: the pytorch_model.bin reader's torch-free layers on arbitrary bytes. Mode 0: the zip
// directory (io::list_zip), then the pickle of its data.pkl record with the storage sizes it lists, as
// read_pytorch_bin does. Mode 1: the bytes as a pickle (io::parse_state_dict_pickle) with fixed storages.
// Invariants: every accepted record lies inside the file, and every accepted tensor view lies inside its
// storage with no more elements than it.
#include <map>

#include "fuzz_util.h"
#include "qdqbert/error.h"
#include "qdqbert/io/pickle_state_dict.h"
#include "qdqbert/io/zip.h"

namespace {

void check_views(const std::vector<std::pair<std::string, qdqbert::io::PickledTensor>>& tensors,
                 const std::map<std::string, uint64_t>& storages) {
  using qdqbert::fuzz::check;
  for (const auto& [name, t] : tensors) {
    const int64_t elem = qdqbert::io::pickled_storage_element_size(t.storage_type);
    check(elem > 0 && storages.count(t.storage_key) && t.size.size() == t.stride.size() && t.offset >= 0);
    const unsigned __int128 numel_storage = storages.at(t.storage_key) / static_cast<uint64_t>(elem);
    unsigned __int128 numel = 1, last = static_cast<uint64_t>(t.offset);
    for (size_t d = 0; d < t.size.size(); ++d) {
      check(t.size[d] >= 0 && t.stride[d] >= 0);
      numel *= static_cast<uint64_t>(t.size[d]);
      if (t.size[d] > 0) last += static_cast<unsigned __int128>(t.size[d] - 1) * static_cast<uint64_t>(t.stride[d]);
    }
    if (numel > 0) check(last < numel_storage && numel <= numel_storage);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  if (size < 1) return 0;
  try {
    if (data[0] % 2 == 0) {
      const auto records = io::list_zip(data + 1, size - 1, "fuzz.bin");
      std::map<std::string, uint64_t> storages;
      const io::ZipEntry* pickle = nullptr;
      uint64_t total = 0;
      for (const auto& r : records) {
        fuzz::check(r.data_offset + r.compressed_size <= size - 1);
        total += r.size;
        if (r.name.size() >= 8 && r.name.compare(r.name.size() - 8, 8, "data.pkl") == 0) pickle = &r;
        const size_t at = r.name.find("/data/");
        if (at != std::string::npos) storages[r.name.substr(at + 6)] = r.size;
      }
      fuzz::check(total <= size - 1);
      if (pickle && pickle->method == 0) {
        check_views(io::parse_state_dict_pickle(data + 1 + pickle->data_offset, pickle->size, storages, "fuzz.bin"),
                    storages);
      }
    } else {
      static const std::map<std::string, uint64_t> storages = {{"0", 64}, {"1", 4096}, {"2", 0}};
      check_views(io::parse_state_dict_pickle(data + 1, size - 1, storages, "fuzz.bin"), storages);
    }
  } catch (const Error&) {
  }
  return 0;
}
