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

const std::vector<TaskSpec>& task_registry() {
  static const std::vector<TaskSpec> registry = {
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

const TaskSpec& task_spec(const std::string& task) {
  for (const auto& s : task_registry()) {
    if (s.task == task) return s;
  }
  std::string all;
  for (const auto& s : task_registry()) all += (all.empty() ? "" : ", ") + s.task;
  TORCH_CHECK_VALUE(false, "unknown task '", task, "' (expected one of: ", all, ")");
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& s : task_registry()) out.push_back(s.task);
    return out;
  }();
  return names;
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
