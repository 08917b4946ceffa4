#include "qdqbert/io/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "qdqbert/error.h"

namespace qdqbert::io {
namespace {

// Closes a descriptor on every path out of a scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

uint64_t regular_file_size(int fd, const std::string& path, const std::string& what) {
  struct stat st {};
  QDQBERT_CHECK(::fstat(fd, &st) == 0, what, ": cannot stat '", path, "': ", std::strerror(errno));
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

int open_regular_file(const std::string& path, const std::string& what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) fail(what, ": cannot open '", path, "' (no such file)");
    fail(what, ": cannot open '", path, "': ", std::strerror(err));
  }
  FdCloser guard{fd};
  struct stat st {};
  QDQBERT_CHECK(::fstat(fd, &st) == 0, what, ": cannot stat '", path, "': ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(what, ": '", path, "' is a directory, not a regular file");
  QDQBERT_CHECK(S_ISREG(st.st_mode), what, ": '", path, "' is not a regular file (a FIFO, socket or device)");
  const int flags = ::fcntl(fd, F_GETFL);
  QDQBERT_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0, what, ": cannot read '", path,
                "': ", std::strerror(errno));
  guard.fd = -1;
  return fd;
}

std::string read_file(const std::string& path, const std::string& what) {
  const int fd = open_regular_file(path, what);
  FdCloser guard{fd};
  std::string out;
  out.reserve(static_cast<size_t>(regular_file_size(fd, path, what)));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    QDQBERT_CHECK(n >= 0, what, ": cannot read '", path, "': ", std::strerror(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

MappedFile::MappedFile(const std::string& path, const std::string& what) : path_(path) {
  const int fd = open_regular_file(path, what);
  fd_ = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  size_ = regular_file_size(fd, path, what);
  if (size_ == 0) return;
  void* addr = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  QDQBERT_CHECK(addr != MAP_FAILED, what, ": cannot map '", path, "': ", std::strerror(errno));
  const uint64_t n = size_;
  mapping_ = std::shared_ptr<void>(addr, [n](void* p) { ::munmap(p, n); });
}

}  // namespace qdqbert::io
