// libFuzzer target: the safetensors header and layout (io::parse_safetensors_layout) on arbitrary bytes.
// Invariants of an accepted file: every tensor lies inside the data section, its span is exactly its
// shape's byte size, and no two non-empty tensors overlap.
#include <algorithm>
#include <vector>

#include "fuzz_util.h"
#include "qdqbert/error.h"
#include "qdqbert/io/safetensors_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  try {
    const io::SafetensorsLayout l = io::parse_safetensors_layout(data, size, "fuzz.safetensors");
    fuzz::check(l.data_offset + l.data_size == size);
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (const auto& [k, e] : l.entries) {
      fuzz::check(e.begin <= e.end && e.end <= l.data_size);
      unsigned __int128 bytes = static_cast<unsigned __int128>(io::safetensors_dtype_size(e.dtype));
      for (int64_t d : e.shape) bytes *= static_cast<unsigned __int128>(d);
      fuzz::check(bytes == e.end - e.begin);
      if (e.end > e.begin) spans.emplace_back(e.begin, e.end);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) fuzz::check(spans[i].first >= spans[i - 1].second);
  } catch (const Error&) {
  }
  return 0;
}
