#pragma once
// Internal to src/distributed: the joined process group. The c10d types stay out of the public headers.
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#include <chrono>
#include <string>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "qdqbert/distributed/distributed.h"

namespace qdqbert::distributed::detail {

// The class that declares the collectives: ProcessGroupGloo / ProcessGroupNCCL derive from c10d::ProcessGroup
// in LibTorch 1.x and from c10d::Backend in 2.x, with the same collective signatures.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

struct Group {
  LaunchEnv env;
  std::string backend;  // "gloo" or "nccl"
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> pg;
  bool cuda_tensors = false;  // NCCL: collectives take CUDA tensors on this rank's device
};

/// The joined group, or nullptr for one process.
Group* group();

/// Waits for `work`; a failure becomes one c10::Error naming this rank, `what` and the timeout.
void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);

/// Runs `start` (which starts a collective and returns its work); failures to start are reported like wait's.
template <typename F>
c10::intrusive_ptr<c10d::Work> start(const char* what, F&& start_collective);

/// The message of a failed collective: "distributed: rank R of W: WHAT failed (...): CAUSE".
[[noreturn]] void fail_collective(const char* what, const std::exception& cause);

template <typename F>
c10::intrusive_ptr<c10d::Work> start(const char* what, F&& start_collective) {
  try {
    return start_collective();
  } catch (const std::exception& e) {
    fail_collective(what, e);
  }
}

/// The tensor a collective runs on: `t` itself when the backend takes it as it is (contiguous, on the
/// backend's device), else a contiguous copy there; copy_back() writes a copy's result into `t`.
struct CollectiveTensor {
  at::Tensor original, operand;
  explicit CollectiveTensor(const at::Tensor& t);
  void copy_back();
};

/// The backend-specific process groups (backends.cpp).
c10::intrusive_ptr<Collectives> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                                std::chrono::milliseconds timeout);
c10::intrusive_ptr<Collectives> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                                std::chrono::milliseconds timeout);

}  // namespace qdqbert::distributed::detail
