// Sharded sampling for training and round-robin batches for evaluation (sharding.h).
#include "qdqbert/distributed/sharding.h"

#include <torch/torch.h>

#include "qdqbert/distributed/distributed.h"

namespace qdqbert::distributed {

Shard split_rows(int64_t rows, int64_t rank, int64_t world) {
  TORCH_CHECK_VALUE(world >= 1 && rank >= 0 && rank < world && rows >= 0, "distributed: cannot split ", rows,
                    " rows for rank ", rank, " of ", world);
  Shard s;
  s.global_end = rows;
  s.begin = rank * rows / world;
  s.end = (rank + 1) * rows / world;
  // rows * world / m; exactly 1 when the rows split evenly (and always for one process).
  s.loss_scale = rows > 0 && s.size() * world != rows
                     ? static_cast<double>(s.size()) * static_cast<double>(world) / static_cast<double>(rows)
                     : 1.0;
  return s;
}

ShardedSampler::ShardedSampler(int64_t num_samples, int64_t per_device_batch, int64_t rank, int64_t world)
    : num_samples_(num_samples),
      per_device_batch_(per_device_batch),
      rank_(rank < 0 ? distributed::rank() : rank),
      world_(world < 0 ? distributed::world_size() : world) {
  TORCH_CHECK_VALUE(num_samples_ >= 0 && per_device_batch_ >= 1, "ShardedSampler: ", num_samples_,
                    " samples with per-device batch ", per_device_batch_, " (need >= 0 and >= 1)");
  TORCH_CHECK_VALUE(world_ >= 1 && rank_ >= 0 && rank_ < world_, "ShardedSampler: rank ", rank_, " of ", world_);
}

int64_t ShardedSampler::num_batches() const {
  const int64_t g = global_batch_size();
  return (num_samples_ + g - 1) / g;
}

Shard ShardedSampler::shard(int64_t batch) const {
  TORCH_CHECK_INDEX(batch >= 0 && batch < num_batches(), "ShardedSampler: batch ", batch, " is outside 0..",
                    num_batches() - 1);
  const int64_t g = global_batch_size(), first = batch * g, rows = std::min(num_samples_, first + g) - first;
  Shard s = split_rows(rows, rank_, world_);
  s.begin += first;
  s.end += first;
  s.global_begin = first;
  s.global_end = first + rows;
  return s;
}

BatchShard shard_batch(const ModelInputs& global_batch) {
  BatchShard out;
  out.inputs = global_batch;
  const int64_t world = world_size();
  if (world == 1) return out;
  const at::Tensor& lead = global_batch.input_ids.defined() ? global_batch.input_ids : global_batch.inputs_embeds;
  TORCH_CHECK_VALUE(lead.defined(), "shard_batch: the batch has neither input_ids nor inputs_embeds");
  TORCH_CHECK_VALUE(global_batch.past_key_values.empty(), "shard_batch: a batch with past_key_values cannot be split");
  const int64_t n = lead.size(0);
  TORCH_CHECK_VALUE(n >= world, "shard_batch: ", error_prefix(), "a global batch of ", n, " rows cannot be split ",
                    "across ", world, " ranks (every rank needs at least one row)");
  const Shard s = split_rows(n, rank(), world);
  out.loss_scale = s.loss_scale;
  auto cut = [&](at::Tensor& t) {
    if (t.defined() && t.dim() >= 1 && t.size(0) == n) t = t.narrow(0, s.begin, s.size());
  };
  ModelInputs& in = out.inputs;
  for (at::Tensor* t :
       {&in.input_ids, &in.attention_mask, &in.token_type_ids, &in.position_ids, &in.inputs_embeds,
        &in.encoder_hidden_states, &in.encoder_attention_mask, &in.labels, &in.start_positions, &in.end_positions}) {
    cut(*t);
  }
  return out;
}

std::vector<int64_t> round_robin_batches(int64_t num_batches) {
  std::vector<int64_t> mine;
  for (int64_t k = rank(); k < num_batches; k += world_size()) mine.push_back(k);
  return mine;
}

at::Tensor all_gather_round_robin(const at::Tensor& local, const std::vector<int64_t>& batch_rows) {
  const int64_t world = world_size();
  if (world == 1) return local;
  const std::vector<at::Tensor> parts = all_gather(local);
  std::vector<int64_t> taken(static_cast<size_t>(world), 0);
  std::vector<at::Tensor> ordered;
  for (size_t k = 0; k < batch_rows.size(); ++k) {
    const size_t owner = k % static_cast<size_t>(world);
    const at::Tensor& p = parts[owner];
    TORCH_CHECK_VALUE(taken[owner] + batch_rows[k] <= p.size(0), "all_gather_round_robin: rank ", owner, " sent ",
                      p.size(0), " rows, fewer than its batches hold (batch ", k, " of ", batch_rows.size(), ")");
    ordered.push_back(p.narrow(0, taken[owner], batch_rows[k]));
    taken[owner] += batch_rows[k];
  }
  for (int64_t r = 0; r < world; ++r) {
    TORCH_CHECK_VALUE(taken[static_cast<size_t>(r)] == parts[static_cast<size_t>(r)].size(0),
                      "all_gather_round_robin: rank ", r, " sent ", parts[static_cast<size_t>(r)].size(0),
                      " rows, its batches hold ", taken[static_cast<size_t>(r)]);
  }
  if (ordered.empty()) return local.narrow(0, 0, 0);
  return at::cat(ordered);
}

}  // namespace qdqbert::distributed
