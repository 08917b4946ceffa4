// The c10d process groups qdqbert uses: ProcessGroupGloo (CPU tensors; Gloo's headers come from
// libgloo-dev) and, where the LibTorch was built with it, ProcessGroupNCCL (CUDA tensors).
#include "qdqbert/build_config.h"

// c10d guards each backend's header with its USE_C10D_* macro (normally set by PyTorch's own build).
#if QDQBERT_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if QDQBERT_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>

#include "group.h"

namespace qdqbert::distributed::detail {
#if QDQBERT_GLOO
namespace {

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0; }

// This machine's address on the route to the master: connect() a UDP socket (which sends nothing) and
// read its local address back. Binding Gloo there reaches the other machines even where the host name
// resolves to a loopback address (Debian's 127.0.1.1), the classic torch.distributed pitfall.
std::optional<std::string> local_address_towards(const LaunchEnv& e) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(e.master_port);
  if (getaddrinfo(e.master_addr.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return std::nullopt;
  std::optional<std::string> out;
  const int fd = ::socket(res->ai_family, SOCK_DGRAM, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    char text[INET6_ADDRSTRLEN] = {0};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      const void* a = local.ss_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
      if (inet_ntop(local.ss_family, a, text, sizeof(text)) != nullptr) out = std::string(text);
    }
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(res);
  return out;
}

// GLOO_SOCKET_IFNAME (as in PyTorch) wins; a loopback master means one machine; otherwise the address on the
// route to the master, and c10d's default (this host name's address) when that cannot be found.
std::shared_ptr<::gloo::transport::Device> gloo_device(const LaunchEnv& e) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (is_loopback(e.master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const auto local = local_address_towards(e)) return c10d::ProcessGroupGloo::createDeviceForHostname(*local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace
#endif

c10::intrusive_ptr<Collectives> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                                std::chrono::milliseconds timeout) {
#if QDQBERT_GLOO
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(gloo_device(env));
  // Two threads run collectives (c10d's default), so a bucket's all-reduce proceeds during backward.
  options->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(env.rank),
                                                     static_cast<int>(env.world_size), options);
#else
  (void)store;
  (void)timeout;
  TORCH_CHECK(false, "distributed: rank ", env.rank, ": backend gloo is not available in this build (Gloo's headers ",
              "were not found when qdqbert was configured; Debian: libgloo-dev)");
#endif
}

c10::intrusive_ptr<Collectives> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                                std::chrono::milliseconds timeout) {
#if QDQBERT_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(env.rank),
                                                     static_cast<int>(env.world_size), options);
#else
  (void)store;
  (void)timeout;
  TORCH_CHECK(false, "distributed: rank ", env.rank,
              ": backend nccl is not available in this build (a LibTorch "
              "without NCCL); use gloo");
#endif
}

}  // namespace qdqbert::distributed::detail
