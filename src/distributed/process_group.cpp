// The process group: torchrun's environment, joining (TCPStore rendezvous + the backend's process group),
// the plain collectives and the small helpers of distributed.h.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "group.h"
#include "qdqbert/build_config.h"
#include "qdqbert/distributed/distributed.h"

namespace qdqbert::distributed {
namespace detail {
namespace {

// Leaked on purpose: destroying a Gloo process group joins its threads, which can wait for a peer until the
// timeout; a process that exits after an error must not. shutdown() destroys it on the normal path.
Group* g_group = nullptr;
std::optional<LaunchEnv> g_env;  // what init() returned (also for one process)

std::optional<std::string> env_var(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int64_t parse_whole(const char* name, const std::string& v, int64_t lo, int64_t hi) {
  bool digits = !v.empty() && v.size() <= 18;
  for (const char c : v) digits = digits && c >= '0' && c <= '9';
  TORCH_CHECK_VALUE(digits, "distributed: ", name, "='", v, "' is not a whole number");
  const int64_t x = std::stoll(v);
  TORCH_CHECK_VALUE(x >= lo && x <= hi, "distributed: ", name, "=", v, " is out of range (", lo, " to ", hi, ")");
  return x;
}

std::string first_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string s = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string where(const LaunchEnv& e) {
  return "MASTER_ADDR=" + e.master_addr + " MASTER_PORT=" + std::to_string(e.master_port);
}

std::chrono::seconds resolve_timeout(std::chrono::seconds given) {
  if (given.count() > 0) return given;
  if (const auto v = env_var("QDQBERT_DIST_TIMEOUT")) {
    return std::chrono::seconds(parse_whole("QDQBERT_DIST_TIMEOUT", *v, 1, int64_t{7} * 24 * 3600));
  }
  return std::chrono::seconds(300);
}

// A store that outlives the workers (torchrun's agent) sees every restart: this attempt's keys only.
std::string store_prefix() { return "qdqbert/" + env_var("TORCHELASTIC_RESTART_COUNT").value_or("0") + "/"; }

// torchrun's agent already hosts a TCPStore at MASTER_ADDR:MASTER_PORT and says so; then rank 0 joins it too.
bool agent_hosts_store() { return env_var("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True"; }

c10::intrusive_ptr<c10d::Store> connect_store(const LaunchEnv& e, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(e.master_port);
  so.isServer = e.rank == 0 && !agent_hosts_store();
  so.numWorkers = static_cast<std::size_t>(e.world_size);
  so.waitWorkers = false;  // the rendezvous below waits, with errors that name the missing ranks
  so.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
  } catch (const std::exception& ex) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
    if (so.isServer) {
      TORCH_CHECK(false, "distributed: rank 0 cannot host the rendezvous at ", where(e), " (is MASTER_PORT ",
                  e.master_port, " already in use?): ", first_line(ex));
    }
    TORCH_CHECK(false, "distributed: rank ", e.rank, " cannot reach the master at ", where(e), " within ", secs,
                " s (is rank 0 running there, and MASTER_ADDR/MASTER_PORT right?): ", first_line(ex));
  }
}

// Every rank checks in: its RANK once (a second process with the same RANK is an error), its WORLD_SIZE;
// then waits for all ranks and compares the world sizes.
void rendezvous(c10d::Store& store, const LaunchEnv& e, std::chrono::milliseconds timeout) {
  const std::string r = std::to_string(e.rank), ws = std::to_string(e.world_size);
  const std::string prefix = store_prefix();
  try {
    const int64_t uses = store.add(prefix + "rank/" + r, 1);
    TORCH_CHECK_VALUE(uses == 1, "distributed: RANK=", r, " is used by more than one process (WORLD_SIZE=", ws, ", ",
                      where(e), "); each process needs its own RANK");
    store.set(prefix + "world_size/" + r, std::vector<uint8_t>(ws.begin(), ws.end()));
  } catch (const c10::ValueError&) {
    throw;
  } catch (const std::exception& ex) {
    TORCH_CHECK(false, "distributed: rank ", r, " lost the rendezvous at ", where(e), ": ", first_line(ex));
  }
  std::vector<std::string> keys;
  for (int64_t k = 0; k < e.world_size; ++k) keys.push_back(prefix + "rank/" + std::to_string(k));
  try {
    store.wait(keys, timeout);
  } catch (const std::exception& ex) {
    std::string missing, joined;
    try {
      for (int64_t k = 0; k < e.world_size; ++k) {
        std::string& list = store.check({keys[static_cast<size_t>(k)]}) ? joined : missing;
        list += (list.empty() ? "" : ", ") + std::to_string(k);
      }
    } catch (const std::exception&) {
      missing = "unknown (the rendezvous at " + where(e) + " is gone)";
    }
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
    TORCH_CHECK(false, "distributed: WORLD_SIZE=", ws, " but rank(s) ", missing, " did not join within ", secs,
                " s (joined: ", joined.empty() ? "none" : joined,
                "); is WORLD_SIZE the number of processes launched? (", first_line(ex), ")");
  }
  for (int64_t k = 0; k < e.world_size; ++k) {
    const auto v = store.get(prefix + "world_size/" + std::to_string(k));
    const std::string theirs(v.begin(), v.end());
    TORCH_CHECK_VALUE(theirs == ws, "distributed: the processes disagree on WORLD_SIZE: rank ", k,
                      " has WORLD_SIZE=", theirs, ", rank ", r, " has WORLD_SIZE=", ws);
  }
}

}  // namespace

Group* group() { return g_group; }

void fail_collective(const char* what, const std::exception& cause) {
  const Group* g = g_group;
  const auto secs = g ? std::chrono::duration_cast<std::chrono::seconds>(g->timeout).count() : 0;
  TORCH_CHECK(false, "distributed: rank ", g ? g->env.rank : 0, " of ", g ? g->env.world_size : 1, ": ", what,
              " failed (another rank exited, or did not answer within the ", secs, " s timeout): ", first_line(cause));
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    fail_collective(what, e);
  }
}

CollectiveTensor::CollectiveTensor(const at::Tensor& t) : original(t), operand(t) {
  const Group* g = g_group;
  const at::Device dev = g && g->cuda_tensors
                             ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device_index()))
                             : at::Device(at::kCPU);
  if (!t.is_contiguous() || t.device() != dev) operand = t.to(dev).contiguous();
}

void CollectiveTensor::copy_back() {
  if (!operand.is_same(original)) original.copy_(operand);
}

}  // namespace detail

using detail::g_env;
using detail::g_group;

LaunchEnv read_env() {
  using detail::env_var;
  using detail::parse_whole;
  LaunchEnv e;
  const auto ws = env_var("WORLD_SIZE");
  const auto rank = env_var("RANK");
  if (!ws) {
    TORCH_CHECK_VALUE(!rank || *rank == "0", "distributed: RANK=", *rank,
                      " is set but WORLD_SIZE is not (set WORLD_SIZE to the number of processes)");
    return e;
  }
  constexpr int64_t kMaxRanks = int64_t{1} << 20;
  e.world_size = parse_whole("WORLD_SIZE", *ws, 1, kMaxRanks);
  if (e.world_size == 1) {
    TORCH_CHECK_VALUE(!rank || *rank == "0", "distributed: RANK=", *rank, " is not below WORLD_SIZE=1");
    return e;
  }
  TORCH_CHECK_VALUE(rank.has_value(), "distributed: WORLD_SIZE=", *ws,
                    " but RANK is not set (launch with tools/launch.sh or torchrun, or set RANK to 0..",
                    e.world_size - 1, ")");
  e.rank = parse_whole("RANK", *rank, 0, kMaxRanks);
  TORCH_CHECK_VALUE(e.rank < e.world_size, "distributed: RANK=", *rank, " is not below WORLD_SIZE=", *ws);
  const auto local = env_var("LOCAL_RANK");
  e.local_rank = local ? parse_whole("LOCAL_RANK", *local, 0, kMaxRanks) : e.rank;
  const auto addr = env_var("MASTER_ADDR");
  TORCH_CHECK_VALUE(addr.has_value(), "distributed: WORLD_SIZE=", *ws,
                    " needs MASTER_ADDR (rank 0's host name or address)");
  e.master_addr = *addr;
  const auto port = env_var("MASTER_PORT");
  TORCH_CHECK_VALUE(port.has_value(), "distributed: WORLD_SIZE=", *ws,
                    " needs MASTER_PORT (a free TCP port on rank 0's machine)");
  e.master_port = parse_whole("MASTER_PORT", *port, 1, 65535);
  return e;
}

bool nccl_available() {
#if QDQBERT_NCCL
  return true;
#else
  return false;
#endif
}

const LaunchEnv& init(const InitOptions& o) {
  if (g_env) return *g_env;
  TORCH_CHECK_VALUE(o.backend == "gloo" || o.backend == "nccl", "distributed: unknown backend '", o.backend,
                    "' (gloo for CPU tensors, nccl for CUDA tensors)");
  TORCH_CHECK_VALUE(o.backend != "nccl" || nccl_available(), "distributed: backend nccl is not available: this ",
                    "qdqbert was built against a LibTorch without NCCL (Debian's libtorch is CPU-only); use ",
                    "--dist-backend gloo, or build against a CUDA LibTorch");
  const std::chrono::milliseconds timeout = detail::resolve_timeout(o.timeout);
  LaunchEnv e = read_env();
  if (e.world_size > 1) {
    auto g = std::make_unique<detail::Group>();
    g->env = e;
    g->backend = o.backend;
    g->timeout = timeout;
    g->store = detail::connect_store(e, timeout);
    detail::rendezvous(*g->store, e, timeout);
    try {
      const auto pg_store = c10::make_intrusive<c10d::PrefixStore>(detail::store_prefix() + "pg/", g->store);
      g->pg = o.backend == "nccl" ? detail::make_nccl_group(pg_store, e, timeout)
                                  : detail::make_gloo_group(pg_store, e, timeout);
    } catch (const std::exception& ex) {
      TORCH_CHECK(false, "distributed: rank ", e.rank, " could not connect the ", o.backend, " process group (",
                  detail::where(e), "): ", detail::first_line(ex));
    }
    g->cuda_tensors = o.backend == "nccl";
    g_group = g.release();
  }
  g_env = e;
  return *g_env;
}

void shutdown() {
  delete g_group;
  g_group = nullptr;
  g_env.reset();
}

bool is_initialized() { return g_group != nullptr; }
int64_t rank() { return g_group ? g_group->env.rank : 0; }
int64_t world_size() { return g_group ? g_group->env.world_size : 1; }
int64_t local_rank() { return g_group ? g_group->env.local_rank : 0; }
bool is_main() { return rank() == 0; }
std::string backend_name() { return g_group ? g_group->backend : "none"; }

std::chrono::seconds timeout() {
  return g_group ? std::chrono::duration_cast<std::chrono::seconds>(g_group->timeout)
                 : detail::resolve_timeout(std::chrono::seconds(0));
}

int64_t cuda_device_index() {
  const auto gpus = static_cast<int64_t>(torch::cuda::device_count());
  return gpus > 0 ? local_rank() % gpus : 0;
}

void mute_stdout_on_other_ranks() {
  if (is_main()) return;
  std::fflush(stdout);
  TORCH_CHECK(std::freopen("/dev/null", "w", stdout) != nullptr, "distributed: rank ", rank(),
              ": cannot send stdout to /dev/null");
}

std::string error_prefix() {
  if (!g_group) return "";
  return "rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + ": ";
}

uint64_t rank_seed(uint64_t seed) {
  const int64_t r = rank();
  if (r == 0) return seed;
  uint64_t z = seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(r));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void all_reduce(at::Tensor& tensor, ReduceOp op) {
  detail::Group* g = g_group;
  if (g == nullptr) return;
  TORCH_CHECK(tensor.defined(), "distributed: all_reduce of an undefined tensor");
  detail::CollectiveTensor ct(tensor);
  std::vector<at::Tensor> v{ct.operand};
  c10d::AllreduceOptions ao;
  ao.reduceOp = op == ReduceOp::kSum   ? c10d::ReduceOp::SUM
                : op == ReduceOp::kMax ? c10d::ReduceOp::MAX
                                       : c10d::ReduceOp::MIN;
  detail::wait(detail::start("all_reduce", [&] { return g->pg->allreduce(v, ao); }), "all_reduce");
  ct.copy_back();
}

double mean_over_ranks(double value) {
  if (g_group == nullptr) return value;
  at::Tensor t = at::tensor({value}, at::kDouble);
  all_reduce(t, ReduceOp::kSum);
  return t.data_ptr<double>()[0] / static_cast<double>(world_size());
}

void broadcast(at::Tensor& tensor, int64_t root) {
  detail::Group* g = g_group;
  if (g == nullptr) return;
  TORCH_CHECK(tensor.defined(), "distributed: broadcast of an undefined tensor");
  TORCH_CHECK_VALUE(root >= 0 && root < world_size(), "distributed: broadcast root ", root, " is not a rank of ",
                    world_size());
  detail::CollectiveTensor ct(tensor);
  std::vector<at::Tensor> v{ct.operand};
  c10d::BroadcastOptions bo;
  bo.rootRank = root;
  detail::wait(detail::start("broadcast", [&] { return g->pg->broadcast(v, bo); }), "broadcast");
  ct.copy_back();
}

void barrier() {
  detail::Group* g = g_group;
  if (g == nullptr) return;
  detail::wait(detail::start("barrier", [&] { return g->pg->barrier(c10d::BarrierOptions()); }), "barrier");
}

}  // namespace qdqbert::distributed
