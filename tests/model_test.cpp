// Whole-model parity with the reference fixtures (tests/data/model): forward outputs, losses,
// hidden states, attentions, decoder cache, calibration, gradients, SGD steps, learn_amax.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "model_checks.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;

static std::vector<std::string> all_cases() { return qt::case_names("model", ""); }

class ModelFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelFixture, ForwardMatchesReference) { qt::check_forward(GetParam(), torch::kCPU); }

TEST_P(ModelFixture, CalibrationReproducesAmax) { qt::check_calibration(GetParam(), torch::kCPU); }

INSTANTIATE_TEST_SUITE_P(Reference, ModelFixture, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param; });

class TrainFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainFixture, GradientsMatchReference) { qt::check_training(GetParam(), torch::kCPU); }

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
