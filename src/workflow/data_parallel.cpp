#include "qdqbert/workflow/data_parallel.h"

#include <torch/torch.h>

#include <algorithm>

#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/sharding.h"

namespace qdqbert::workflow {

Embeddings embed_batches_sharded(TaskModel& model, const std::vector<ModelInputs>& batches, int64_t pad_token_id) {
  if (distributed::world_size() == 1) return embed_batches(model, batches, pad_token_id);
  TORCH_CHECK_VALUE(!batches.empty(), "embed: no lines");
  int64_t longest = 0;
  std::vector<int64_t> rows;
  for (const auto& b : batches) {
    longest = std::max(longest, b.input_ids.size(1));
    rows.push_back(b.input_ids.size(0));
  }
  std::vector<ModelInputs> mine;
  for (const int64_t k : distributed::round_robin_batches(static_cast<int64_t>(batches.size()))) {
    mine.push_back(batches[static_cast<size_t>(k)]);
  }
  Embeddings local;
  if (!mine.empty()) {
    local = embed_batches(model, mine, pad_token_id);
  } else {  // fewer batches than ranks: this rank sends no rows
    const int64_t h = model.model_config().hidden_size;
    local.input_ids = at::empty({0, longest}, batches[0].input_ids.options());
    local.attention_mask = at::empty({0, longest}, batches[0].attention_mask.options());
    local.last_hidden_state = at::empty({0, longest, h}, at::kFloat);
    local.sentence_embedding = at::empty({0, h}, at::kFloat);
  }
  // Padded as embed_batches pads, but to the longest of all batches (what one process pads to).
  namespace F = torch::nn::functional;
  auto pad_to_longest = [&](const at::Tensor& t, int64_t value) {
    const int64_t extra = longest - t.size(1);
    if (extra == 0) return t;
    std::vector<int64_t> pad = t.dim() == 3 ? std::vector<int64_t>{0, 0, 0, extra} : std::vector<int64_t>{0, extra};
    return F::pad(t, F::PadFuncOptions(pad).value(static_cast<double>(value)));
  };
  Embeddings out;
  out.input_ids = distributed::all_gather_round_robin(pad_to_longest(local.input_ids, pad_token_id), rows);
  out.attention_mask = distributed::all_gather_round_robin(pad_to_longest(local.attention_mask, 0), rows);
  out.last_hidden_state = distributed::all_gather_round_robin(pad_to_longest(local.last_hidden_state, 0), rows);
  out.sentence_embedding = distributed::all_gather_round_robin(local.sentence_embedding, rows);
  return out;
}

}  // namespace qdqbert::workflow
