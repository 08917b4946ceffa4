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

/// A folder that appears complete or not at all: its files are written into a hidden sibling folder
/// (".NAME.tmp-PID"), which commit() renames into place. An existing folder is refused at construction,
/// unless `replace` (then it is swapped out at commit and removed). Destroyed without commit(), the
/// temporary folder is removed; a killed process leaves only that hidden folder, never a half-written NAME,
/// and the next StagedDirectory for NAME removes such folders of processes that no longer exist.
class StagedDirectory {
 public:
  StagedDirectory(std::string path, bool replace);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  /// Where to write the files now.
  const std::string& path() const { return tmp_; }
  const std::string& final_path() const { return path_; }
  void commit();

 private:
  std::string path_, tmp_;
  bool replace_ = false, committed_ = false;
};

/// Writes `bytes` to `path` atomically (AtomicFile + commit): readers see the old file or the whole new one.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace qdqbert::io
