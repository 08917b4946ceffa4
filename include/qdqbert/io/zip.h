#pragma once
/// \file
/// The central directory of a zip archive (what torch.save writes: pytorch_model.bin), listed and
/// validated without torch (the core target). The .bin reader checks every record's size against the
/// file before anything is inflated or allocated, and a fuzzer can reach this parser alone.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qdqbert::io {

/// One record of a zip archive.
struct ZipEntry {
  std::string name;
  uint16_t method = 0;           ///< 0 = stored (what torch.save writes), 8 = deflated
  uint64_t compressed_size = 0;  ///< bytes in the file
  uint64_t size = 0;             ///< bytes once extracted
  uint64_t data_offset = 0;      ///< where the record's bytes start in the file (after its local header)
};

/// Lists the records of the zip archive held in `data` (`size` bytes; `path` names it in errors),
/// ZIP64 included. Every offset and size is checked against the file with overflow-checked arithmetic.
/// Refuses (qdqbert::Error naming the path and record): no end-of-central-directory record, a
/// directory or local header outside the file or with a wrong signature, a record whose bytes run past
/// the end, an encrypted record, a method other than stored or deflated, a stored record whose two
/// sizes differ, duplicate names, and records that together extract to more bytes than the file holds
/// (a small deflated file could otherwise claim gigabytes; torch.save stores records uncompressed).
std::vector<ZipEntry> list_zip(const uint8_t* data, uint64_t size, const std::string& path);

/// Copies the `n` bytes at `offset` of an archive into `out` (list_zip asks only for ranges it has checked
/// to lie inside the file); errors are the reader's own.
using ZipReadAt = std::function<void(uint64_t offset, uint64_t n, uint8_t* out)>;

/// list_zip with the same checks and errors, reading through `read_at` only what it parses: the end of the
/// file (up to 64 KiB, for the end-of-central-directory record), the ZIP64 records, the central directory
/// and each record's 30-byte local header, never a record's bytes. With pread nothing of the file is
/// mapped, so none of it counts in the process's RSS (the .bin reader streams the records afterwards).
std::vector<ZipEntry> list_zip(const ZipReadAt& read_at, uint64_t size, const std::string& path);

}  // namespace qdqbert::io
