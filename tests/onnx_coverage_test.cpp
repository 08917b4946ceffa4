// ONNX export of everything the library can run (README "ONNX export"): every activation Config accepts,
// relative position embeddings, pruned heads, learned amax, decoders with cross-attention and every model
// fixture case. Each graph runs in ONNX Runtime (BASIC and ALL) and in ONNX's reference evaluator
// (tests/onnx/check_onnx.py) against the LibTorch model in torch-native fake-quant mode, at the bounds of
// tests/onnx_test.cpp, and carries exactly one Q/DQ pair per enabled quantizer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "model_util.h"
#include "onnx_util.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/workflow/calibrate.h"

namespace qdqbert {
namespace {

namespace fs = std::filesystem;
namespace qt = qdqbert::testing;

// BASIC and the reference evaluator: within 1e-5 of LibTorch, as in tests/onnx_test.cpp, after the
// rounding-tie flips check_onnx.py may find (its docstring). ORT_ENABLE_ALL runs the int8 GEMMs exactly in
// integers (MatMulIntegerToFloat / QLinearMatMul) where LibTorch sums float32: on graphs whose quantized
// operands fall on exact .5 ties (a learned clip of 1.5 puts probs x V on a lattice) that moves outputs by
// a few int8 steps of the last layers, 0.0048 measured on the learn_amax fixture (Xeon, VNNI). 0.05 is ten
// times that and still far below what a wrong graph gives (every wrong op tried moved outputs by > 0.3).
constexpr double kAtol = 1e-5, kAllAtol = 0.05;

int64_t enabled_quantizers(TaskModel& m) {
  int64_t n = 0;
  for (const auto& q : nn::list_quantizers(m.module())) n += q.quantizer->is_enabled() ? 1 : 0;
  return n;
}

// Q/DQ pairs per encoder layer with every quantizer enabled: 20, plus 14 for a cross-attention block
// (q/k/v inputs and weights, 4 matmul inputs, the output dense input and weight, 2 residual-add inputs).
int64_t documented_q(const Config& c) {
  return c.num_hidden_layers * (20 + (c.is_decoder && c.add_cross_attention ? 14 : 0));
}

// Collects graphs in one scratch folder and checks them all in one python3 run.
class GraphSet {
 public:
  explicit GraphSet(const std::string& tag) : root_(qt::onnx_scratch(tag)) {}
  ~GraphSet() {
    if (std::getenv("QDQBERT_KEEP_ONNX") == nullptr) fs::remove_all(root_);  // keep them to debug a failure
  }

  // Exports `model` at each opset with fresh random inputs; `all_enabled` also checks the documented count.
  void add(TaskModel& model, const std::string& task, const std::string& tag, const std::vector<int64_t>& opsets,
           bool all_enabled = true) {
    const Config& c = model.model_config();
    const int64_t expect_q = enabled_quantizers(model);
    if (all_enabled) {
      EXPECT_EQ(expect_q, documented_q(c)) << tag;
    }
    for (int64_t opset : opsets) {
      const std::string dir = root_ + "/" + tag + "_opset" + std::to_string(opset);
      fs::create_directories(dir);
      onnx::ExportOptions o;
      o.opset = opset;
      const ModelInputs in = qt::random_onnx_inputs(c, 2, 12, task == "multiple-choice");
      const onnx::ExportReport r = qt::write_onnx_case(model, task, in, dir, o, expect_q);
      EXPECT_EQ(r.quantize_linear, expect_q) << tag;
      EXPECT_EQ(r.dequantize_linear, expect_q) << tag;
      dirs_.push_back(dir);
    }
  }

  void check() {
    const std::string r = qt::check_onnx_dirs(dirs_, kAtol, kAllAtol);
    EXPECT_EQ(r.rfind("OK", 0), 0u) << r;
    std::cout << r;
  }

 private:
  std::string root_;
  std::vector<std::string> dirs_;
};

std::vector<ModelInputs> calibration_batches(const Config& c, bool choices) {
  return {qt::random_onnx_inputs(c, 4, 16, choices), qt::random_onnx_inputs(c, 4, 16, choices)};
}

std::shared_ptr<TaskModel> calibrated_tiny(const std::string& task, const Config& c) {
  auto model = create_model(task, c);
  model->module().eval();
  workflow::calibrate(*model, calibration_batches(c, task == "multiple-choice"));
  return model;
}

TEST(OnnxCoverage, EveryActivationConfigAccepts) {
  GraphSet set("activations");
  for (const std::string& act : supported_activations()) {
    torch::manual_seed(11);
    Config c = qt::tiny_config();
    c.hidden_act = act;
    auto model = calibrated_tiny("base", c);
    // gelu_new, the common tanh approximation, also at opset 17.
    set.add(*model, "base", act, act == "gelu_new" ? std::vector<int64_t>{13, 17} : std::vector<int64_t>{13});
  }
  set.check();
}

TEST(OnnxCoverage, RelativePositionEmbeddingsWithDynamicSequenceLength) {
  GraphSet set("relative");
  for (const std::string type : {"relative_key", "relative_key_query"}) {
    torch::manual_seed(5);
    Config c = qt::tiny_config();
    c.position_embedding_type = type;
    auto model = calibrated_tiny("sequence-classification", c);
    set.add(*model, "sequence-classification", type, {13, 17});
  }
  set.check();
}

TEST(OnnxCoverage, PrunedHeadsKeepTheirOwnCountPerLayer) {
  torch::manual_seed(9);
  auto model = create_model("question-answering", qt::tiny_config());
  model->module().eval();
  auto* qa = dynamic_cast<QDQBertForQuestionAnsweringImpl*>(&model->module());
  ASSERT_NE(qa, nullptr);
  qa->bert->prune_heads({{0, {1, 2}}, {1, {3}}});
  ASSERT_EQ(qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(0)->attention->self->num_attention_heads, 2);
  ASSERT_EQ(qa->bert->encoder->layers->ptr<QDQBertLayerImpl>(1)->attention->self->num_attention_heads, 3);
  workflow::calibrate(*model, calibration_batches(model->model_config(), false));
  GraphSet set("pruned");
  set.add(*model, "question-answering", "pruned", {13, 17});
  set.check();
}

TEST(OnnxCoverage, LearnedAmaxExportsAsItsCurrentScaleWithItsClip) {
  // A calibrated model whose activation ranges are trained a few steps (QAT with --learn-amax), exported
  // while still learning and again after freezing: both graphs match LibTorch.
  torch::manual_seed(21);
  Config c = qt::tiny_config();
  c.set_num_labels(3);
  auto model = calibrated_tiny("sequence-classification", c);
  int64_t learning = 0;
  for (auto& q : nn::list_quantizers(model->module())) {
    if (q.role == nn::QuantizerRole::kLinearWeight || !q.quantizer->is_enabled()) continue;
    q.quantizer->start_learning_amax();
    ++learning;
  }
  ASSERT_GT(learning, 0);
  {
    // Max calibration leaves nothing above the clip bound, so its gradient would be zero: start the
    // bounds at half the calibrated range, as a user who trains them from a tight start would.
    torch::NoGradGuard g;
    for (auto& q : nn::list_quantizers(model->module())) {
      if (!q.quantizer->learn_amax()) continue;
      q.quantizer->clip->clip_value_min.mul_(0.5);
      q.quantizer->clip->clip_value_max.mul_(0.5);
    }
  }
  model->module().train();
  torch::optim::SGD opt(model->module().parameters(), torch::optim::SGDOptions(0.05));
  auto first_learning = [&] {
    for (auto& q : nn::list_quantizers(model->module())) {
      if (q.quantizer->learn_amax()) return q.quantizer;
    }
    return nn::TensorQuantizer{nullptr};
  };
  const at::Tensor before = first_learning()->clip->clip_value_max.detach().clone();
  for (int step = 0; step < 3; ++step) {
    ModelInputs in = qt::random_onnx_inputs(c, 4, 12, false);
    in.labels = torch::randint(0, 3, {4}, torch::kLong);
    opt.zero_grad();
    model->run(in).loss.backward();
    opt.step();
  }
  model->module().eval();
  EXPECT_FALSE(torch::equal(before, first_learning()->clip->clip_value_max.detach()))
      << "the clip bounds did not train";
  GraphSet set("learned_amax");
  set.add(*model, "sequence-classification", "learning", {13, 17});
  for (auto& q : nn::list_quantizers(model->module())) {
    if (q.quantizer->learn_amax()) q.quantizer->freeze_learned_amax();
  }
  set.add(*model, "sequence-classification", "frozen", {13});
  set.check();
}

TEST(OnnxCoverage, DecoderWithCrossAttention) {
  torch::manual_seed(13);
  Config c = qt::tiny_config();
  c.is_decoder = true;
  c.add_cross_attention = true;
  auto model = calibrated_tiny("causal-lm", c);
  GraphSet set("cross");
  set.add(*model, "causal-lm", "cross_attention", {13, 17});
  set.check();
}

TEST(OnnxCoverage, EveryModelFixtureCase) {
  // Dynamic-amax cases are calibrated first (a dynamic amax has no static Q/DQ); the 4-bit and
  // narrow-range cases are refusals (tests/onnx_test.cpp, OnnxExportErrors).
  GraphSet set("fixtures");
  int64_t exported = 0;
  for (const auto& name : qt::case_names("model", "")) {
    if (name == "token_cls_4bit_calib_max" || name == "qa_narrow_range_unsigned_probs") continue;
    SCOPED_TRACE(name);
    torch::manual_seed(17);
    auto c = qt::load_case(name);
    c.model->module().eval();
    const std::string task = c.spec["task"].get<std::string>();
    const std::string state = c.spec["quant"]["state"].get<std::string>();
    if (state == "dynamic") workflow::calibrate(*c.model, calibration_batches(c.config, task == "multiple-choice"));
    set.add(*c.model, task, name, {13}, /*all_enabled=*/state != "disabled");
    ++exported;
  }
  EXPECT_GE(exported, 16);
  set.check();
}

}  // namespace
}  // namespace qdqbert
