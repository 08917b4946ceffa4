// Zip central directory reader (APPNOTE.TXT 6.3: end of central directory, ZIP64 locator and record,
// central file headers, local file headers). Read-only and bounds-checked at every field.
#include "qdqbert/io/zip.h"

#include <cstring>
#include <deque>
#include <set>
#include <vector>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"

namespace qdqbert::io {
namespace {

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocatorSig = 0x07064b50, kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
constexpr uint64_t kEocdSize = 22, kZip64LocatorSize = 20, kZip64EocdSize = 56, kCentralSize = 46, kLocalSize = 30;

// Little-endian reads from a buffer whose bounds the caller has checked.
uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

class Reader {
 public:
  Reader(const ZipReadAt& read_at, uint64_t size, const std::string& path)
      : read_at_(read_at), size_(size), where_("zip archive '" + path + "'") {}

  // [offset, offset + n) lies inside the file.
  bool fits(uint64_t offset, uint64_t n) const {
    const auto end = checked_add(offset, n);
    return end && *end <= size_;
  }
  void require(uint64_t offset, uint64_t n, const char* what) const {
    QDQBERT_CHECK(fits(offset, n), where_, ": ", what, " at byte ", offset, " (", n, " bytes) runs past the end of the ",
                  size_, "-byte file");
  }
  // The bytes [offset, offset + n) of the file, once checked to lie inside it; valid while the Reader lives.
  const uint8_t* at(uint64_t offset, uint64_t n, const char* what) {
    require(offset, n, what);
    buffers_.emplace_back(static_cast<size_t>(n));
    if (n > 0) read_at_(offset, n, buffers_.back().data());
    return buffers_.back().data();
  }
  const std::string& where() const { return where_; }
  uint64_t size() const { return size_; }

 private:
  const ZipReadAt& read_at_;
  uint64_t size_;
  std::string where_;
  std::deque<std::vector<uint8_t>> buffers_;  // what at() read: the end, the directory, each local header
};

// The end-of-central-directory record: the last signature match with its comment ending at the file end.
uint64_t find_eocd(Reader& r) {
  QDQBERT_CHECK(r.size() >= kEocdSize, r.where(), ": ", r.size(), " bytes, too short for a zip archive");
  const uint64_t lowest = r.size() > kEocdSize + 0xffff ? r.size() - kEocdSize - 0xffff : 0;
  const uint8_t* tail = r.at(lowest, r.size() - lowest, "the end of the archive");  // data + lowest
  for (uint64_t pos = r.size() - kEocdSize + 1; pos-- > lowest;) {
    const uint8_t* p = tail + (pos - lowest);
    if (le(p, 4) == kEocdSig && pos + kEocdSize + le(p + 20, 2) == r.size()) return pos;
  }
  fail(r.where(), ": no end-of-central-directory record (not a zip archive, or truncated)");
}

}  // namespace

std::vector<ZipEntry> list_zip(const uint8_t* data, uint64_t size, const std::string& path) {
  return list_zip([data](uint64_t offset, uint64_t n, uint8_t* out) { std::memcpy(out, data + offset, n); }, size,
                  path);
}

std::vector<ZipEntry> list_zip(const ZipReadAt& read_at, uint64_t size, const std::string& path) {
  Reader r(read_at, size, path);
  const uint64_t eocd = find_eocd(r);
  const uint8_t* e = r.at(eocd, kEocdSize, "the end-of-central-directory record");
  uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  QDQBERT_CHECK(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, r.where(), ": multi-disk archives are not supported");
  if (count == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    QDQBERT_CHECK(eocd >= kZip64LocatorSize, r.where(), ": ZIP64 sizes without a ZIP64 locator");
    const uint8_t* loc = r.at(eocd - kZip64LocatorSize, kZip64LocatorSize, "the ZIP64 locator");
    QDQBERT_CHECK(le(loc, 4) == kZip64LocatorSig, r.where(), ": ZIP64 sizes without a ZIP64 locator");
    const uint64_t rec_offset = le(loc + 8, 8);
    const uint8_t* rec = r.at(rec_offset, kZip64EocdSize, "the ZIP64 end of central directory");
    QDQBERT_CHECK(le(rec, 4) == kZip64EocdSig, r.where(), ": bad ZIP64 end-of-central-directory signature at byte ",
                  rec_offset);
    count = le(rec + 32, 8);
    cd_size = le(rec + 40, 8);
    cd_offset = le(rec + 48, 8);
  }
  r.require(cd_offset, cd_size, "the central directory");
  // Each entry takes at least kCentralSize bytes: a count beyond that is a lie, found before reserving.
  QDQBERT_CHECK(count <= cd_size / kCentralSize, r.where(), ": ", count, " records cannot fit in a ", cd_size,
                "-byte central directory");
  const uint8_t* cd = r.at(cd_offset, cd_size, "the central directory");  // data + cd_offset
  std::vector<ZipEntry> out;
  out.reserve(static_cast<size_t>(count));
  std::set<std::string> names;
  uint64_t pos = cd_offset, extracted = 0;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    QDQBERT_CHECK(pos + kCentralSize <= cd_end, r.where(), ": record ", i, " runs past the central directory");
    const uint8_t* c = cd + (pos - cd_offset);
    QDQBERT_CHECK(le(c, 4) == kCentralSig, r.where(), ": bad central directory signature for record ", i,
                  " at byte ", pos);
    const uint64_t flags = le(c + 8, 2), name_len = le(c + 28, 2), extra_len = le(c + 30, 2),
                   comment_len = le(c + 32, 2);
    const uint64_t entry_len = kCentralSize + name_len + extra_len + comment_len;
    QDQBERT_CHECK(pos + entry_len <= cd_end, r.where(), ": record ", i, " runs past the central directory");
    ZipEntry z;
    z.name.assign(reinterpret_cast<const char*>(c + kCentralSize), static_cast<size_t>(name_len));
    z.method = static_cast<uint16_t>(le(c + 10, 2));
    z.compressed_size = le(c + 20, 4);
    z.size = le(c + 24, 4);
    uint64_t local = le(c + 42, 4);
    // ZIP64 extended information (header 0x0001): 8-byte values for the fields saturated above, in order.
    const uint8_t* x = c + kCentralSize + name_len;
    for (uint64_t k = 0; k + 4 <= extra_len;) {
      const uint64_t id = le(x + k, 2), len = le(x + k + 2, 2);
      QDQBERT_CHECK(k + 4 + len <= extra_len, r.where(), ": record '", z.name, "' has a truncated extra field");
      if (id == 0x0001) {
        uint64_t f = k + 4;
        for (uint64_t* field : {&z.size, &z.compressed_size, &local}) {
          if (*field != 0xffffffff) continue;
          QDQBERT_CHECK(f + 8 <= k + 4 + len, r.where(), ": record '", z.name, "' has a truncated ZIP64 field");
          *field = le(x + f, 8);
          f += 8;
        }
      }
      k += 4 + len;
    }
    QDQBERT_CHECK(!(flags & 1), r.where(), ": record '", z.name, "' is encrypted");
    QDQBERT_CHECK(z.method == 0 || z.method == 8, r.where(), ": record '", z.name, "' uses compression method ",
                  z.method, " (only stored and deflated records are read)");
    QDQBERT_CHECK(z.method != 0 || z.size == z.compressed_size, r.where(), ": stored record '", z.name,
                  "' has a size of ", z.size, " but ", z.compressed_size, " bytes in the file");
    const uint8_t* l = r.at(local, kLocalSize, "a local file header");
    QDQBERT_CHECK(le(l, 4) == kLocalSig, r.where(), ": bad local header signature for record '", z.name,
                  "' at byte ", local);
    z.data_offset = local + kLocalSize + le(l + 26, 2) + le(l + 28, 2);
    r.require(z.data_offset, z.compressed_size, ("the bytes of record '" + z.name + "'").c_str());
    QDQBERT_CHECK(names.insert(z.name).second, r.where(), ": record '", z.name, "' appears twice");
    const auto total = checked_add(extracted, z.size);
    QDQBERT_CHECK(total && *total <= size, r.where(), ": its records extract to more than the file's ", size,
                  " bytes (record '", z.name, "' alone is ", z.size,
                  "); compressed archives that large are refused (torch.save stores records uncompressed)");
    extracted = *total;
    out.push_back(std::move(z));
    pos += entry_len;
  }
  return out;
}

}  // namespace qdqbert::io
