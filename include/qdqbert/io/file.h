#pragma once
/// \file
/// Whole-file reads, read-only mappings and atomic writes, torch-free (the core target). Every reader of
/// a user-supplied file goes through read_file or MappedFile, so they all refuse the same things the
/// same way: a missing file, a directory, and special files (a FIFO or a device would block or never
/// end), each without blocking.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "qdqbert/io/atomic_file.h"

namespace qdqbert::io {

/// The bytes of `path`. Errors (qdqbert::Error) name `what` and the path: a missing file, a directory
/// or special file (a FIFO would block forever), or a read failure.
std::string read_file(const std::string& path, const std::string& what);

/// Opens `path` read-only and returns its descriptor (the caller closes it). The open never blocks: it
/// is made with O_NONBLOCK, and anything that is not a regular file is refused before a byte is read.
int open_regular_file(const std::string& path, const std::string& what);

/// A whole regular file mapped privately (reads never copy; in-place writes through data() are
/// copy-on-write and never reach the file). Shares ownership of the mapping, so views can keep it alive.
class MappedFile {
 public:
  /// Errors as read_file's. An empty file maps to data() == nullptr, size() == 0.
  MappedFile(const std::string& path, const std::string& what);
  const std::string& path() const { return path_; }
  const uint8_t* data() const { return static_cast<const uint8_t*>(mapping_.get()); }
  uint64_t size() const { return size_; }
  /// The mapping's owner, for aliases that must keep it alive.
  const std::shared_ptr<void>& mapping() const { return mapping_; }
  /// The open descriptor of the same file (while this object or a copy lives), for readers that copy
  /// with pread instead of touching the mapping: pages read that way do not stay in the process's RSS.
  int fd() const { return *fd_; }

 private:
  std::string path_;
  std::shared_ptr<int> fd_;  // closed with the last copy
  std::shared_ptr<void> mapping_;
  uint64_t size_ = 0;
};

/// a + b, or nullopt when the sum does not fit in 64 bits. For sizes and offsets read from files.
inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}
/// a * b, or nullopt on 64-bit overflow.
inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

}  // namespace qdqbert::io
