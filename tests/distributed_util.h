#pragma once
// Helpers of the data-parallel tests (distributed_test.cpp, distributed_failure_test.cpp): ranks are separate
// processes of tests/distributed_worker.cpp (or squad_qa under tools/launch.sh) started with torchrun's
// variables on 127.0.0.1, waited for with a deadline (a hang is a failure, never a stuck test).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_util.h"
#include "qdqbert/distributed/gradient_reducer.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/io/safetensors.h"
#include "test_config.h"
#include "test_util.h"

namespace qdqbert::testing::ranks {

namespace qt = qdqbert::testing;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline const char* const kLaunchVars[] = {"RANK",
                                          "WORLD_SIZE",
                                          "LOCAL_RANK",
                                          "LOCAL_WORLD_SIZE",
                                          "MASTER_ADDR",
                                          "MASTER_PORT",
                                          "QDQBERT_DIST_TIMEOUT",
                                          "TORCHELASTIC_USE_AGENT_STORE",
                                          "TORCHELASTIC_RESTART_COUNT"};

inline std::string worker() { return std::string(QDQBERT_BINARY_DIR) + "/tests/qdqbert_distributed_worker"; }
inline std::string launcher() { return std::string(QDQBERT_SOURCE_DIR) + "/tools/launch.sh"; }

/// A TCP port free right now on 127.0.0.1 (the kernel's choice for port 0).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

using Env = std::map<std::string, std::optional<std::string>>;  // nullopt: unset

struct Proc {
  pid_t pid = -1;
  std::string log;
};

/// Starts `argv` with the launch variables unset, then `env` applied; stdout and stderr go to `log`.
inline Proc spawn(const std::vector<std::string>& argv, const Env& env, const std::string& log) {
  Proc p;
  p.log = log;
  p.pid = ::fork();
  if (p.pid == 0) {
    for (const char* v : kLaunchVars) ::unsetenv(v);
    for (const auto& [k, v] : env) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
    }
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    if (f == nullptr || ::dup2(::fileno(stdout), 2) < 0) ::_exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return p;
}

struct Ended {
  bool exited = false;  ///< false: still running at the deadline (then killed)
  int rc = -1, signal = 0;
  double seconds = 0;
  std::string out;
};

inline Ended wait_for(const Proc& p, double timeout_s, Clock::time_point start = Clock::now()) {
  Ended e;
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(p.pid, &status, WNOHANG);
    e.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (r == p.pid) {
      e.exited = true;
      if (WIFEXITED(status)) e.rc = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
      break;
    }
    if (e.seconds > timeout_s) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  e.out = qt::slurp(p.log);
  return e;
}

inline Env rank_env(int rank, int world, int port, int timeout_s = 60) {
  return {{"RANK", std::to_string(rank)},        {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(rank)},  {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)}, {"QDQBERT_DIST_TIMEOUT", std::to_string(timeout_s)}};
}

/// Runs `args` of the worker as `world` ranks (world 0: one process without the launch variables).
inline std::vector<Ended> run_worker(int world, const std::vector<std::string>& args, const fs::path& dir,
                                     double timeout_s = 120) {
  std::vector<std::string> argv{worker()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<Proc> procs;
  const int port = free_port();
  for (int r = 0; r < std::max(world, 1); ++r) {
    const Env env = world == 0 ? Env{} : rank_env(r, world, port);
    procs.push_back(spawn(argv, env, (dir / ("log" + std::to_string(world) + "_" + std::to_string(r))).string()));
  }
  std::vector<Ended> out;
  const auto start = Clock::now();
  for (const auto& p : procs) out.push_back(wait_for(p, timeout_s, start));
  return out;
}

inline std::string describe(const std::vector<Ended>& runs) {
  std::string s;
  for (size_t r = 0; r < runs.size(); ++r) {
    s += "--- rank " + std::to_string(r) + " (rc " + std::to_string(runs[r].rc) + ", signal " +
         std::to_string(runs[r].signal) + ")\n" + runs[r].out;
  }
  return s;
}

inline void expect_all_ok(const std::vector<Ended>& runs) {
  for (const auto& e : runs) ASSERT_TRUE(e.exited && e.rc == 0) << describe(runs);
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

inline double max_abs_diff(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                           std::string* worst) {
  double m = 0;
  for (const auto& [k, t] : a) {
    const at::Tensor d = (t.to(at::kDouble) - b.at(k).to(at::kDouble)).abs();
    const double v = d.numel() ? d.max().item<double>() : 0.0;
    if (v > m) {
      m = v;
      *worst = k;
    }
  }
  return m;
}

/// Saves and restores the launch variables of this (test) process.
class EnvGuard {
 public:
  EnvGuard() {
    for (const char* v : kLaunchVars) {
      if (const char* x = std::getenv(v)) saved_[v] = x;
      ::unsetenv(v);
    }
  }
  ~EnvGuard() {
    for (const char* v : kLaunchVars) ::unsetenv(v);
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
  }
  void set(const Env& env) {
    for (const char* v : kLaunchVars) ::unsetenv(v);
    for (const auto& [k, v] : env) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
    }
  }

 private:
  std::map<std::string, std::string> saved_;
};

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(worker())) << worker() << " is not built";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info->name();
    for (char& c : name) c = c == '/' ? '_' : c;
    dir_ = qt::scratch_dir("distributed", name);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

/// Waits until `p`'s log contains `text` (false after `timeout_s`).
inline bool wait_for_output(const Proc& p, const std::string& text, double timeout_s) {
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() < timeout_s) {
    if (contains(qt::slurp(p.log), text)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

inline const std::vector<std::string> kLongLoop{"loop", "--steps", "1000000", "--sleep-ms", "5"};

inline std::vector<std::string> worker_argv(const std::vector<std::string>& args) {
  std::vector<std::string> a{worker()};
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

}  // namespace qdqbert::testing::ranks
