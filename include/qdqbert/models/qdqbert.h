#pragma once
/// \file
/// The QDQBERT modules — C++ twins of transformers' modeling_qdqbert.py. Registered names are the
/// Python attribute names (checkpoint keys are the contract, see docs/architecture.md).

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qdqbert/config.h"
#include "qdqbert/models/outputs.h"
#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/nn/tensor_quantizer.h"

namespace qdqbert {

/// Applies a hidden_act by name (ACT2FN).
at::Tensor apply_activation(const std::string& name, const at::Tensor& x);

/// A plain float Linear whose weight can be tied to another parameter (the LM decoder).
class TiedLinearImpl : public torch::nn::Cloneable<TiedLinearImpl> {
 public:
  TiedLinearImpl(int64_t in, int64_t out, bool bias);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  /// Makes `weight` (and optionally `bias`) the given parameters (same tensors, shared storage).
  void tie(const at::Tensor& weight, const at::Tensor& bias = {});
  at::Tensor weight, bias;

 private:
  int64_t in_, out_;
  bool has_bias_;
};
TORCH_MODULE(TiedLinear);

class QDQBertEmbeddingsImpl : public torch::nn::Cloneable<QDQBertEmbeddingsImpl> {
 public:
  explicit QDQBertEmbeddingsImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids,
                     const at::Tensor& inputs_embeds, int64_t past_key_values_length = 0);
  Config config;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(QDQBertEmbeddings);

/// Self- or cross-attention output of one call.
struct AttentionResult {
  at::Tensor context;
  at::Tensor probs;                  ///< when output_attentions
  std::vector<at::Tensor> present;   ///< (key, value) when the model is a decoder
};

class QDQBertSelfAttentionImpl : public torch::nn::Cloneable<QDQBertSelfAttentionImpl> {
 public:
  explicit QDQBertSelfAttentionImpl(const Config& config);
  void reset() override;
  AttentionResult forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                          const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                          const at::Tensor& encoder_attention_mask, const std::vector<at::Tensor>& past_key_value,
                          bool output_attentions);
  /// Removes heads (indices into the current heads) from query/key/value, keeping the quantizers.
  void prune(const std::vector<int64_t>& heads);
  Config config;
  int64_t num_attention_heads, attention_head_size, all_head_size;
  nn::QuantLinear query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Embedding distance_embedding{nullptr};
  nn::TensorQuantizer matmul_q_input_quantizer{nullptr}, matmul_k_input_quantizer{nullptr},
      matmul_v_input_quantizer{nullptr}, matmul_a_input_quantizer{nullptr};

 private:
  at::Tensor transpose_for_scores(const at::Tensor& x) const;
  /// hidden_states quantized once for query, key and value (inference, their input quantizers agreeing),
  /// else undefined.
  at::Tensor quantize_shared_input(const at::Tensor& x);
};
TORCH_MODULE(QDQBertSelfAttention);

/// dense → dropout → LayerNorm(Q_local(x) + Q_residual(residual)): QDQBertSelfOutput / QDQBertOutput.
class QDQBertResidualOutputImpl : public torch::nn::Cloneable<QDQBertResidualOutputImpl> {
 public:
  QDQBertResidualOutputImpl(const Config& config, int64_t in_features);
  void reset() override;
  /// `hidden_states` by value: a temporary handed over is quantized in place in inference.
  at::Tensor forward(at::Tensor hidden_states, const at::Tensor& input_tensor);
  Config config;
  int64_t in_features;
  nn::QuantLinear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
  nn::TensorQuantizer add_local_input_quantizer{nullptr}, add_residual_input_quantizer{nullptr};
};
TORCH_MODULE(QDQBertResidualOutput);

class QDQBertAttentionImpl : public torch::nn::Cloneable<QDQBertAttentionImpl> {
 public:
  explicit QDQBertAttentionImpl(const Config& config);
  void reset() override;
  AttentionResult forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                          const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                          const at::Tensor& encoder_attention_mask, const std::vector<at::Tensor>& past_key_value,
                          bool output_attentions);
  /// Python `prune_heads`, but the quantizers (and their amax) survive.
  void prune_heads(const std::vector<int64_t>& heads);
  Config config;
  QDQBertSelfAttention self{nullptr};
  QDQBertResidualOutput output{nullptr};
  std::vector<int64_t> pruned_heads;
};
TORCH_MODULE(QDQBertAttention);

class QDQBertIntermediateImpl : public torch::nn::Cloneable<QDQBertIntermediateImpl> {
 public:
  explicit QDQBertIntermediateImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  Config config;
  nn::QuantLinear dense{nullptr};
};
TORCH_MODULE(QDQBertIntermediate);

struct LayerResult {
  at::Tensor hidden_states;
  at::Tensor self_attention, cross_attention;
  std::vector<at::Tensor> present;  ///< self k, v (+ cross k, v) for decoders
};

class QDQBertLayerImpl : public torch::nn::Cloneable<QDQBertLayerImpl> {
 public:
  explicit QDQBertLayerImpl(const Config& config);
  void reset() override;
  LayerResult forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask, const at::Tensor& head_mask,
                      const at::Tensor& encoder_hidden_states, const at::Tensor& encoder_attention_mask,
                      const std::vector<at::Tensor>& past_key_value, bool output_attentions);
  Config config;
  QDQBertAttention attention{nullptr}, crossattention{nullptr};
  QDQBertIntermediate intermediate{nullptr};
  QDQBertResidualOutput output{nullptr};
};
TORCH_MODULE(QDQBertLayer);

class QDQBertEncoderImpl : public torch::nn::Cloneable<QDQBertEncoderImpl> {
 public:
  explicit QDQBertEncoderImpl(const Config& config);
  void reset() override;
  /// `head_mask` is [num_layers, 1|heads, ...] or undefined.
  ModelOutput forward(at::Tensor hidden_states, const at::Tensor& attention_mask, const at::Tensor& head_mask,
                      const at::Tensor& encoder_hidden_states, const at::Tensor& encoder_attention_mask,
                      const PastKeyValues& past_key_values, bool use_cache, bool output_attentions,
                      bool output_hidden_states);
  Config config;
  std::vector<QDQBertLayer> layer;  ///< registered as "layer.<i>" through a ModuleList
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(QDQBertEncoder);

class QDQBertPoolerImpl : public torch::nn::Cloneable<QDQBertPoolerImpl> {
 public:
  explicit QDQBertPoolerImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& hidden_states);
  Config config;
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(QDQBertPooler);

/// What every model class offers the generic tooling (CLI, I/O, workflow, ONNX export).
class TaskModel {
 public:
  virtual ~TaskModel() = default;
  /// Runs the forward pass with Python keyword arguments; the fields of the head's output class.
  virtual ModelOutput run(const ModelInputs& inputs) = 0;
  virtual torch::nn::Module& module() = 0;
  virtual const Config& model_config() const = 0;
  /// Python class name, e.g. "QDQBertForQuestionAnswering".
  virtual std::string class_name() const = 0;
  /// Checkpoint prefix of the encoder ("bert." for heads, "" for QDQBertModel).
  virtual std::string base_prefix() const { return "bert."; }
  /// Re-ties shared weights after loading (LM heads).
  virtual void tie_weights() {}
};

class QDQBertModelImpl : public torch::nn::Cloneable<QDQBertModelImpl>, public TaskModel {
 public:
  explicit QDQBertModelImpl(const Config& config, bool add_pooling_layer = true);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  ModelOutput run(const ModelInputs& inputs) override { return forward(inputs); }
  torch::nn::Module& module() override { return *this; }
  const Config& model_config() const override { return config; }
  std::string class_name() const override { return "QDQBertModel"; }
  std::string base_prefix() const override { return ""; }
  /// Prunes heads: {layer: [heads]} (quantizers kept).
  void prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune);
  /// Python `_init_weights` over every submodule (normal(0, initializer_range) linears/embeddings,
  /// zero biases and padding row, LayerNorm 1/0).
  void init_weights();
  Config config;
  bool add_pooling_layer;
  QDQBertEmbeddings embeddings{nullptr};
  QDQBertEncoder encoder{nullptr};
  QDQBertPooler pooler{nullptr};
};
TORCH_MODULE(QDQBertModel);

class QDQBertPredictionHeadTransformImpl : public torch::nn::Cloneable<QDQBertPredictionHeadTransformImpl> {
 public:
  explicit QDQBertPredictionHeadTransformImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  Config config;
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(QDQBertPredictionHeadTransform);

class QDQBertLMPredictionHeadImpl : public torch::nn::Cloneable<QDQBertLMPredictionHeadImpl> {
 public:
  explicit QDQBertLMPredictionHeadImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  Config config;
  QDQBertPredictionHeadTransform transform{nullptr};
  TiedLinear decoder{nullptr};
  at::Tensor bias;
};
TORCH_MODULE(QDQBertLMPredictionHead);

/// QDQBertOnlyMLMHead (`cls.predictions`).
class QDQBertOnlyMLMHeadImpl : public torch::nn::Cloneable<QDQBertOnlyMLMHeadImpl> {
 public:
  explicit QDQBertOnlyMLMHeadImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& x) { return predictions->forward(x); }
  Config config;
  QDQBertLMPredictionHead predictions{nullptr};
};
TORCH_MODULE(QDQBertOnlyMLMHead);

/// QDQBertOnlyNSPHead (`cls.seq_relationship`).
class QDQBertOnlyNSPHeadImpl : public torch::nn::Cloneable<QDQBertOnlyNSPHeadImpl> {
 public:
  explicit QDQBertOnlyNSPHeadImpl(const Config& config);
  void reset() override;
  at::Tensor forward(const at::Tensor& pooled) { return seq_relationship->forward(pooled); }
  Config config;
  torch::nn::Linear seq_relationship{nullptr};
};
TORCH_MODULE(QDQBertOnlyNSPHead);

/// Shared shape of the task heads: `bert` + a head; `forward` returns the head's HF output fields.
template <typename Derived>
class QDQBertHead : public torch::nn::Cloneable<Derived>, public TaskModel {
 public:
  explicit QDQBertHead(Config config_) : config(std::move(config_)) {}
  ModelOutput run(const ModelInputs& inputs) override { return static_cast<Derived*>(this)->forward(inputs); }
  torch::nn::Module& module() override { return *this; }
  const Config& model_config() const override { return config; }
  Config config;
  QDQBertModel bert{nullptr};
};

class QDQBertLMHeadModelImpl : public QDQBertHead<QDQBertLMHeadModelImpl> {
 public:
  explicit QDQBertLMHeadModelImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertLMHeadModel"; }
  void tie_weights() override;
  QDQBertOnlyMLMHead cls{nullptr};
};
TORCH_MODULE(QDQBertLMHeadModel);

class QDQBertForMaskedLMImpl : public QDQBertHead<QDQBertForMaskedLMImpl> {
 public:
  explicit QDQBertForMaskedLMImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForMaskedLM"; }
  void tie_weights() override;
  QDQBertOnlyMLMHead cls{nullptr};
};
TORCH_MODULE(QDQBertForMaskedLM);

class QDQBertForNextSentencePredictionImpl : public QDQBertHead<QDQBertForNextSentencePredictionImpl> {
 public:
  explicit QDQBertForNextSentencePredictionImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForNextSentencePrediction"; }
  QDQBertOnlyNSPHead cls{nullptr};
};
TORCH_MODULE(QDQBertForNextSentencePrediction);

class QDQBertForSequenceClassificationImpl : public QDQBertHead<QDQBertForSequenceClassificationImpl> {
 public:
  explicit QDQBertForSequenceClassificationImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForSequenceClassification"; }
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(QDQBertForSequenceClassification);

class QDQBertForMultipleChoiceImpl : public QDQBertHead<QDQBertForMultipleChoiceImpl> {
 public:
  explicit QDQBertForMultipleChoiceImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForMultipleChoice"; }
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(QDQBertForMultipleChoice);

class QDQBertForTokenClassificationImpl : public QDQBertHead<QDQBertForTokenClassificationImpl> {
 public:
  explicit QDQBertForTokenClassificationImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForTokenClassification"; }
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(QDQBertForTokenClassification);

class QDQBertForQuestionAnsweringImpl : public QDQBertHead<QDQBertForQuestionAnsweringImpl> {
 public:
  explicit QDQBertForQuestionAnsweringImpl(const Config& config);
  void reset() override;
  ModelOutput forward(const ModelInputs& inputs);
  std::string class_name() const override { return "QDQBertForQuestionAnswering"; }
  torch::nn::Linear qa_outputs{nullptr};
};
TORCH_MODULE(QDQBertForQuestionAnswering);

/// One row of the task registry: everything the layers above need to know about a model class.
/// Adding a head = its class above + one row in task_registry() (src/models/registry.cpp), or, for a head
/// defined outside the library, one register_task() call; io (from_pretrained by `architectures`), the
/// CLI (`--task`) and the ONNX exporter (a graph per task name, src/onnx/export.cpp) read this table.
struct TaskSpec {
  std::string task;                  ///< CLI task name, e.g. "question-answering"
  std::string class_name;            ///< Python class, e.g. "QDQBertForQuestionAnswering"
  std::string bert_class;            ///< the plain transformers class with the same weights ("BertForQuestionAnswering")
  std::vector<std::string> outputs;  ///< output fields of a forward without labels (= the ONNX graph outputs)
  std::shared_ptr<TaskModel> (*create)(const Config& config);
};
/// Every model class, in the order of modeling_qdqbert.py, then the ones added by register_task().
/// A deque: rows never move, so references from task_spec() stay valid across registrations.
const std::deque<TaskSpec>& task_registry();
/// Adds a head defined outside the library (e.g. a user's task model). Error if the task, class or alias
/// name is already taken or a field is empty. Call it before the registry is used from several threads
/// (registration is not synchronised with readers).
void register_task(TaskSpec spec);
/// The row of `task`; error listing the known tasks.
const TaskSpec& task_spec(const std::string& task);

/// The task names of `qdqbert-cli` (base, masked-lm, causal-lm, sequence-classification,
/// next-sentence-prediction, multiple-choice, token-classification, question-answering).
std::vector<std::string> task_names();
/// Builds the model class of `task` (randomly initialised like Python); error for unknown tasks.
std::shared_ptr<TaskModel> create_model(const std::string& task, const Config& config);
/// Python class name (QDQBert* or the plain Bert* alias) → task name
/// ("QDQBertForQuestionAnswering" → "question-answering"); "" if unknown.
std::string task_for_class(const std::string& class_name);

}  // namespace qdqbert
