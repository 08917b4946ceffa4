#pragma once
/// \file
/// AtomicFile — write a file so that readers see either the old content or the complete new one:
/// data goes to a temporary file in the same directory, which commit() fsyncs and renames over the
/// target. Destroyed without commit(), the temporary file is removed. Torch-free; throws qdqbert::Error.

#include <cstddef>
#include <string>

namespace qdqbert::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  /// The temporary file's descriptor (for writers that stream, e.g. protobuf); commit() still required.
  int fd() const { return fd_; }
  /// Flushes, fsyncs and renames the temporary file over the target.
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

/// Writes `bytes` to `path` atomically (AtomicFile + commit): readers see the old file or the whole new one.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace qdqbert::io
