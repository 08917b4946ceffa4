#pragma once
/// \file
/// How data is split across ranks and results put back together.
///
/// Training (ShardedSampler, shard_batch): every rank draws the same seeded order of the data, global batch j
/// is positions [j G, (j + 1) G) of that order with G = per-device batch x world size, and rank r takes the
/// r-th of W nearly equal contiguous parts of it: [floor(r m / W), floor((r + 1) m / W)) for a global batch
/// of m samples (exactly per-device batch rows each, except in a short last batch). With the loss of each
/// part multiplied by loss_scale = rows x W / m and the gradients averaged, the step is the one a single
/// process takes on the whole global batch (up to float32 rounding).
///
/// Evaluation (round_robin_batches, all_gather_round_robin): batch k runs on rank k mod W, exactly as a
/// single process runs it (same rows, same batch size), and the rows are gathered back into batch order, so
/// the gathered outputs are bit for bit the single-process ones.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "qdqbert/models/outputs.h"

namespace qdqbert::distributed {

/// One rank's part of one global batch: positions [begin, end) into the epoch's order.
struct Shard {
  int64_t begin = 0, end = 0;
  int64_t global_begin = 0, global_end = 0;  ///< the whole global batch
  /// rows x world / global rows: multiply this rank's mean loss by it (1 for full batches and one process).
  double loss_scale = 1;
  int64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
};

/// The sharded sampler (torch.utils.data.DistributedSampler with a fixed global batch): positions of global
/// batches over `num_samples` samples, and this rank's part of each. The order itself (e.g.
/// workflow::permutation with the run's seed) is the caller's; it must be the same on every rank.
class ShardedSampler {
 public:
  /// For rank `rank` of `world` (default: this process's, from distributed::rank() / world_size()).
  ShardedSampler(int64_t num_samples, int64_t per_device_batch, int64_t rank = -1, int64_t world = -1);
  int64_t global_batch_size() const { return per_device_batch_ * world_; }
  /// Global batches per pass over the data: ceil(num_samples / global_batch_size()).
  int64_t num_batches() const;
  /// This rank's part of global batch `batch` (0 <= batch < num_batches()).
  Shard shard(int64_t batch) const;

 private:
  int64_t num_samples_, per_device_batch_, rank_, world_;
};

/// The part of a W-way split of [0, rows) that rank `rank` takes (the formula above).
Shard split_rows(int64_t rows, int64_t rank, int64_t world);

/// This rank's rows of `global_batch`: every tensor of the batch whose first dimension is the batch size is
/// sliced (head_mask is not); `loss_scale` as above. One process: the batch itself. Error for a batch with
/// fewer rows than ranks (some rank would get none) or with past_key_values.
struct BatchShard {
  ModelInputs inputs;
  double loss_scale = 1;
};
BatchShard shard_batch(const ModelInputs& global_batch);

/// The batches of `num_batches` that this rank runs in a sharded evaluation: k = rank, rank + W, ...
std::vector<int64_t> round_robin_batches(int64_t num_batches);

/// Puts round-robin batches back together: `local` holds this rank's batches' rows one after another (first
/// dimension), `batch_rows[k]` is the number of rows of batch k. Returns all batches' rows in batch order, on
/// every rank; the other dimensions and the dtype must agree. One process: `local`.
at::Tensor all_gather_round_robin(const at::Tensor& local, const std::vector<int64_t>& batch_rows);

}  // namespace qdqbert::distributed
