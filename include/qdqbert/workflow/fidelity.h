#pragma once
/// \file
/// How close quantized sentence embeddings stay to FP32, as users of embeddings judge it: cosine per
/// sentence (mean, 5th percentile, min), the largest last_hidden_state difference over real tokens, and
/// retrieval fidelity (each sentence's k nearest neighbours among the others by the FP32 embeddings vs by
/// the quantized ones: recall@k, and how often the top-1 neighbour is unchanged). Plus the share of GEMM
/// work a quantizer configuration runs in int8.

#include <cstdint>
#include <vector>

#include "qdqbert/workflow/embed.h"

namespace qdqbert::workflow {

struct EmbeddingFidelity {
  int64_t sentences = 0;
  double cosine_mean = 0, cosine_p5 = 0, cosine_min = 0;  ///< p5: sorted cosines at floor(0.05 (n - 1))
  double max_abs_diff = 0;     ///< last_hidden_state, real tokens only (0 when the shapes differ)
  int64_t k = 0;               ///< neighbours compared: min(requested k, sentences - 1)
  double recall_at_k = 1;      ///< mean over sentences of |kNN_fp32 ∩ kNN_quant| / k
  double top1_unchanged = 1;   ///< fraction of sentences whose nearest neighbour is the same
};

/// Compares `candidate` against `reference` (both from embed/embed_batches on the same lines; embeddings
/// L2-normalised, so the dot product is the cosine). Neighbours exclude the sentence itself; ties are
/// broken by the lower index. Error when the sentence counts differ.
EmbeddingFidelity compare_embeddings(const Embeddings& reference, const Embeddings& candidate, int64_t k = 10);

/// GEMM work of one encoder forward at the given sequence lengths (one entry per sentence, real tokens):
/// every Linear of the encoder layers (q, k, v, attention output, intermediate, output: 2 T in out
/// multiply-adds counted as FLOPs) and the two attention matmuls (Q K^T and A V: 2 L^2 H each), and how
/// much of it has both inputs quantized (input and weight quantizer enabled; both matmul input quantizers
/// enabled) — what runs as an int8 GEMM in TensorRT. The pooler and task heads are not counted.
struct GemmFlops {
  double total = 0, int8 = 0;
  double int8_share() const { return total > 0 ? int8 / total : 0; }
};
GemmFlops gemm_flops(TaskModel& model, const std::vector<int64_t>& sequence_lengths);

/// Real-token lengths (attention mask sums) of embedded or encoded batches.
std::vector<int64_t> sequence_lengths(const at::Tensor& attention_mask);

}  // namespace qdqbert::workflow
