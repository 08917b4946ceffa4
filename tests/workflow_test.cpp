// workflow: quant_trainer options (disable rules, fuse_qkv, clip_gelu, recalibrate), all four
// calibrators through the driver, print_quant_summary, lr schedules, a short QAT run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "model_util.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/workflow/quant_trainer.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;

namespace {
std::shared_ptr<TaskModel> tiny(const workflow::QuantTrainerOptions& o, const std::string& task = "question-answering") {
  Config c = qt::tiny_config();
  c.initializer_range = 0.02;
  c.quant_desc_input = o.input_desc();
  c.quant_desc_weight = o.weight_desc();
  auto m = create_model(task, c);
  m->module().eval();
  return m;
}
ModelInputs batch(int64_t b = 4, int64_t l = 16) {
  ModelInputs in;
  in.input_ids = torch::randint(2, 103, {b, l}, torch::kLong);
  in.attention_mask = torch::ones({b, l}, torch::kLong);
  return in;
}
}  // namespace

TEST(Workflow, AllFourCalibratorsProduceAmax) {
  torch::manual_seed(0);
  for (const std::string method : {"max", "percentile", "mse", "entropy"}) {
    workflow::QuantTrainerOptions o;
    o.calibrator = method;
    auto m = tiny(o);
    auto report = workflow::calibrate(*m, {batch(), batch()}, o.calibration());
    EXPECT_EQ(report.calibrated.size(), 40u) << method;
    for (auto& [n, q] : named_quantizers(m->module())) {
      ASSERT_TRUE(q->has_amax()) << method << " " << n;
      EXPECT_TRUE(std::isfinite(q->amax().max().item<float>()) && q->amax().min().item<float>() >= 0) << n;
      if (n.find("_input_quantizer") != std::string::npos) {
        EXPECT_EQ(q->calibrator()->name(), method == "max" ? "MaxCalibrator" : "HistogramCalibrator");
      }
    }
    torch::NoGradGuard g;
    auto out = m->run(batch());
    EXPECT_FALSE(out.start_logits.isnan().any().item<bool>());
  }
}

TEST(Workflow, QuantizersThatSeeNoDataAreNamed) {
  workflow::QuantTrainerOptions o;
  Config c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.intermediate_size = 20;
  c.max_position_embeddings = 16;
  c.is_decoder = true;
  c.add_cross_attention = true;
  auto m = create_model("causal-lm", c);
  ModelInputs in;
  in.input_ids = torch::randint(2, 50, {2, 6}, torch::kLong);
  try {
    workflow::calibrate(*m, {in});  // no encoder_hidden_states: cross-attention never runs
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("crossattention.self.query._input_quantizer"), std::string::npos) << e.what();
  }
  workflow::CalibrationOptions lenient;
  lenient.strict = false;
  auto r = workflow::calibrate(*m, {in}, lenient);
  EXPECT_EQ(r.no_data.size(), 14u);
}

TEST(Workflow, DisableRulesFuseQkvClipGeluRecalibrate) {
  torch::manual_seed(1);
  workflow::QuantTrainerOptions o;
  o.quant_per_tensor = true;
  auto m = tiny(o);
  workflow::calibrate(*m, {batch()}, o.calibration());
  auto log = workflow::fuse_qkv(*m);
  auto* qa = dynamic_cast<QDQBertForQuestionAnsweringImpl*>(m.get());
  auto sa = qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(0)->attention->self;
  EXPECT_EQ(sa->query->input_quantizer->amax().item<float>(), sa->value->input_quantizer->amax().item<float>());
  EXPECT_EQ(sa->matmul_q_input_quantizer->amax().item<float>(), sa->matmul_k_input_quantizer->amax().item<float>());
  EXPECT_EQ(sa->query->weight_quantizer->amax().item<float>(), sa->key->weight_quantizer->amax().item<float>());
  workflow::clip_gelu(*m, 0.05);
  auto out_dense = qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(1)->output->dense;
  EXPECT_LE(out_dense->input_quantizer->amax().item<float>(), 0.05f);
  EXPECT_GT(qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(1)->attention->output->dense->input_quantizer->amax().item<float>(), 0.05f);
  workflow::QuantTrainerOptions d;
  d.quant_disable_layer_module = "attention";
  workflow::configure_model(*m, d);
  int disabled = 0;
  for (auto& [n, q] : named_quantizers(m->module())) disabled += q->is_enabled() ? 0 : 1;
  EXPECT_EQ(disabled, 2 * 14);
  d = {};
  d.quant_enable_layer_module = "attention.self";
  workflow::configure_model(*m, d);
  EXPECT_TRUE(sa->matmul_a_input_quantizer->is_enabled());
  d = {};
  d.quant_disable_keyword = {"intermediate", "output\\.dense"};
  workflow::configure_model(*m, d);
  EXPECT_FALSE(out_dense->input_quantizer->is_enabled());
  EXPECT_FALSE(out_dense->weight_quantizer->is_enabled());
  // recalibrate: weight amax follows the weights again.
  torch::NoGradGuard g;
  sa->query->weight.mul_(2);
  workflow::recalibrate_weights(*m);
  EXPECT_FLOAT_EQ(sa->query->weight_quantizer->amax().item<float>(), sa->query->weight.abs().max().item<float>());
  std::ostringstream os;
  workflow::print_quant_summary(*m, os);
  EXPECT_NE(os.str().find("bert.encoder.layer.0.attention.self.matmul_a_input_quantizer"), std::string::npos);
  EXPECT_NE(os.str().find("40 quantizers"), std::string::npos) << os.str();
  EXPECT_THROW(workflow::set_quantizer_disabled(*m, {"(unclosed"}, true), c10::Error);
}

TEST(Workflow, LearningRateSchedules) {
  EXPECT_DOUBLE_EQ(workflow::lr_at(0, 100, 10, 1.0, "linear"), 0.0);
  EXPECT_DOUBLE_EQ(workflow::lr_at(5, 100, 10, 1.0, "linear"), 0.5);
  EXPECT_DOUBLE_EQ(workflow::lr_at(10, 100, 10, 1.0, "linear"), 1.0);
  EXPECT_DOUBLE_EQ(workflow::lr_at(100, 100, 10, 1.0, "linear"), 0.0);
  EXPECT_NEAR(workflow::lr_at(55, 100, 10, 1.0, "cosine"), 0.5, 1e-12);
  EXPECT_THROW(workflow::lr_at(1, 10, 0, 1.0, "step"), c10::Error);
}

TEST(Workflow, QuantizationAwareTrainingReducesLoss) {
  torch::manual_seed(3);
  workflow::QuantTrainerOptions o;
  auto m = tiny(o, "sequence-classification");
  std::vector<ModelInputs> data;
  for (int i = 0; i < 4; ++i) {
    ModelInputs b = batch(8, 12);
    b.labels = (b.input_ids.select(1, 0) > 50).to(torch::kLong);  // learnable from the first token
    data.push_back(b);
  }
  workflow::calibrate(*m, data);
  m->module().train();
  auto groups = workflow::decay_groups(*m, 0.01);
  std::vector<torch::optim::OptimizerParamGroup> pg;
  for (auto& [params, wd] : groups) {
    pg.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-3).weight_decay(wd)));
  }
  torch::optim::AdamW opt(pg);
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 15; ++epoch) {
    double total = 0;
    for (auto& b : data) {
      opt.zero_grad();
      at::Tensor loss = m->run(b).loss;
      loss.backward();
      torch::nn::utils::clip_grad_norm_(m->module().parameters(), 1.0);
      opt.step();
      total += loss.item<double>();
    }
    if (epoch == 0) first = total;
    last = total;
  }
  EXPECT_LT(last, 0.5 * first) << "QAT must learn (first epoch " << first << ", last " << last << ")";
}
