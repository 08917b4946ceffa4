// workflow: quant_trainer options (disable rules, fuse_qkv, clip_gelu, recalibrate), all four
// calibrators through the driver, print_quant_summary, lr schedules, a short QAT run; the quant_trainer
// helpers set_quantizer_by_name / set_quantizers / expand_amax / print_model_summary and
// pytorch-quantization's calibrate_weights.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "model_util.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/workflow/quant_trainer.h"
#include "qdqbert/strings.h"

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
std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}
std::shared_ptr<QDQBertSelfAttentionImpl> self_attention(TaskModel& m, int64_t layer) {
  auto* qa = dynamic_cast<QDQBertForQuestionAnsweringImpl*>(&m);
  return qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(layer)->attention->self.ptr();
}
std::vector<std::pair<std::string, std::shared_ptr<nn::QuantLinearImpl>>> quant_linears(TaskModel& m) {
  std::vector<std::pair<std::string, std::shared_ptr<nn::QuantLinearImpl>>> out;
  for (const auto& item : m.module().named_modules("", false)) {
    if (auto l = std::dynamic_pointer_cast<nn::QuantLinearImpl>(item.value())) out.emplace_back(item.key(), l);
  }
  return out;
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

// Inference fuses what training keeps apart: q/k/v quantize their shared input once when their input
// quantizers agree, and each residual add quantizes both inputs and adds in one pass. The outputs must
// be bit-identical to the unfused path, which runs whenever activations require grad.
TEST(Workflow, FusedInferencePathsAreBitIdenticalToTraining) {
  torch::manual_seed(4);
  for (const std::string method : {"max", "mse"}) {
    workflow::QuantTrainerOptions o;
    o.calibrator = method;
    auto m = tiny(o);
    workflow::calibrate(*m, {batch(), batch()}, o.calibration());
    auto self = self_attention(*m, 0);
    // Calibrated on the same data, the three input quantizers agree, so the shared path is taken.
    ASSERT_TRUE(torch::equal(self->query->input_quantizer->amax(), self->key->input_quantizer->amax())) << method;
    ASSERT_TRUE(torch::equal(self->query->input_quantizer->amax(), self->value->input_quantizer->amax())) << method;
    const ModelInputs in = batch(3, 24);
    auto compare = [&](const std::string& what) {
      ModelOutput fused, unfused;
      {
        torch::NoGradGuard g;
        fused = m->run(in);
      }
      unfused = m->run(in);  // parameters require grad, so every activation does: the unfused path
      ASSERT_TRUE(unfused.start_logits.requires_grad()) << what;
      EXPECT_TRUE(torch::equal(fused.start_logits.view(at::kInt), unfused.start_logits.detach().view(at::kInt)))
          << method << " " << what;
      EXPECT_TRUE(torch::equal(fused.end_logits.view(at::kInt), unfused.end_logits.detach().view(at::kInt)))
          << method << " " << what;
    };
    compare("all quantizers");
    {
      torch::NoGradGuard g;
      self->key->input_quantizer->set_amax(self->key->input_quantizer->amax() * 1.5);  // no longer shared
    }
    compare("q/k/v inputs disagree");
    for (auto& [n, q] : named_quantizers(m->module())) {
      if (n.find("layer.1.output.add_local_input_quantizer") != std::string::npos) q->disable();
    }
    compare("one residual input in FP32");
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

// Python's set_quantizer_by_name also visits a QuantLinear's quantizers as modules of their own, so the
// keyword "_input_quantizer" disables every input quantizer (QuantLinear, matmul_*, add_*).
TEST(Workflow, DisableKeywordMatchesQuantizerNamesLikePython) {
  auto m = tiny({});
  workflow::QuantTrainerOptions d;
  d.quant_disable_keyword = {"_input_quantizer"};
  const auto log = workflow::configure_model(*m, d);
  int linear_inputs = 0, other_inputs = 0, weights = 0;
  for (auto& [n, q] : named_quantizers(m->module())) {
    if (ends_with(n, "._input_quantizer")) {
      ++linear_inputs;
      EXPECT_FALSE(q->is_enabled()) << n;
    } else if (ends_with(n, "_input_quantizer")) {
      ++other_inputs;
      EXPECT_TRUE(n.find(".matmul_") != std::string::npos || n.find(".add_") != std::string::npos) << n;
      EXPECT_FALSE(q->is_enabled()) << n;
    } else if (ends_with(n, "._weight_quantizer")) {
      ++weights;
      EXPECT_TRUE(q->is_enabled()) << n;
    } else {
      ADD_FAILURE() << "unexpected quantizer " << n;
    }
  }
  EXPECT_EQ(linear_inputs, 2 * 6);
  EXPECT_EQ(other_inputs, 2 * 8);  // matmul_{q,k,v,a} + two add pairs per layer
  EXPECT_EQ(weights, 2 * 6);
  EXPECT_NE(std::find(log.begin(), log.end(), "quant-disable-keyword: 28 quantizers"), log.end());
  // Re-enabling by the same keyword reaches the same 28.
  EXPECT_EQ(workflow::set_quantizer_disabled(*m, {"_input_quantizer"}, false).size(), 28u);
  for (auto& [n, q] : named_quantizers(m->module())) EXPECT_TRUE(q->is_enabled()) << n;
}

TEST(Workflow, SetQuantizerByNameMatchesOwnerOrOwnName) {
  auto m = tiny({});
  auto sa0 = self_attention(*m, 0), sa1 = self_attention(*m, 1);
  const std::string l0 = "bert.encoder.layer.0.attention.self.", l1 = "bert.encoder.layer.1.attention.self.";
  workflow::QuantizerSettings four;
  four.num_bits = 4;
  four.narrow_range = true;
  EXPECT_EQ(four.repr(), " _num_bits=4 _narrow_range=True");
  // "query$" matches the QuantLinear's name only (its quantizers' names end differently): both quantizers.
  auto t = workflow::set_quantizer_by_name(*m, {"query$"}, four);
  EXPECT_EQ(t, (std::vector<std::string>{l0 + "query._input_quantizer", l0 + "query._weight_quantizer",
                                         l1 + "query._input_quantizer", l1 + "query._weight_quantizer"}));
  for (auto sa : {sa0, sa1}) {
    EXPECT_EQ(sa->query->input_quantizer->num_bits(), 4);
    EXPECT_TRUE(sa->query->input_quantizer->narrow_range());
    EXPECT_EQ(sa->query->weight_quantizer->num_bits(), 4);
    EXPECT_EQ(sa->key->input_quantizer->num_bits(), 8);
    EXPECT_EQ(sa->matmul_q_input_quantizer->num_bits(), 8);
  }
  // A quantizer's own full name: only the value weight quantizers.
  workflow::QuantizerSettings uns;
  uns.is_unsigned = true;
  t = workflow::set_quantizer_by_name(*m, {"value\\._weight_quantizer"}, uns);
  EXPECT_EQ(t, (std::vector<std::string>{l0 + "value._weight_quantizer", l1 + "value._weight_quantizer"}));
  EXPECT_TRUE(sa0->value->weight_quantizer->is_unsigned());
  EXPECT_FALSE(sa0->value->input_quantizer->is_unsigned());
  // Standalone quantizers by their own name.
  workflow::QuantizerSettings off;
  off.disabled = true;
  t = workflow::set_quantizer_by_name(*m, {"layer\\.1\\..*matmul_[qk]_"}, off);
  EXPECT_EQ(t, (std::vector<std::string>{l1 + "matmul_q_input_quantizer", l1 + "matmul_k_input_quantizer"}));
  EXPECT_FALSE(sa1->matmul_k_input_quantizer->is_enabled());
  EXPECT_TRUE(sa0->matmul_k_input_quantizer->is_enabled());
  // Owner and own-name matches of the same quantizer (and several patterns) report it once.
  t = workflow::set_quantizer_by_name(*m, {"layer\\.0\\.attention\\.self\\.key", "key"}, off);
  EXPECT_EQ(t, (std::vector<std::string>{l0 + "key._input_quantizer", l0 + "key._weight_quantizer",
                                         l1 + "key._input_quantizer", l1 + "key._weight_quantizer"}));
  EXPECT_FALSE(sa1->key->weight_quantizer->is_enabled());
  EXPECT_TRUE(workflow::set_quantizer_by_name(*m, {}, off).empty());
  // Bad input changes nothing.
  workflow::QuantizerSettings bad;
  bad.num_bits = 0;
  bad.disabled = true;
  EXPECT_NE(
      qt::error_message([&] { workflow::set_quantizer_by_name(*m, {""}, bad); }).find("num_bits must be in [1, 22], got 0"),
      std::string::npos);
  EXPECT_NE(qt::error_message([&] {
              workflow::set_quantizer_by_name(*m, {"query", "(unclosed"}, off);
            }).find("'(unclosed'"),
            std::string::npos);
  EXPECT_TRUE(sa0->query->input_quantizer->is_enabled());
  EXPECT_TRUE(sa0->value->input_quantizer->is_enabled());
}

TEST(Workflow, SetQuantizersTouchesOnlyQuantLinearQuantizers) {
  auto m = tiny({});
  workflow::QuantizerSettings six;
  six.num_bits = 6;
  EXPECT_EQ(workflow::set_quantizers(*m, "input", six).size(), 12u);
  workflow::QuantizerSettings five;
  five.num_bits = 5;
  EXPECT_EQ(workflow::set_quantizers(*m, "weight", five).size(), 12u);
  workflow::QuantizerSettings off;
  off.disabled = true;
  const auto both = workflow::set_quantizers(*m, "both", off);
  EXPECT_EQ(both.size(), 24u);
  EXPECT_EQ(both.front(), "bert.encoder.layer.0.attention.self.query._input_quantizer");
  for (auto& [n, q] : named_quantizers(m->module())) {
    if (ends_with(n, "._input_quantizer")) {
      EXPECT_EQ(q->num_bits(), 6) << n;
      EXPECT_FALSE(q->is_enabled()) << n;
    } else if (ends_with(n, "._weight_quantizer")) {
      EXPECT_EQ(q->num_bits(), 5) << n;
      EXPECT_FALSE(q->is_enabled()) << n;
    } else {  // matmul_* / add_*: as in Python, set_quantizers does not reach them
      EXPECT_EQ(q->num_bits(), 8) << n;
      EXPECT_TRUE(q->is_enabled()) << n;
    }
  }
  EXPECT_NE(qt::error_message([&] { workflow::set_quantizers(*m, "inputs", off); }).find("got 'inputs'"), std::string::npos);
  EXPECT_NE(qt::error_message([&] { workflow::set_quantizers(*m, "", off); }).find("got ''"), std::string::npos);
}

TEST(Workflow, ExpandAmaxMakesPerTensorWeightAmaxPerChannel) {
  torch::manual_seed(4);
  auto m = tiny({});  // per-row weight quantizers (axis 0), no amax yet
  auto sa = self_attention(*m, 0);
  const std::string l0 = "bert.encoder.layer.0.attention.self.";
  sa->query->weight_quantizer->set_amax(0.5);
  const at::Tensor key_amax = sa->key->weight.detach().abs().amax({1}, true);
  sa->key->weight_quantizer->set_amax(key_amax);
  torch::NoGradGuard g;
  const at::Tensor x = torch::randn({3, 32});
  const at::Tensor before = sa->query->forward(x);
  const auto log = workflow::expand_amax(*m);
  EXPECT_EQ(sa->query->weight_quantizer->amax().sizes(), (std::vector<int64_t>{32, 1}));
  EXPECT_TRUE(qt::tensors_equal(sa->query->weight_quantizer->amax(), torch::full({32, 1}, 0.5f), "expanded"));
  EXPECT_TRUE(qt::tensors_equal(sa->query->forward(x), before, "outputs unchanged"));
  EXPECT_TRUE(qt::tensors_equal(sa->key->weight_quantizer->amax(), key_amax, "per-channel amax kept"));
  auto has = [&](const std::string& line) { return std::find(log.begin(), log.end(), line) != log.end(); };
  EXPECT_TRUE(has("expand_amax: " + l0 + "query 0.5 -> [32, 1]")) << log.size();
  EXPECT_TRUE(has("expand_amax: " + l0 + "key: amax already per channel [32, 1], kept"));
  EXPECT_TRUE(has("expand_amax: " + l0 + "value: no amax, skipped"));
  EXPECT_EQ(log.size(), 12u);
  // Per-tensor weight quantizers (no axis) are left alone, as in Python.
  workflow::QuantTrainerOptions pt;
  pt.quant_per_tensor = true;
  auto m2 = tiny(pt);
  self_attention(*m2, 0)->query->weight_quantizer->set_amax(0.5);
  EXPECT_TRUE(workflow::expand_amax(*m2).empty());
  EXPECT_EQ(self_attention(*m2, 0)->query->weight_quantizer->amax().dim(), 0);
}

TEST(Workflow, PrintModelSummaryMatchesPythonLayout) {
  torch::manual_seed(6);
  auto m = tiny({});
  workflow::calibrate(*m, {batch()});
  // Python's name width: the longest name of any module with a `weight` (LayerNorm included).
  size_t width = 0;
  for (const auto& item : m->module().named_modules("", false)) {
    if (item.value()->named_parameters(false).contains("weight")) width = std::max(width, item.key().size());
  }
  const std::string name = "bert.encoder.layer.0.attention.self.query";
  ASSERT_GT(width, name.size());
  auto sa = self_attention(*m, 0);
  const std::string padded = name + std::string(width - name.size(), ' ');
  const std::string act = "Act:" + sa->query->input_quantizer->extra_repr();
  const std::string wgt = "Wgt:" + sa->query->weight_quantizer->extra_repr();
  const std::string full = padded + " " + act + " " + wgt;

  std::ostringstream wide;
  workflow::print_model_summary(*m, wide, 100000);
  const auto lines = lines_of(wide.str());
  ASSERT_EQ(lines.size(), 12u) << wide.str();  // the QuantLinears only: no LayerNorm, embeddings, qa_outputs
  EXPECT_EQ(lines[0], full);
  for (const auto& l : lines) {
    EXPECT_EQ(l.find("LayerNorm"), std::string::npos) << l;
    EXPECT_EQ(l.find("qa_outputs"), std::string::npos) << l;
    EXPECT_EQ(l.find(" Act:"), width) << l;
  }
  std::ostringstream exact;
  workflow::print_model_summary(*m, exact, static_cast<int64_t>(full.size()));
  EXPECT_EQ(lines_of(exact.str())[0], full);
  // One character narrower: split, the weight part under a blank name column.
  std::ostringstream narrow;
  workflow::print_model_summary(*m, narrow, static_cast<int64_t>(full.size()) - 1);
  const auto split = lines_of(narrow.str());
  ASSERT_GE(split.size(), 13u);
  EXPECT_EQ(split[0], padded + " " + act);
  EXPECT_EQ(split[1], std::string(width, ' ') + " " + wgt);
  std::ostringstream ignored;
  workflow::print_model_summary(*m, ignored, 100000, {"attention"});
  const auto kept = lines_of(ignored.str());
  EXPECT_EQ(kept.size(), 4u) << ignored.str();  // intermediate.dense and output.dense of both layers
  for (const auto& l : kept) EXPECT_EQ(l.find("attention"), std::string::npos) << l;
}

TEST(Workflow, CalibrateWeightsMaxEqualsAbsMax) {
  torch::manual_seed(5);
  auto m = tiny({});
  EXPECT_EQ(workflow::calibrate_weights(*m, "max").size(), 12u);
  for (auto& [n, l] : quant_linears(*m)) {
    EXPECT_TRUE(qt::tensors_equal(l->weight_quantizer->amax(), l->weight.detach().abs().amax({1}, true), n));
  }
  // Per tensor (the reference raises for "max" there; we reduce every dim).
  workflow::QuantTrainerOptions pt;
  pt.quant_per_tensor = true;
  auto m2 = tiny(pt);
  workflow::calibrate_weights(*m2, "max", /*perchannel=*/false);
  for (auto& [n, l] : quant_linears(*m2)) {
    EXPECT_TRUE(qt::tensors_equal(l->weight_quantizer->amax(), l->weight.detach().abs().max(), n));
  }
  // A stored amax of another shape is refused, like the reference's amax setter, before anything changes.
  auto first = quant_linears(*m2).front().second;
  const at::Tensor stored = first->weight_quantizer->amax().clone();
  {
    torch::NoGradGuard g;
    first->weight.mul_(3);
  }
  const std::string err = qt::error_message([&] { workflow::calibrate_weights(*m2, "max", /*perchannel=*/true); });
  EXPECT_NE(err.find("bert.encoder.layer.0.attention.self.query._weight_quantizer holds an amax of shape []"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("[32, 1]"), std::string::npos) << err;
  EXPECT_TRUE(qt::tensors_equal(first->weight_quantizer->amax(), stored, "untouched"));
}

// |W_r| = s_r * {1, ..., 32} with s_r a power of two: NumPy's 31 equal bins over [min, max] = [s_r, 32 s_r]
// have width s_r and edges s_r * {1, ..., 32}, exactly; bins 0..29 hold one value, bin 30 holds 31 s_r and
// 32 s_r. The CDF is (i + 1) / 32 and the reference returns the LEFT edge of the first bin reaching the
// percentile: 16 s_r for 50, 31 s_r (not the max) for 99.99.
TEST(Workflow, CalibrateWeightsPercentileOnAKnownTensor) {
  torch::manual_seed(7);
  auto m = tiny({});
  auto q = self_attention(*m, 0)->query;
  const at::Tensor mag = torch::arange(1, 33, torch::kFloat).unsqueeze(0);
  const at::Tensor s =
      torch::pow(2.0, -(torch::arange(32, torch::kLong) % 4).to(torch::kDouble)).to(torch::kFloat).unsqueeze(1);
  const at::Tensor sign = torch::where(torch::rand({32, 32}) < 0.5, -1.0, 1.0).to(torch::kFloat);
  {
    torch::NoGradGuard g;
    q->weight.copy_(mag * s * sign);
  }
  workflow::calibrate_weights(*m, "percentile", true, 50.0, 31);
  EXPECT_TRUE(qt::tensors_equal(q->weight_quantizer->amax(), 16 * s, "percentile 50"));
  workflow::calibrate_weights(*m, "percentile", true, 99.99, 31);
  EXPECT_TRUE(qt::tensors_equal(q->weight_quantizer->amax(), 31 * s, "percentile 99.99"));
  // Per tensor, with num_bins honoured: the same CDF over all 1024 values when every s_r = 1.
  workflow::QuantTrainerOptions pt;
  pt.quant_per_tensor = true;
  auto m2 = tiny(pt);
  auto q2 = self_attention(*m2, 0)->query;
  {
    torch::NoGradGuard g;
    q2->weight.copy_(mag.expand({32, 32}) * sign);
  }
  workflow::calibrate_weights(*m2, "percentile", false, 50.0, 31);
  EXPECT_EQ(q2->weight_quantizer->amax().dim(), 0);
  EXPECT_EQ(q2->weight_quantizer->amax().item<float>(), 16.f);
}

TEST(Workflow, CalibrateWeightsMsePerChannelHistogram) {
  torch::manual_seed(8);
  auto m = tiny({});
  auto q = self_attention(*m, 0)->query;
  q->weight_quantizer->set_num_bits(4);  // the quantizer's bits drive the MSE search
  workflow::calibrate_weights(*m, "mse", true, 99.99, 256);
  const at::Tensor amax = q->weight_quantizer->amax();
  ASSERT_EQ(amax.sizes(), (std::vector<int64_t>{32, 1}));
  for (int64_t r : {0, 5, 31}) {
    calib::HistogramCalibrator h(4, {}, false, 256);
    h.collect(q->weight.detach()[r]);
    EXPECT_EQ(amax[r][0].item<float>(), h.compute_amax("mse").item<float>()) << r;
    EXPECT_GT(amax[r][0].item<float>(), 0.f);
    EXPECT_LE(amax[r][0].item<float>(), q->weight.detach()[r].abs().max().item<float>());
  }
}

TEST(Workflow, CalibrateWeightsRejectsBadArguments) {
  auto m = tiny({});
  EXPECT_NE(qt::error_message([&] { workflow::calibrate_weights(*m, "entropy"); }).find("unknown calibration method 'entropy'"),
            std::string::npos);
  EXPECT_NE(qt::error_message([&] {
              workflow::calibrate_weights(*m, "max", true, 99.99, 0);
            }).find("num_bins must be positive, got 0"),
            std::string::npos);
  EXPECT_NE(qt::error_message([&] { workflow::calibrate_weights(*m, "percentile", true, 99.99, -3); }).find("got -3"),
            std::string::npos);
  EXPECT_NE(qt::error_message([&] { workflow::calibrate_weights(*m, "mse", true, 99.99, 128); }).find("got 128"),
            std::string::npos);
  EXPECT_NE(qt::error_message([&] { workflow::calibrate_weights(*m, "percentile", true, 101.0); }).find("got 101"),
            std::string::npos);
  for (auto& [n, l] : quant_linears(*m)) EXPECT_FALSE(l->weight_quantizer->has_amax()) << n;
}

TEST(Workflow, ReadCalibrationBatchesNamesWhatIsWrong) {
  const auto dir = std::filesystem::temp_directory_path() / ("qdqbert_calib_batches_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string p = (dir / "calib.safetensors").string();
  const at::Tensor ids = torch::ones({2, 5}, torch::kLong);
  io::save_safetensors(p, std::map<std::string, at::Tensor>{{"batch0_input_ids", ids}, {"batch1_input_ids", ids},
                                                            {"batch1_attention_mask", ids}, {"batch3_input_ids", ids}});
  auto batches = workflow::read_calibration_batches(p);
  ASSERT_EQ(batches.size(), 2u);  // batch3 is after a gap: reading stops at the first missing index
  EXPECT_TRUE(batches[1].attention_mask.defined());
  EXPECT_FALSE(batches[0].attention_mask.defined());
  io::save_safetensors(p, std::map<std::string, at::Tensor>{{"batch0_bogus", ids}});
  const std::string e = qt::error_message([&] { workflow::read_calibration_batches(p); });
  EXPECT_NE(e.find("batch0_bogus"), std::string::npos) << e;
  EXPECT_NE(e.find(p), std::string::npos) << e;
  io::save_safetensors(p, std::map<std::string, at::Tensor>{{"input_ids", ids}});
  EXPECT_NE(qt::error_message([&] { workflow::read_calibration_batches(p); }).find("no batch0_"), std::string::npos);
  std::filesystem::remove_all(dir);
}
