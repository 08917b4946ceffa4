// The torch-free parsers of checkpoint bytes on crafted input: the safetensors layout, the zip
// directory and the state-dict pickle (io/safetensors_layout.h, io/zip.h, io/pickle_state_dict.h). No
// torch here, so this file also runs under ASan + UBSan (tests/fuzz, qdqbert_core_tests_sanitized).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "crafted_files.h"
#include "qdqbert/error.h"
#include "qdqbert/io/pickle_state_dict.h"
#include "qdqbert/io/safetensors_layout.h"
#include "qdqbert/io/zip.h"

namespace qdqbert {
namespace {

using namespace qdqbert::testing::crafted;

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CoreIo, SafetensorsLayoutAcceptsAValidFileAndRefusesWrapsAndHiddenOverlaps) {
  const std::string ok = safetensors_bytes(
      R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "e": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]},
          "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}})",
      std::string(22, '\0'));
  const io::SafetensorsLayout l = io::parse_safetensors_layout(bytes(ok), ok.size(), "ok.safetensors");
  ASSERT_EQ(l.entries.size(), 3u);
  EXPECT_EQ(l.entries.at("b").begin, 16u);
  EXPECT_EQ(l.entries.at("b").end, 22u);
  EXPECT_EQ(l.metadata.at("format"), "pt");
  EXPECT_EQ(l.data_size, 22u);

  const std::string wrap = safetensors_bytes(
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 0]}})", "");
  EXPECT_NE(error_of([&] { io::parse_safetensors_layout(bytes(wrap), wrap.size(), "w.safetensors"); })
                .find("'w' of shape [4611686018427387904, 8] has more bytes than 64 bits can count"),
            std::string::npos);
  const std::string hidden = safetensors_bytes(
      R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
          "c": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
      std::string(16, '\0'));
  EXPECT_NE(error_of([&] { io::parse_safetensors_layout(bytes(hidden), hidden.size(), "h.safetensors"); })
                .find("tensors 'a' [0, 16) and 'c' [8, 16) overlap"),
            std::string::npos);
  const std::string spans = safetensors_bytes(  // a long range spanning two later ones
      R"({"a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]},
          "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]},
          "c": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}})",
      std::string(16, '\0'));
  EXPECT_NE(error_of([&] { io::parse_safetensors_layout(bytes(spans), spans.size(), "s.safetensors"); }).find("overlap"),
            std::string::npos);
  const std::string shortfile = "abc";
  EXPECT_NE(error_of([&] { io::parse_safetensors_layout(bytes(shortfile), 3, "t.safetensors"); }).find("too short"),
            std::string::npos);
}

TEST(CoreIo, ZipDirectoryIsCheckedAgainstTheFile) {
  const std::string z = zip_stored({{"archive/data.pkl", "abc"}, {"archive/data/0", std::string(16, 'x')}});
  const auto records = io::list_zip(bytes(z), z.size(), "z.bin");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].name, "archive/data/0");
  EXPECT_EQ(records[1].size, 16u);
  EXPECT_EQ(z.substr(records[1].data_offset, 16), std::string(16, 'x'));
  // A central entry claiming a deflated 512 MiB record in a file of a few hundred bytes.
  std::string bomb = z;
  const size_t cd = bomb.find(std::string("PK\x01\x02", 4));
  bomb.replace(cd + 10, 2, le(8, 2));
  bomb.replace(cd + 24, 4, le(512u << 20, 4));
  EXPECT_NE(error_of([&] { io::list_zip(bytes(bomb), bomb.size(), "bomb.bin"); }).find("extract to more than the file"),
            std::string::npos);
  // A local header offset past the end, and a truncated archive.
  std::string far = z;
  far.replace(cd + 42, 4, le(0xfffffff0u, 4));
  EXPECT_NE(error_of([&] { io::list_zip(bytes(far), far.size(), "far.bin"); }).find("runs past the end"),
            std::string::npos);
  EXPECT_NE(error_of([&] { io::list_zip(bytes(z), z.size() - 30, "cut.bin"); }).find("end-of-central-directory"),
            std::string::npos);
}

TEST(CoreIo, PickledViewsAreCheckedAgainstTheirStorage) {
  const std::map<std::string, uint64_t> storage = {{"0", 6 * 4}};
  const std::string ok = state_dict_pickle("w", 6, 2, {2, 2}, {2, 1});
  const auto t = io::parse_state_dict_pickle(bytes(ok), ok.size(), storage, "ok.bin");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].first, "w");
  EXPECT_EQ(t[0].second.storage_type, "FloatStorage");
  EXPECT_EQ(t[0].second.offset, 2);
  EXPECT_EQ(t[0].second.size, (std::vector<int64_t>{2, 2}));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {state_dict_pickle("w", 6, 3, {2, 2}, {2, 1}), "reaches past the end of its storage"},
      {state_dict_pickle("w", 6, int64_t{1} << 62, {1}, {1}), "reaches past the end of its storage"},
      {state_dict_pickle("w", 6, 0, {100}, {0}), "100 elements, more than its storage"},
      {state_dict_pickle("w", 6, 0, {int64_t{1} << 62, 8}, {0, 0}), "overflows 64 bits"},
      {state_dict_pickle("w", 6, 0, {2}, {-1}), "negative size or stride"},
      {state_dict_pickle("w", 6, 0, {2}, {1}, "7"), "missing storage record data/7"},
      {std::string("\x80\x02") + std::string(100000, ']') + std::string(99999, 'a') + ".", "not a dict"},
      {std::string("\x80\x02" "cos\nsystem\n(") + pstr("ls") + "tR.", "unsupported pickled object os.system"},
      {std::string("\x80\x02}"), "truncated pickle"},
  };
  for (const auto& c : bad) {
    const std::string& pickle = c.first;  // a named reference: C++17 lambdas cannot capture structured bindings
    const std::string err = error_of([&] { io::parse_state_dict_pickle(bytes(pickle), pickle.size(), storage, "x.bin"); });
    EXPECT_NE(err.find(c.second), std::string::npos) << c.second << " | " << err;
  }
}

}  // namespace
}  // namespace qdqbert
