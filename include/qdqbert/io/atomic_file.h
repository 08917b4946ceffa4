#pragma once
/// \file
/// AtomicFile — write a file so that readers see either the old content or the complete new one:
/// data goes to a temporary file in the same directory, which commit() fsyncs and renames over the
/// target. Destroyed without commit(), the temporary file is removed. Torch-free; throws qdqbert::Error.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

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
  /// Flushes, fsyncs and closes the temporary file (every step that can fail short of the rename);
  /// called by commit() when not called before.
  void prepare();
  /// prepare(), then renames the temporary file over the target.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool prepared_ = false, committed_ = false;
};

/// Several files written all or none (for example a checkpoint's model.safetensors, config.json and
/// tokenizer files, or squad-postprocess's predictions and n-best files): each is staged as an
/// AtomicFile; commit() prepares every one (fsync) and checks that no target is a directory before the
/// first rename, so a failure while writing or flushing any of them leaves every target untouched.
/// Destroyed without commit(), the staged files are removed.
class AtomicFileGroup {
 public:
  /// Stages `path` (refused when the group already has it). The reference stays valid until commit().
  AtomicFile& add(const std::string& path);
  void commit();

 private:
  std::vector<std::unique_ptr<AtomicFile>> files_;
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
