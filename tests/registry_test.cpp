// The task registry as the one place a head is added (docs/architecture.md, "Adding a head"): a head
// defined here, outside the library, becomes loadable, savable, runnable and selectable by task name
// through nothing but register_task().
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "model_util.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/models/qdqbert.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/onnx/export.h"
#include "test_util.h"

namespace qdqbert {
namespace {

namespace fs = std::filesystem;

// A head the library does not have: one score per sequence from the pooled output.
class DummyScoreImpl : public QDQBertHead<DummyScoreImpl> {
 public:
  explicit DummyScoreImpl(const Config& c) : QDQBertHead(c) { reset(); }
  void reset() override {
    bert = register_module("bert", QDQBertModel(config));
    scorer = register_module("scorer", torch::nn::Linear(config.hidden_size, 1));
  }
  ModelOutput forward(const ModelInputs& in) {
    ModelOutput out;
    out.logits = scorer->forward(bert->forward(in).pooler_output);
    return out;
  }
  std::string class_name() const override { return "QDQBertForDummyScore"; }
  torch::nn::Linear scorer{nullptr};
};

const TaskSpec& dummy_spec() {
  static const bool registered = [] {
    register_task({"dummy-score", "QDQBertForDummyScore", "BertForDummyScore", {"logits"},
                   [](const Config& c) -> std::shared_ptr<TaskModel> { return std::make_shared<DummyScoreImpl>(c); }});
    return true;
  }();
  (void)registered;
  return task_spec("dummy-score");
}

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qdqbert_registry_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

ModelInputs inputs() {
  ModelInputs in;
  in.input_ids = torch::tensor({{2, 17, 33, 5, 3}, {2, 9, 3, 0, 0}}, torch::kLong);
  in.attention_mask = torch::tensor({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}}, torch::kLong);
  return in;
}

TEST(Registry, ARegisteredHeadIsFoundByTaskClassAndAlias) {
  const TaskSpec& s = dummy_spec();
  EXPECT_EQ(s.class_name, "QDQBertForDummyScore");
  EXPECT_EQ(task_for_class("QDQBertForDummyScore"), "dummy-score");
  EXPECT_EQ(task_for_class("BertForDummyScore"), "dummy-score");
  const auto names = task_names();
  EXPECT_EQ(names.back(), "dummy-score");
  EXPECT_EQ(onnx::output_names("dummy-score"), std::vector<std::string>{"logits"});
  // The built-in rows are untouched and keep their order.
  EXPECT_EQ(names.front(), "base");
  EXPECT_EQ(task_spec("question-answering").class_name, "QDQBertForQuestionAnswering");
}

TEST(Registry, ARegisteredHeadRunsSavesAndLoadsByItsArchitecture) {
  dummy_spec();
  torch::manual_seed(3);
  auto model = create_model("dummy-score", testing::tiny_config());
  ASSERT_EQ(model->class_name(), "QDQBertForDummyScore");
  model->module().eval();
  // Its encoder carries the library's quantizers like any head.
  EXPECT_FALSE(nn::list_quantizers(model->module()).empty());
  torch::NoGradGuard no_grad;
  const at::Tensor before = model->run(inputs()).logits;
  ASSERT_EQ(before.sizes(), (std::vector<int64_t>{2, 1}));

  const fs::path dir = scratch("roundtrip");
  io::save_pretrained(*model, dir.string());
  // from_pretrained picks the head from config.json's architectures, as for the built-in heads.
  io::LoadReport report;
  auto loaded = io::from_pretrained(dir.string(), {}, &report);
  EXPECT_EQ(loaded->class_name(), "QDQBertForDummyScore");
  EXPECT_TRUE(report.missing_keys.empty());
  EXPECT_TRUE(report.unexpected_keys.empty());
  EXPECT_TRUE(testing::tensors_equal(loaded->run(inputs()).logits, before, "logits"));
  fs::remove_all(dir);
}

TEST(Registry, CollisionsAndIncompleteRowsAreRefused) {
  dummy_spec();
  auto factory = [](const Config& c) -> std::shared_ptr<TaskModel> { return std::make_shared<DummyScoreImpl>(c); };
  const size_t rows = task_registry().size();
  for (const TaskSpec& bad : {TaskSpec{"question-answering", "QDQBertForX", "BertForX", {"logits"}, factory},
                              TaskSpec{"x", "QDQBertForQuestionAnswering", "", {"logits"}, factory},
                              TaskSpec{"x", "QDQBertForX", "BertForMaskedLM", {"logits"}, factory},
                              TaskSpec{"x", "", "", {"logits"}, factory}, TaskSpec{"x", "QDQBertForX", "", {}, factory},
                              TaskSpec{"x", "QDQBertForX", "", {"logits"}, nullptr}}) {
    try {
      register_task(bad);
      ADD_FAILURE() << "accepted task '" << bad.task << "' class '" << bad.class_name << "'";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("register_task"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(task_registry().size(), rows);
}

TEST(Registry, ExportOfAHeadWithoutAGraphNamesTheTask) {
  dummy_spec();
  auto model = create_model("dummy-score", testing::tiny_config());
  const fs::path dir = scratch("export");
  fs::create_directories(dir);
  try {
    onnx::export_model(*model, (dir / "model.onnx").string());
    ADD_FAILURE() << "exported a head the exporter has no graph for";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("dummy-score"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "model.onnx"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qdqbert
