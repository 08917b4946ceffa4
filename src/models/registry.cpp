// The task registry: one row per model class (include/qdqbert/models/qdqbert.h, TaskSpec).
#include <unistd.h>

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

namespace {

// An upper estimate of the float32 bytes a model of `c` needs (embeddings, layers, an LM head and a
// label head), in 128-bit arithmetic: sizes from a config.json can be anything up to 2^63.
unsigned __int128 model_bytes_estimate(const Config& c) {
  using u128 = unsigned __int128;
  const u128 h = static_cast<u128>(c.hidden_size), i = static_cast<u128>(c.intermediate_size);
  const u128 embeddings = (static_cast<u128>(c.vocab_size) + static_cast<u128>(c.max_position_embeddings) +
                           static_cast<u128>(c.type_vocab_size)) * h;
  const u128 layer = (c.add_cross_attention ? 8 : 4) * h * h + 2 * h * i + 16 * h + i;
  const u128 heads = static_cast<u128>(c.vocab_size) * (h + 1) + h * h + h * static_cast<u128>(c.num_labels() + 1);
  return 4 * (embeddings + static_cast<u128>(c.num_hidden_layers) * layer + heads);
}

}  // namespace

std::shared_ptr<TaskModel> create_model(const std::string& task, const Config& config) {
  // Refused before any allocation, in our words: LibTorch would fail with "[enforce fail at alloc_cpu.cpp]"
  // or std::bad_alloc, naming neither the config nor the size at fault.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const unsigned __int128 memory = pages > 0 && page > 0 ? static_cast<unsigned __int128>(pages) * page : 0;
  const unsigned __int128 need = model_bytes_estimate(config);
  if (memory > 0 && need > memory) {
    const double gib = static_cast<double>(need) / (1024.0 * 1024.0 * 1024.0);
    TORCH_CHECK_VALUE(false, "create_model: this config needs about ", gib, " GiB of weights (vocab_size ",
                      config.vocab_size, ", hidden_size ", config.hidden_size, ", num_hidden_layers ",
                      config.num_hidden_layers, ", intermediate_size ", config.intermediate_size,
                      ", max_position_embeddings ", config.max_position_embeddings, ", num_labels ",
                      config.num_labels(), "), more than this machine's ",
                      static_cast<double>(memory) / (1024.0 * 1024.0 * 1024.0), " GiB of memory");
  }
  return task_spec(task).create(config);
}

std::string task_for_class(const std::string& class_name) {
  for (const auto& s : task_registry()) {
    if (s.class_name == class_name || s.bert_class == class_name) return s.task;
  }
  return "";
}

}  // namespace qdqbert
