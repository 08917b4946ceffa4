// Whole-model parity with the reference fixtures (tests/data/model): forward outputs, losses,
// hidden states, attentions, decoder cache, calibration, gradients, SGD steps, learn_amax.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model_util.h"
#include "qdqbert/workflow/calibrate.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;

static std::vector<std::string> all_cases() { return qt::case_names("model", ""); }

static bool is_forward_key(const std::string& k) {
  for (const char* p : {"amax.", "calib_", "grad.", "step", "final"}) {
    if (k.rfind(p, 0) == 0) return false;
  }
  return true;
}

class ModelFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelFixture, ForwardMatchesReference) {
  auto c = qt::load_case(GetParam());
  const double rtol = c.spec["rtol"], atol = c.spec["atol"];
  if (c.spec["mode"] == "train") GTEST_SUCCEED() << "training case: covered by the training tests";
  if (c.spec["mode"] == "train") return;
  if (c.inputs.count("step1_input_ids")) {
    // Incremental decoding: step 1 with use_cache, step 2 with its cache, and a full forward.
    torch::NoGradGuard g;
    ModelInputs s1 = qt::case_inputs(c, "step1_");
    s1.use_cache = true;
    ModelOutput o1 = c.model->run(s1);
    ModelInputs s2 = qt::case_inputs(c, "step2_");
    s2.use_cache = true;
    s2.past_key_values = o1.past_key_values;
    ModelOutput o2 = c.model->run(s2);
    ModelInputs full = qt::case_inputs(c, "full_");
    full.use_cache = false;
    ModelOutput of = c.model->run(full);
    std::map<std::string, at::Tensor> got;
    for (auto& [k, v] : o1.flatten("step1_")) got[k] = v;
    for (auto& [k, v] : o2.flatten("step2_")) got[k] = v;
    for (auto& [k, v] : of.flatten("full_")) got[k] = v;
    int checked = 0;
    for (const auto& [k, v] : c.expected) {
      if (k.rfind("step", 0) != 0 && k.rfind("full_", 0) != 0) continue;
      ASSERT_TRUE(got.count(k)) << "missing output " << k;
      EXPECT_TRUE(qt::tensors_close(got[k], v, rtol, atol, k));
      ++checked;
    }
    EXPECT_GE(checked, 3);
    return;
  }
  torch::NoGradGuard g;
  ModelOutput out = c.model->run(qt::case_inputs(c));
  std::map<std::string, at::Tensor> got;
  for (auto& [k, v] : out.flatten()) got[k] = v;
  int checked = 0;
  for (const auto& [k, v] : c.expected) {
    if (!is_forward_key(k)) continue;
    ASSERT_TRUE(got.count(k)) << "missing output " << k;
    EXPECT_TRUE(qt::tensors_close(got[k], v, rtol, atol, k));
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST_P(ModelFixture, CalibrationReproducesAmax) {
  auto spec = qt::read_json(qt::data_path("model/" + GetParam() + "/case.json"));
  if (spec["calibration"].is_null()) return;  // not a calibration case (nothing to check)
  auto c = qt::load_case(GetParam(), /*with_amax=*/false);
  workflow::CalibrationOptions o;
  const auto& cal = spec["calibration"];
  o.method = cal["method"];
  const auto& kw = cal["load_calib_amax_kwargs"];
  if (kw.contains("percentile")) o.amax_options.percentile = kw["percentile"];
  if (kw.contains("start_bin")) o.amax_options.start_bin = kw["start_bin"];
  if (kw.contains("stride")) o.amax_options.stride = kw["stride"];
  const bool was_training = c.model->module().is_training();
  workflow::calibrate(*c.model, qt::calib_batches(c), o);
  c.model->module().train(was_training);
  std::map<std::string, nn::TensorQuantizer> qs;
  for (auto& [n, q] : named_quantizers(c.model->module())) qs.emplace(n, q);
  int checked = 0;
  for (const auto& [k, v] : c.expected) {
    if (k.rfind("amax.", 0) != 0) continue;
    const std::string name = k.substr(5);
    ASSERT_TRUE(qs.count(name)) << "no quantizer " << name;
    at::Tensor got = qs.at(name)->amax();
    ASSERT_TRUE(got.defined()) << name << " was not calibrated";
    const std::string bw = "calib_bin_width." + name;
    if (c.expected.count(bw)) {
      // Histogram methods: an element may cross a bin edge through float32 noise (README §5).
      EXPECT_TRUE(qt::tensors_close(got, v, 1e-6, 2 * c.expected.at(bw).item<double>(), k));
    } else if (o.method == "max") {
      // A max of float32 activations: exact when every intermediate is bit-identical, which needs the
      // reference's BLAS kernel. Another kernel (OpenBLAS on AVX2 or AVX-512) sums in another order, so the
      // activations, and their max, carry the float32 rounding of the encoder (float32_encoder_rtol).
      EXPECT_TRUE(qt::tensors_close(got, v, qt::float32_encoder_rtol(c.config), 0.0, k));
    } else {
      EXPECT_TRUE(qt::tensors_close(got, v, spec["rtol"], spec["atol"], k));
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Reference, ModelFixture, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param; });

class TrainFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainFixture, GradientsMatchReference) {
  auto c = qt::load_case(GetParam());
  if (!c.expected.count("step0_loss")) {
    ModelOutput out = c.model->run(qt::case_inputs(c));
    out.loss.backward();
    std::map<std::string, at::Tensor> params;
    for (const auto& p : c.model->module().named_parameters()) params[p.key()] = p.value();
    int checked = 0;
    for (const auto& [k, v] : c.expected) {
      if (k.rfind("grad.", 0) == 0) {
        const std::string name = k.substr(5);
        ASSERT_TRUE(params.count(name)) << "no parameter " << name;
        EXPECT_TRUE(qt::tensors_close(params[name].grad(), v, c.spec["rtol"], c.spec["atol"], k));
        ++checked;
      } else if (k == "loss") {
        EXPECT_TRUE(qt::tensors_close(out.loss, v, c.spec["rtol"], c.spec["atol"], k));
      }
    }
    EXPECT_GT(checked, 0);
    return;
  }
  // The SGD loop the case describes (learning rate, momentum, weight decay, step count) over the
  // de-duplicated parameter list.
  const qt::SgdLoop loop = qt::sgd_loop(c);
  int loss_keys = 0;
  while (c.expected.count("step" + std::to_string(loss_keys) + "_loss")) ++loss_keys;
  ASSERT_EQ(loss_keys, loop.steps) << "call.forward says " << loop.steps << " steps, expected.safetensors has "
                                   << loss_keys << " stepK_loss keys";
  std::vector<at::Tensor> params;
  std::set<const void*> seen;
  for (const auto& p : c.model->module().parameters()) {
    if (seen.insert(p.unsafeGetTensorImpl()).second) params.push_back(p);
  }
  torch::optim::SGD opt(params,
                        torch::optim::SGDOptions(loop.lr).momentum(loop.momentum).weight_decay(loop.weight_decay));
  const double rtol = c.spec["rtol"], atol = c.spec["atol"];
  for (int k = 0; k < loop.steps; ++k) {
    opt.zero_grad();
    at::Tensor loss = c.model->run(qt::case_inputs(c)).loss;
    EXPECT_TRUE(qt::tensors_close(loss, c.expected.at("step" + std::to_string(k) + "_loss"), rtol, atol, "loss"));
    loss.backward();
    opt.step();
  }
  ModelOutput final_out = c.model->run(qt::case_inputs(c));
  std::map<std::string, at::Tensor> got;
  for (auto& [k, v] : final_out.flatten("final_")) got[k] = v;
  for (const auto& p : c.model->module().named_parameters()) got["final." + p.key()] = p.value();
  for (const auto& [k, v] : c.expected) {
    if (k.rfind("final", 0) != 0) continue;
    ASSERT_TRUE(got.count(k)) << "missing " << k;
    EXPECT_TRUE(qt::tensors_close(got[k], v, rtol, atol, k));
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, TrainFixture, ::testing::ValuesIn(qt::case_names("model", "train_")),
                         [](const auto& info) { return info.param; });

TEST(Model, BertBaseQaKeyListMatchesPython) {
  Config config;  // bert-base defaults
  for (const auto& [file, calibrated] : {std::pair{"keys_qa_bert_base_calibrated.txt", true},
                                         std::pair{"keys_qa_bert_base_dynamic.txt", false}}) {
    auto model = create_model("question-answering", config);
    if (calibrated) {
      for (auto& [n, q] : named_quantizers(model->module())) {
        const bool weight = n.find("_weight_quantizer") != std::string::npos;
        at::Tensor w = weight ? model->module().named_parameters()[n.substr(0, n.size() - 17) + "weight"] : at::Tensor();
        q->set_amax(weight ? w.detach().abs().amax({1}, true) : torch::tensor(1.f));
      }
    }
    std::vector<std::string> ours;
    for (auto& [k, v] : io::state_dict(model->module())) {
      std::string shape;
      for (auto s : v.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
      ours.push_back(k + "\t" + (v.scalar_type() == at::kFloat ? "F32" : "I64") + "\t[" + shape + "]");
    }
    std::sort(ours.begin(), ours.end());
    std::ifstream in(qt::data_path(std::string("model/") + file));
    std::vector<std::string> theirs;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) theirs.push_back(line);
    }
    std::sort(theirs.begin(), theirs.end());
    ASSERT_EQ(ours.size(), theirs.size()) << file;
    for (size_t i = 0; i < ours.size(); ++i) EXPECT_EQ(ours[i], theirs[i]) << file;
  }
}

TEST(Model, TrainingLoopIsReadFromTheCase) {
  qt::ModelCase c;
  c.name = "made_up";
  c.spec["call"]["forward"] =
      "model.train(); opt = torch.optim.SGD(model.parameters(), lr=2.5e-2) (momentum 0.9, weight_decay 0.01); "
      "repeat 5x: opt.zero_grad(); ...";
  const qt::SgdLoop loop = qt::sgd_loop(c);
  EXPECT_DOUBLE_EQ(loop.lr, 0.025);
  EXPECT_DOUBLE_EQ(loop.momentum, 0.9);
  EXPECT_DOUBLE_EQ(loop.weight_decay, 0.01);
  EXPECT_EQ(loop.steps, 5);
  c.spec["call"]["forward"] = "model.train(); opt = torch.optim.SGD(model.parameters()); repeat 3x";
  EXPECT_NE(qt::error_message([&] { qt::sgd_loop(c); }).find("lr"), std::string::npos);
}
