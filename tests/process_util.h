#pragma once
// Test helper: runs a shell command and captures its stdout and stderr together, with how it ended
// (exit status or signal), for the tests that drive qdqbert-cli, squad_qa and the Python checkers.
#include <sys/wait.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "test_config.h"

namespace qdqbert::testing {

struct ProcessRun {
  int rc = -1;            ///< exit status; -1 when it did not exit normally
  int signal = 0;         ///< the signal that ended it, 0 if none
  std::string out;        ///< stdout and stderr together
};

/// Runs `command` through /bin/sh with stderr merged into stdout.
inline ProcessRun run_command(const std::string& command) {
  ProcessRun r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) r.out.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.rc = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

/// A fresh, empty folder in the temp directory, unique to this process ("qdqbert_<suite>_<name>_<pid>").
inline std::filesystem::path scratch_dir(const std::string& suite, const std::string& name) {
  const std::filesystem::path p = std::filesystem::temp_directory_path() /
                                  ("qdqbert_" + suite + "_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

/// The whole content of a file ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

/// The built qdqbert-cli.
inline std::string cli_binary() { return std::string(QDQBERT_BINARY_DIR) + "/tools/cli/qdqbert-cli"; }

}  // namespace qdqbert::testing
