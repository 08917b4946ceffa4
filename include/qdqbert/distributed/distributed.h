#pragma once
/// \file
/// Data-parallel processes on PyTorch's own distributed engine, c10d: the C++ side of what
/// `torch.distributed.init_process_group(init_method="env://")` gives a Python script launched by torchrun.
///
/// A run is N copies of the same program. Each reads the variables torchrun sets (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR, MASTER_PORT); rank 0 hosts a c10d::TCPStore at MASTER_ADDR:MASTER_PORT, every
/// rank joins it, and the ranks connect a c10d::ProcessGroupGloo (CPU tensors) or, in a LibTorch built with
/// NCCL, a c10d::ProcessGroupNCCL (CUDA tensors). qdqbert never moves bytes itself: every collective here is
/// a c10d call. When WORLD_SIZE is unset or 1, init() joins nothing and every function in this layer is a
/// no-op that returns its input, so single-process results stay bit for bit what they were.
///
/// Failures never hang: a peer that exits closes its connections and the others' next collective fails at
/// once; a peer that stops answering makes it fail after the timeout (InitOptions::timeout, default 300 s,
/// or QDQBERT_DIST_TIMEOUT seconds). Either way the error (a c10::Error) names this rank, the operation and
/// the timeout. Errors in the environment name the variable and its value.
///
/// The rest of the layer: gradient_reducer.h (bucketed gradient averaging, overlapped with backward) and
/// sharding.h (the sharded sampler, batch shards, gathering sharded results).

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace qdqbert::calib {
class CalibrationSync;
}  // namespace qdqbert::calib

namespace qdqbert::distributed {

/// The launch environment (torchrun's variables), as read by read_env().
struct LaunchEnv {
  int64_t rank = 0;         ///< RANK: 0 .. world_size - 1
  int64_t world_size = 1;   ///< WORLD_SIZE: number of processes (unset = 1)
  int64_t local_rank = 0;   ///< LOCAL_RANK: index on this machine (default: RANK); picks the GPU under NCCL
  std::string master_addr;  ///< MASTER_ADDR: rank 0's host name or address
  int64_t master_port = 0;  ///< MASTER_PORT: the TCPStore's port on rank 0's machine
};

/// Reads and checks the environment. WORLD_SIZE unset (or empty) or 1 is a single process. Otherwise
/// RANK, MASTER_ADDR and MASTER_PORT are required and LOCAL_RANK is optional. Errors (c10::Error) name the
/// variable and its value: "distributed: RANK=2 is not below WORLD_SIZE=2", "MASTER_PORT='http' is not a
/// whole number", "WORLD_SIZE=2 needs MASTER_ADDR (rank 0's host name or address)".
LaunchEnv read_env();

struct InitOptions {
  /// "gloo" (CPU tensors) or "nccl" (CUDA tensors; only in a LibTorch built with NCCL, else an error).
  std::string backend = "gloo";
  /// How long joining the group and any one collective may wait for the other ranks; 0 = the
  /// QDQBERT_DIST_TIMEOUT environment variable (seconds) if set, else 300 s.
  std::chrono::seconds timeout{0};
};

/// True when this LibTorch has c10d's ProcessGroupNCCL and qdqbert was built with it (compile time).
bool nccl_available();

/// Joins the process group the environment describes (torch.distributed.init_process_group with
/// init_method="env://"): rank 0 hosts the TCPStore, every rank checks in (a RANK used twice, ranks that
/// disagree on WORLD_SIZE, or ranks missing after the timeout are errors naming them), then the backend's
/// process group connects. A no-op returning the environment when WORLD_SIZE is unset or 1. Calling it again
/// returns the first result. The backend is checked even for one process ("nccl" without NCCL is an error).
/// Errors: MASTER_PORT already in use on rank 0, MASTER_ADDR:MASTER_PORT unreachable within the timeout.
const LaunchEnv& init(const InitOptions& options = {});

/// Leaves the process group (no barrier, like torch.distributed.destroy_process_group). After it,
/// rank() is 0 and world_size() 1 again. A no-op for one process.
void shutdown();

/// True while a group of more than one process is joined.
bool is_initialized();
int64_t rank();                  ///< 0 for one process
int64_t world_size();            ///< 1 for one process
int64_t local_rank();            ///< LOCAL_RANK (0 for one process)
bool is_main();                  ///< rank() == 0: the process that prints progress and writes files
std::string backend_name();      ///< "gloo", "nccl", or "none" for one process
std::chrono::seconds timeout();  ///< the collectives' timeout
/// The GPU of this rank: LOCAL_RANK modulo the number of visible GPUs (0 for one process or without GPUs).
/// NCCL itself refuses two ranks on one GPU.
int64_t cuda_device_index();

/// On every rank but 0, sends stdout to /dev/null, so that only rank 0 prints results and progress while
/// errors (stderr) still come from every rank. A no-op on rank 0 and for one process.
void mute_stdout_on_other_ranks();

/// The prefix of this rank's error messages: "" for one process, else "rank R of W: ".
std::string error_prefix();

/// The seed for this rank's own random draws (dropout masks): `seed` itself on rank 0 (so rank 0 and a single
/// process draw alike), a splitmix64 mix of (seed, rank) on other ranks, so each rank draws its own masks as
/// each DistributedDataParallel replica does.
uint64_t rank_seed(uint64_t seed);

enum class ReduceOp { kSum, kMax, kMin };

/// In place over every rank (torch.distributed.all_reduce). CPU tensors with Gloo; under NCCL a CPU tensor
/// is copied to this rank's GPU and back. No-op for one process.
void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::kSum);
/// The mean of a number over the ranks (`value` for one process).
double mean_over_ranks(double value);
/// Rank `root`'s tensor into every rank's (same shape and dtype). No-op for one process.
void broadcast(at::Tensor& tensor, int64_t root = 0);
/// Every rank's tensor, in rank order (torch.distributed.all_gather), on every rank. The tensors may differ in
/// their first dimension; dtype and the other dimensions must agree (else an error naming both ranks' shapes).
/// One process: {tensor}.
std::vector<at::Tensor> all_gather(const at::Tensor& tensor);
/// Blocks until every rank arrives. No-op for one process.
void barrier();

/// Copies rank `root`'s parameters and buffers into every rank's `module` (what DistributedDataParallel does at
/// construction), in flat buckets per dtype. The modules must have the same tensors (names, shapes, dtypes):
/// checked first, a difference is an error naming the first differing tensor. No-op for one process.
void broadcast_parameters(torch::nn::Module& module, int64_t root = 0);

/// The collectives calib::Calibrator uses to merge what each rank collected (see calibrator.h): nullptr for
/// one process. workflow::calibrate attaches it by itself.
std::shared_ptr<calib::CalibrationSync> calibration_sync();

}  // namespace qdqbert::distributed
