#include "qdqbert/workflow/fidelity.h"

#include <torch/torch.h>

#include <cmath>

#include "qdqbert/error.h"
#include "qdqbert/nn/quant_linear.h"

namespace qdqbert::workflow {
namespace {

// Indices of each row's k largest similarities to the other rows ([N, k]).
at::Tensor neighbours(const at::Tensor& emb, int64_t k) {
  at::Tensor sim = emb.matmul(emb.t());
  sim.fill_diagonal_(-std::numeric_limits<float>::infinity());
  return std::get<1>(sim.topk(k, /*dim=*/1, /*largest=*/true, /*sorted=*/true));
}

bool quantizes(const nn::TensorQuantizer& q) { return q && q->is_enabled() && q->is_quant_enabled(); }

}  // namespace

EmbeddingFidelity compare_embeddings(const Embeddings& ref, const Embeddings& q, int64_t k) {
  torch::NoGradGuard no_grad;
  QDQBERT_CHECK(ref.sentence_embedding.defined() && q.sentence_embedding.defined() &&
                    ref.sentence_embedding.sizes() == q.sentence_embedding.sizes(),
                "compare_embeddings: the two sets of embeddings differ in shape (",
                ref.sentence_embedding.sizes(), " vs ", q.sentence_embedding.sizes(), ")");
  QDQBERT_CHECK(k > 0, "compare_embeddings: k must be positive, got ", k);
  const at::Tensor a = ref.sentence_embedding.to(at::kFloat), b = q.sentence_embedding.to(at::kFloat);
  EmbeddingFidelity r;
  r.sentences = a.size(0);
  at::Tensor cos = (a * b).sum(1);
  at::Tensor sorted = std::get<0>(cos.sort());
  const int64_t n = sorted.numel();
  r.cosine_mean = cos.mean().item<double>();
  r.cosine_min = sorted[0].item<double>();
  r.cosine_p5 = sorted[std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(0.05 * static_cast<double>(n - 1))))]
                    .item<double>();
  if (ref.last_hidden_state.defined() && q.last_hidden_state.defined() &&
      ref.last_hidden_state.sizes() == q.last_hidden_state.sizes()) {
    at::Tensor m = ref.attention_mask.unsqueeze(-1).to(at::kFloat);
    r.max_abs_diff = ((ref.last_hidden_state - q.last_hidden_state).abs() * m).max().item<double>();
  }
  r.k = std::min<int64_t>(k, n - 1);
  if (r.k > 0) {
    at::Tensor na = neighbours(a, r.k), nb = neighbours(b, r.k);
    // Membership: mark the reference neighbours in an [N, N] mask, then look up the candidate's.
    at::Tensor mask = torch::zeros({n, n}, torch::kBool).scatter_(1, na, true);
    r.recall_at_k = mask.gather(1, nb).to(at::kDouble).sum(1).div(static_cast<double>(r.k)).mean().item<double>();
    r.top1_unchanged = na.select(1, 0).eq(nb.select(1, 0)).to(at::kDouble).mean().item<double>();
  }
  return r;
}

std::vector<int64_t> sequence_lengths(const at::Tensor& attention_mask) {
  at::Tensor l = attention_mask.to(at::kLong).sum(1).contiguous();
  return std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
}

GemmFlops gemm_flops(TaskModel& model, const std::vector<int64_t>& lengths) {
  double tokens = 0, squares = 0;
  for (int64_t l : lengths) {
    tokens += static_cast<double>(l);
    squares += static_cast<double>(l) * static_cast<double>(l);
  }
  GemmFlops f;
  for (const auto& item : model.module().named_modules("", false)) {
    const std::string& name = item.key();
    if (name.find("encoder.layer.") == std::string::npos) continue;
    if (auto lin = std::dynamic_pointer_cast<nn::QuantLinearImpl>(item.value())) {
      const double w = 2.0 * tokens * static_cast<double>(lin->weight.size(0)) * static_cast<double>(lin->weight.size(1));
      f.total += w;
      if (quantizes(lin->input_quantizer) && quantizes(lin->weight_quantizer)) f.int8 += w;
    } else if (auto att = std::dynamic_pointer_cast<QDQBertSelfAttentionImpl>(item.value())) {
      const double m = 2.0 * squares * static_cast<double>(att->all_head_size);
      f.total += 2 * m;
      if (quantizes(att->matmul_q_input_quantizer) && quantizes(att->matmul_k_input_quantizer)) f.int8 += m;
      if (quantizes(att->matmul_a_input_quantizer) && quantizes(att->matmul_v_input_quantizer)) f.int8 += m;
    }
  }
  return f;
}

}  // namespace qdqbert::workflow
