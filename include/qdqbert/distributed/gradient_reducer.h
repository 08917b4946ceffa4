#pragma once
/// \file
/// Gradient averaging for data-parallel training (the reducer of PyTorch's DistributedDataParallel, on
/// c10d): the gradients are packed into flat buckets of at most `bucket_bytes` (parameters in reverse
/// registration order, which is roughly the order backward produces them; one dtype and device per bucket),
/// each bucket is summed over the ranks with one all-reduce and divided by the world size. With overlap on,
/// a hook on every parameter copies its gradient into its bucket as backward produces it, and a bucket's
/// all-reduce starts as soon as it is full, while backward goes on with the earlier layers. Buckets always
/// start in index order on every rank, so the ranks' collectives match whatever order the gradients arrive in.
///
/// One optimizer step:
///
///     distributed::GradientReducer reducer(model->parameters());     // once, before training
///     ...
///     optimizer.zero_grad();
///     for (micro-batches of the step) {
///       if (last micro-batch) reducer.expect_backward();   // others only accumulate (DDP's no_sync)
///       loss.backward();
///     }
///     reducer.synchronize();         // every rank now holds the same averaged gradients
///     clip_grad_norm_(...); optimizer.step();
///
/// A parameter without a gradient on some ranks gets the average (its missing gradients count as zeros); one
/// without a gradient on every rank keeps none, as in a single process (so AdamW skips it alike).
/// For one process every call is a no-op and no hook is installed.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace qdqbert::distributed {

struct GradientReducerOptions {
  /// Largest bucket (PyTorch DDP's bucket_cap_mb default: 25 MiB). A bigger parameter gets a bucket alone.
  int64_t bucket_bytes = int64_t{25} << 20;
  /// Start each bucket's all-reduce from gradient hooks during backward (false: everything in synchronize()).
  bool overlap = true;
};

/// What synchronize() did so far (for benchmarks).
struct GradientReducerStats {
  int64_t steps = 0;               ///< synchronize() calls
  int64_t all_reduces = 0;         ///< bucket all-reduces started
  int64_t bytes = 0;               ///< bytes all-reduced (per rank)
  double synchronize_seconds = 0;  ///< time spent inside synchronize() (waiting for what was not done yet)
};

class GradientReducer {
 public:
  /// `parameters`: the tensors to average (those that do not require grad are left out).
  explicit GradientReducer(const std::vector<at::Tensor>& parameters, GradientReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// The next backward() completes this optimizer step: its hooks start the buckets' all-reduces as the
  /// gradients arrive. Without it, backward only accumulates into .grad. No effect without overlap.
  void expect_backward();
  /// Starts the buckets no hook started (in order), waits for all, and writes the averaged gradients into
  /// every parameter's .grad. A collective: every rank calls it once per optimizer step.
  void synchronize();

  int64_t num_buckets() const;
  const GradientReducerStats& stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the hooks, which hold it weakly
};

/// Averages the gradients of `parameters` over the ranks now (a GradientReducer without overlap, in flat
/// buckets of `bucket_bytes`). No-op for one process.
void all_reduce_gradients(const std::vector<at::Tensor>& parameters, int64_t bucket_bytes = int64_t{25} << 20);

}  // namespace qdqbert::distributed
