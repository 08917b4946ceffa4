#include "qdqbert/io/safetensors_layout.h"

#include <algorithm>
#include <sstream>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"

namespace qdqbert::io {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},
                                                       {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                                       {"U8", 1},  {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsLayout parse_safetensors_layout(const uint8_t* file, uint64_t size, const std::string& path) {
  const std::string where = "safetensors: '" + path + "'";
  QDQBERT_CHECK(size >= 8, where, " is ", size, " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  QDQBERT_CHECK(n <= size - 8, where, ": header length ", n, " runs past the end of the file (", size, " bytes)");
  nlohmann::json header;
  try {
    header = parse_json(std::string_view(reinterpret_cast<const char*>(file + 8), static_cast<size_t>(n)),
                        where + " header");
  } catch (const JsonSyntaxError& e) {
    fail(where, ": the header is not valid JSON: ", e.parser_message());
  }
  QDQBERT_CHECK(header.is_object(), where, ": the header is not a JSON object");
  SafetensorsLayout out;
  out.data_offset = 8 + n;
  out.data_size = size - 8 - n;
  for (const auto& [key, v] : header.items()) {
    if (key == "__metadata__") {
      QDQBERT_CHECK(v.is_object(), where, ": __metadata__ is not an object");
      for (const auto& [mk, mv] : v.items()) {
        QDQBERT_CHECK(mv.is_string(), where, ": __metadata__ value of '", mk, "' is not a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    QDQBERT_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), where,
                  ": entry '", key, "' needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    QDQBERT_CHECK(v["dtype"].is_string(), where, ": dtype of '", key, "' is not a string");
    e.dtype = v["dtype"].get<std::string>();
    const int64_t item = safetensors_dtype_size(e.dtype);
    QDQBERT_CHECK(item > 0, where, ": tensor '", key, "' has unsupported dtype '", e.dtype, "'");
    QDQBERT_CHECK(v["shape"].is_array(), where, ": shape of '", key, "' is not a list");
    std::optional<uint64_t> bytes = static_cast<uint64_t>(item);
    for (const auto& d : v["shape"]) {
      QDQBERT_CHECK(d.is_number_integer() && (d.is_number_unsigned() || d.get<int64_t>() >= 0) &&
                        d.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                    where, ": shape of '", key, "' has a non-integer or negative dim ", d.dump());
      e.shape.push_back(d.get<int64_t>());
      if (bytes) bytes = checked_mul(*bytes, d.get<uint64_t>());
    }
    QDQBERT_CHECK(bytes, where, ": tensor '", key, "' of shape ", shape_str(e.shape),
                  " has more bytes than 64 bits can count");
    const auto& off = v["data_offsets"];
    QDQBERT_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                  where, ": data_offsets of '", key, "' must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    QDQBERT_CHECK(e.begin <= e.end && e.end <= out.data_size, where, ": tensor '", key, "' has data_offsets [",
                  e.begin, ", ", e.end, "] outside the ", out.data_size, "-byte data section");
    QDQBERT_CHECK(e.end - e.begin == *bytes, where, ": tensor '", key, "' of dtype ", e.dtype, " and shape ",
                  shape_str(e.shape), " needs ", *bytes, " bytes but data_offsets span ", e.end - e.begin);
    out.entries[key] = std::move(e);
  }
  // Any two non-empty byte ranges must be disjoint. Sorted by start, each range must begin at or after
  // the furthest end seen so far (not just its neighbour's: that misses a long range spanning several).
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> ranges;
  for (const auto& [k, e] : out.entries) {
    if (e.end > e.begin) ranges.emplace_back(&k, &e);
  }
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : *a.first < *b.first;
  });
  const std::pair<const std::string*, const SafetensorsEntry*>* furthest = nullptr;
  for (const auto& r : ranges) {
    if (furthest) {
      QDQBERT_CHECK(r.second->begin >= furthest->second->end, where, ": tensors '", *furthest->first, "' [",
                    furthest->second->begin, ", ", furthest->second->end, ") and '", *r.first, "' [", r.second->begin,
                    ", ", r.second->end, ") overlap");
    }
    if (!furthest || r.second->end > furthest->second->end) furthest = &r;
  }
  return out;
}

}  // namespace qdqbert::io
