#include "qdqbert/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "qdqbert/error.h"

namespace qdqbert::io {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp.XXXXXX";
  std::vector<char> buf(tmp_.begin(), tmp_.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0) fail("cannot write '", path_, "': ", std::strerror(errno));
  tmp_ = buf.data();
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  if (fd_ < 0) fail("AtomicFile: '", path_, "' is already closed for writing");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '", path_, "': ", std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::prepare() {
  if (committed_) fail("AtomicFile: '", path_, "' was already committed");
  if (prepared_) return;
  if (::fsync(fd_) != 0) fail("cannot write '", path_, "': fsync failed: ", std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("cannot write '", path_, "': close failed: ", std::strerror(errno));
  prepared_ = true;
}

void AtomicFile::commit() {
  prepare();
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    fail("cannot write '", path_, "': rename failed: ", std::strerror(errno));
  }
  committed_ = true;
}

AtomicFile& AtomicFileGroup::add(const std::string& path) {
  for (const auto& f : files_) {
    if (f->path() == path) fail("AtomicFileGroup: '", path, "' is staged twice");
  }
  files_.push_back(std::make_unique<AtomicFile>(path));
  return *files_.back();
}

void AtomicFileGroup::commit() {
  for (auto& f : files_) f->prepare();
  for (const auto& f : files_) {
    struct stat st {};
    if (::stat(f->path().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      fail("cannot write '", f->path(), "': it is a directory (nothing was written)");
    }
  }
  for (auto& f : files_) f->commit();
  files_.clear();
}

StagedDirectory::StagedDirectory(std::string path, bool replace) : replace_(replace) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(path), ec).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  path_ = p.string();
  if (fs::exists(p, ec) && !replace) {
    const bool empty_dir = fs::is_directory(p, ec) && fs::is_empty(p, ec);
    if (!empty_dir) fail("output '", path_, "' already exists (choose another folder, or let it be replaced)");
  }
  if (fs::exists(p, ec) && !fs::is_directory(p, ec)) fail("output '", path_, "' exists and is not a folder");
  fs::create_directories(p.parent_path(), ec);
  if (ec) fail("cannot create the folder '", p.parent_path().string(), "': ", ec.message());
  // Staging folders of runs that were killed (their process is gone) are removed first.
  const std::string prefix = "." + p.filename().string() + ".tmp-";
  for (const auto& e : fs::directory_iterator(p.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
  tmp_ = (p.parent_path() / (prefix + std::to_string(::getpid()))).string();
  fs::remove_all(tmp_, ec);
  if (!fs::create_directory(tmp_, ec) || ec) {
    fail("cannot write to '", p.parent_path().string(), "': ", ec ? ec.message() : std::string("create failed"));
  }
}

StagedDirectory::~StagedDirectory() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
  }
}

void StagedDirectory::commit() {
  namespace fs = std::filesystem;
  if (committed_) fail("StagedDirectory: '", path_, "' was already committed");
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    const std::string old = tmp_ + ".old";
    fs::remove_all(old, ec);
    fs::rename(path_, old, ec);
    if (ec) fail("cannot replace '", path_, "': ", ec.message());
    fs::rename(tmp_, path_, ec);
    if (ec) {
      std::error_code back;
      fs::rename(old, path_, back);
      fail("cannot write '", path_, "': ", ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp_, path_, ec);
    if (ec) fail("cannot write '", path_, "': ", ec.message());
  }
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile out(path);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

}  // namespace qdqbert::io
