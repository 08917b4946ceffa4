#pragma once
/// \file
/// The workflow's data-parallel pieces (on qdqbert::distributed): evaluation sharded over the ranks with
/// results equal to a single process's.

#include <cstdint>
#include <vector>

#include "qdqbert/workflow/embed.h"

namespace qdqbert::workflow {

/// embed_batches with the batches dealt round-robin over the ranks (batch k on rank k mod world) and the
/// results gathered on every rank in batch order, padded to the longest batch: each batch runs exactly as in
/// one process, so the Embeddings (and every figure computed from them, e.g. compare_embeddings' cosine) are
/// bit for bit the single-process ones. One process: embed_batches. A collective: every rank calls it with
/// the same batches.
Embeddings embed_batches_sharded(TaskModel& model, const std::vector<ModelInputs>& batches, int64_t pad_token_id);

}  // namespace qdqbert::workflow
