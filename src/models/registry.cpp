// The task registry: one row per model class (include/qdqbert/models/qdqbert.h, TaskSpec).
#include <torch/torch.h>

#include "qdqbert/models/qdqbert.h"

namespace qdqbert {

namespace {
template <typename Impl>
std::shared_ptr<TaskModel> make(const Config& config) {
  return std::make_shared<Impl>(config);
}
}  // namespace

namespace {
std::deque<TaskSpec>& registry_rows() {
  static std::deque<TaskSpec> registry = {
      {"base", "QDQBertModel", "BertModel", {"last_hidden_state", "pooler_output"}, &make<QDQBertModelImpl>},
      {"causal-lm", "QDQBertLMHeadModel", "BertLMHeadModel", {"logits"}, &make<QDQBertLMHeadModelImpl>},
      {"masked-lm", "QDQBertForMaskedLM", "BertForMaskedLM", {"logits"}, &make<QDQBertForMaskedLMImpl>},
      {"next-sentence-prediction", "QDQBertForNextSentencePrediction", "BertForNextSentencePrediction",
       {"logits"}, &make<QDQBertForNextSentencePredictionImpl>},
      {"sequence-classification", "QDQBertForSequenceClassification", "BertForSequenceClassification",
       {"logits"}, &make<QDQBertForSequenceClassificationImpl>},
      {"multiple-choice", "QDQBertForMultipleChoice", "BertForMultipleChoice", {"logits"},
       &make<QDQBertForMultipleChoiceImpl>},
      {"token-classification", "QDQBertForTokenClassification", "BertForTokenClassification", {"logits"},
       &make<QDQBertForTokenClassificationImpl>},
      {"question-answering", "QDQBertForQuestionAnswering", "BertForQuestionAnswering",
       {"start_logits", "end_logits"}, &make<QDQBertForQuestionAnsweringImpl>},
  };
  return registry;
}
}  // namespace

const std::deque<TaskSpec>& task_registry() { return registry_rows(); }

void register_task(TaskSpec spec) {
  TORCH_CHECK_VALUE(!spec.task.empty() && !spec.class_name.empty() && !spec.outputs.empty() && spec.create,
                    "register_task: task '", spec.task, "' needs a task name, a class name, outputs and a factory");
  for (const auto& s : registry_rows()) {
    for (const std::string* name : {&spec.task, &spec.class_name, &spec.bert_class}) {
      if (name->empty()) continue;
      TORCH_CHECK_VALUE(*name != s.task && *name != s.class_name && *name != s.bert_class, "register_task: '", *name,
                        "' is already registered (task '", s.task, "', class ", s.class_name, ")");
    }
  }
  registry_rows().push_back(std::move(spec));
}

const TaskSpec& task_spec(const std::string& task) {
  for (const auto& s : task_registry()) {
    if (s.task == task) return s;
  }
  std::string all;
  for (const auto& s : task_registry()) all += (all.empty() ? "" : ", ") + s.task;
  TORCH_CHECK_VALUE(false, "unknown task '", task, "' (expected one of: ", all, ")");
}

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (const auto& s : task_registry()) out.push_back(s.task);
  return out;
}

std::shared_ptr<TaskModel> create_model(const std::string& task, const Config& config) {
  return task_spec(task).create(config);
}

std::string task_for_class(const std::string& class_name) {
  for (const auto& s : task_registry()) {
    if (s.class_name == class_name || s.bert_class == class_name) return s.task;
  }
  return "";
}

}  // namespace qdqbert
