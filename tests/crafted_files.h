#pragma once
// Byte builders for crafted checkpoint files (torch-free): safetensors with any header, stored zip
// archives as torch.save writes them, and state-dict pickles with any tensor view. Shared by the CLI
// tests of hostile input and the torch-free parser tests (which also run under ASan + UBSan).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qdqbert::testing::crafted {

inline std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le(header.size(), 8) + header + data;
}

inline uint32_t crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A zip archive of stored records, as torch.save writes them.
inline std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out, central;
  for (const auto& [name, data] : records) {
    const uint64_t offset = out.size();
    const std::string sizes = le(crc32(data), 4) + le(data.size(), 4) + le(data.size(), 4);
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + sizes + le(name.size(), 2) + le(0, 2) +
           name + data;
    central += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + sizes +
               le(name.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(offset, 4) + name;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(records.size(), 2) + le(records.size(), 2) +
         le(central.size(), 4) + le(cd_offset, 4) + le(0, 2);
  return out;
}

// Pickle opcodes for a state dict {key: _rebuild_tensor_v2(FloatStorage "0" of `numel`, offset, size, stride)}.
inline std::string pint(int64_t v) { return "\x8a\x08" + le(static_cast<uint64_t>(v), 8); }  // LONG1, 8 bytes
inline std::string pstr(const std::string& s) { return "X" + le(s.size(), 4) + s; }            // BINUNICODE
inline std::string ptuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += pint(x);
  return s + "t";
}
// One pickled tensor: _rebuild_tensor_v2(storage `storage_key` of `storage_type` with `numel` elements,
// offset, size, stride, False, OrderedDict()), as torch.save writes it.
inline std::string tensor_pickle(const std::string& storage_type, const std::string& storage_key, int64_t numel,
                                 int64_t offset, const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
  return std::string("ctorch._utils\n_rebuild_tensor_v2\n(") + "(" + pstr("storage") + "ctorch\n" + storage_type +
         "\n" + pstr(storage_key) + pstr("cpu") + pint(numel) + "tQ" + pint(offset) + ptuple(size) + ptuple(stride) +
         "\x89" + "ccollections\nOrderedDict\n)R" + "tR";
}
inline std::string state_dict_pickle(const std::string& key, int64_t numel, int64_t offset,
                                     const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                                     const std::string& storage_key = "0") {
  return std::string("\x80\x02}") + pstr(key) +
         tensor_pickle("FloatStorage", storage_key, numel, offset, size, stride) + "s.";
}
// A whole state dict as torch.save pickles it: OrderedDict() then SETITEMS of (name, pickled tensor) pairs.
inline std::string state_dict_pickle(const std::vector<std::pair<std::string, std::string>>& name_and_tensor) {
  std::string out =
      "\x80\x02"
      "ccollections\nOrderedDict\n)R(";
  for (const auto& [name, tensor] : name_and_tensor) out += pstr(name) + tensor;
  return out + "u.";
}
inline std::string bin_file(const std::string& pickle, size_t storage_floats) {
  return zip_stored({{"archive/data.pkl", pickle},
                     {"archive/version", "3\n"},
                     {"archive/data/0", std::string(storage_floats * 4, '\0')}});
}

}  // namespace qdqbert::testing::crafted
