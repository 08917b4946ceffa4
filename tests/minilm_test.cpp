// The real pretrained checkpoint: all-MiniLM-L6-v2, FP32 parity with transformers (golden data from
// tools/reference/minilm_golden.py), every quantizer disabled.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "minilm_util.h"
#include "qdqbert/io/checkpoint.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;

TEST(MiniLM, Fp32OutputsMatchTransformers) {
  ASSERT_TRUE(qt::minilm_available());
  io::LoadReport report;
  auto model = io::from_pretrained(qt::minilm_dir(), {}, &report);  // strict: every key must match
  EXPECT_EQ(model->class_name(), "QDQBertModel");
  EXPECT_TRUE(report.missing_keys.empty());
  for (auto& [n, q] : named_quantizers(model->module())) q->disable();
  auto g = io::load_safetensors(qt::data_path("minilm/golden.safetensors"));
  torch::NoGradGuard ng;
  at::set_num_threads(2);
  const int64_t n = g["input_ids"].size(0);
  for (int64_t s = 0; s < n; s += 16) {
    const int64_t e = std::min(n, s + 16);
    ModelInputs in;
    in.input_ids = g["input_ids"].slice(0, s, e);
    in.attention_mask = g["attention_mask"].slice(0, s, e);
    in.token_type_ids = g["token_type_ids"].slice(0, s, e);
    ModelOutput out = model->run(in);
    EXPECT_TRUE(qt::tensors_close(out.last_hidden_state, g["last_hidden_state"].slice(0, s, e), 0, 1e-4,
                                  "last_hidden_state rows " + std::to_string(s)));
    EXPECT_TRUE(qt::tensors_close(out.pooler_output, g["pooler_output"].slice(0, s, e), 0, 1e-4, "pooler_output"));
    at::Tensor mask = in.attention_mask.unsqueeze(-1).to(torch::kFloat);
    at::Tensor mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1e-9);
    at::Tensor emb = torch::nn::functional::normalize(mean, torch::nn::functional::NormalizeFuncOptions().dim(1));
    EXPECT_TRUE(qt::tensors_close(emb, g["sentence_embedding"].slice(0, s, e), 0, 1e-4, "sentence_embedding"));
  }
}
