#include "qdqbert/io/file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "qdqbert/error.h"

namespace qdqbert::io {

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  QDQBERT_CHECK(!ec && std::filesystem::exists(status), what, ": cannot open '", path, "' (no such file)");
  QDQBERT_CHECK(std::filesystem::is_regular_file(status), what, ": '", path, "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  QDQBERT_CHECK(in.good(), what, ": cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  QDQBERT_CHECK(!in.bad(), what, ": cannot read '", path, "'");
  return ss.str();
}

}  // namespace qdqbert::io
