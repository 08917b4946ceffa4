// QDQBERT prediction heads and task models (QDQBertLMHeadModel ... QDQBertForQuestionAnswering), in the
// order of transformers' modeling_qdqbert.py; losses follow the Python rules (ignore_index -100, problem_type).
#include <torch/torch.h>

#include "models/init_weights.h"
#include "qdqbert/error.h"
#include "qdqbert/models/qdqbert.h"

namespace qdqbert {

namespace F = torch::nn::functional;

// ------------------------------------------------------------------------------------------------
QDQBertPredictionHeadTransformImpl::QDQBertPredictionHeadTransformImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertPredictionHeadTransformImpl::reset() {
  dense = register_module("dense", torch::nn::Linear(config.hidden_size, config.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps)));
}
at::Tensor QDQBertPredictionHeadTransformImpl::forward(const at::Tensor& x) {
  return LayerNorm->forward(apply_activation(config.hidden_act, dense->forward(x)));
}

QDQBertLMPredictionHeadImpl::QDQBertLMPredictionHeadImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertLMPredictionHeadImpl::reset() {
  transform = register_module("transform", QDQBertPredictionHeadTransform(config));
  decoder = register_module("decoder", TiedLinear(config.hidden_size, config.vocab_size, /*bias=*/true));
  bias = register_parameter("bias", torch::zeros({config.vocab_size}));
  decoder->tie(decoder->weight, bias);  // decoder.bias is cls.predictions.bias, as in Python
}
at::Tensor QDQBertLMPredictionHeadImpl::forward(const at::Tensor& x) {
  return decoder->forward(transform->forward(x));
}

QDQBertOnlyMLMHeadImpl::QDQBertOnlyMLMHeadImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertOnlyMLMHeadImpl::reset() { predictions = register_module("predictions", QDQBertLMPredictionHead(config)); }

QDQBertOnlyNSPHeadImpl::QDQBertOnlyNSPHeadImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertOnlyNSPHeadImpl::reset() {
  seq_relationship = register_module("seq_relationship", torch::nn::Linear(config.hidden_size, 2));
}

// ------------------------------------------------------------------------------------------------
namespace {

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, int64_t ignore_index = -100) {
  return F::cross_entropy(logits, labels.to(torch::kLong), F::CrossEntropyFuncOptions().ignore_index(ignore_index));
}

void copy_base(ModelOutput& out, const ModelOutput& base) {
  out.hidden_states = base.hidden_states;
  out.attentions = base.attentions;
  out.cross_attentions = base.cross_attentions;
}

template <typename Head>
void finish_init(Head& h) {
  init_module_weights(h, h.config);
  h.tie_weights();
}

}  // namespace

QDQBertLMHeadModelImpl::QDQBertLMHeadModelImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertLMHeadModelImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, /*add_pooling_layer=*/false));
  cls = register_module("cls", QDQBertOnlyMLMHead(config));
}
void QDQBertLMHeadModelImpl::tie_weights() {
  if (config.tie_word_embeddings) cls->predictions->decoder->tie(bert->embeddings->word_embeddings->weight);
}
ModelOutput QDQBertLMHeadModelImpl::forward(const ModelInputs& in_) {
  ModelInputs in = in_;
  if (in.labels.defined()) in.use_cache = false;
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = cls->forward(base.last_hidden_state);
  if (in.labels.defined()) {
    at::Tensor shifted = out.logits.slice(1, 0, -1).contiguous();
    at::Tensor labels = in.labels.slice(1, 1).contiguous();
    out.loss = cross_entropy(shifted.view({-1, config.vocab_size}), labels.view(-1));
  }
  copy_base(out, base);
  out.past_key_values = base.past_key_values;
  return out;
}

QDQBertForMaskedLMImpl::QDQBertForMaskedLMImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForMaskedLMImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, /*add_pooling_layer=*/false));
  cls = register_module("cls", QDQBertOnlyMLMHead(config));
}
void QDQBertForMaskedLMImpl::tie_weights() {
  if (config.tie_word_embeddings) cls->predictions->decoder->tie(bert->embeddings->word_embeddings->weight);
}
ModelOutput QDQBertForMaskedLMImpl::forward(const ModelInputs& in) {
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = cls->forward(base.last_hidden_state);
  if (in.labels.defined()) out.loss = cross_entropy(out.logits.view({-1, config.vocab_size}), in.labels.view(-1));
  copy_base(out, base);
  return out;
}

QDQBertForNextSentencePredictionImpl::QDQBertForNextSentencePredictionImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForNextSentencePredictionImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, true));
  cls = register_module("cls", QDQBertOnlyNSPHead(config));
}
ModelOutput QDQBertForNextSentencePredictionImpl::forward(const ModelInputs& in) {
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = cls->forward(base.pooler_output);
  if (in.labels.defined()) out.loss = cross_entropy(out.logits.view({-1, 2}), in.labels.view(-1));
  copy_base(out, base);
  return out;
}

QDQBertForSequenceClassificationImpl::QDQBertForSequenceClassificationImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForSequenceClassificationImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, true));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(config.hidden_size, config.num_labels()));
}
ModelOutput QDQBertForSequenceClassificationImpl::forward(const ModelInputs& in) {
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = classifier->forward(dropout->forward(base.pooler_output));
  if (in.labels.defined()) {
    const int64_t n = config.num_labels();
    if (!config.problem_type) {
      const auto t = in.labels.scalar_type();
      config.problem_type = n == 1                                          ? "regression"
                            : (t == torch::kLong || t == torch::kInt) ? "single_label_classification"
                                                                            : "multi_label_classification";
    }
    if (*config.problem_type == "regression") {
      out.loss = n == 1 ? F::mse_loss(out.logits.squeeze(), in.labels.squeeze().to(out.logits.dtype()))
                        : F::mse_loss(out.logits, in.labels.to(out.logits.dtype()));
    } else if (*config.problem_type == "single_label_classification") {
      out.loss = cross_entropy(out.logits.view({-1, n}), in.labels.view(-1));
    } else {
      out.loss = F::binary_cross_entropy_with_logits(out.logits, in.labels.to(out.logits.dtype()));
    }
  }
  copy_base(out, base);
  return out;
}

QDQBertForMultipleChoiceImpl::QDQBertForMultipleChoiceImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForMultipleChoiceImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, true));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(config.hidden_size, 1));
}
ModelOutput QDQBertForMultipleChoiceImpl::forward(const ModelInputs& in_) {
  ModelInputs in = in_;
  const at::Tensor& ref = in.input_ids.defined() ? in.input_ids : in.inputs_embeds;
  TORCH_CHECK_VALUE(ref.defined() && ref.dim() >= 3 - (in.input_ids.defined() ? 0 : -1),
                    "QDQBertForMultipleChoice: inputs must be [batch, num_choices, seq]");
  const int64_t choices = ref.size(1);
  auto flat = [](at::Tensor& t) {
    if (t.defined()) t = t.reshape({-1, t.size(-1)});
  };
  flat(in.input_ids);
  flat(in.attention_mask);
  flat(in.token_type_ids);
  flat(in.position_ids);
  if (in.inputs_embeds.defined()) {
    in.inputs_embeds = in.inputs_embeds.reshape({-1, in.inputs_embeds.size(-2), in.inputs_embeds.size(-1)});
  }
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = classifier->forward(dropout->forward(base.pooler_output)).view({-1, choices});
  if (in.labels.defined()) out.loss = cross_entropy(out.logits, in.labels);
  copy_base(out, base);
  return out;
}

QDQBertForTokenClassificationImpl::QDQBertForTokenClassificationImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForTokenClassificationImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, /*add_pooling_layer=*/false));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(config.hidden_size, config.num_labels()));
}
ModelOutput QDQBertForTokenClassificationImpl::forward(const ModelInputs& in) {
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  out.logits = classifier->forward(dropout->forward(base.last_hidden_state));
  if (in.labels.defined()) {
    out.loss = cross_entropy(out.logits.view({-1, config.num_labels()}), in.labels.view(-1));
  }
  copy_base(out, base);
  return out;
}

QDQBertForQuestionAnsweringImpl::QDQBertForQuestionAnsweringImpl(const Config& c) : QDQBertHead(c) {
  config.validate();
  reset();
  finish_init(*this);
}
void QDQBertForQuestionAnsweringImpl::reset() {
  bert = register_module("bert", QDQBertModel(config, /*add_pooling_layer=*/false));
  qa_outputs = register_module("qa_outputs", torch::nn::Linear(config.hidden_size, config.num_labels()));
}
ModelOutput QDQBertForQuestionAnsweringImpl::forward(const ModelInputs& in) {
  TORCH_CHECK_VALUE(config.num_labels() == 2, "QDQBertForQuestionAnswering needs num_labels == 2, got ",
                    config.num_labels());
  ModelOutput base = bert->forward(in);
  ModelOutput out;
  at::Tensor logits = qa_outputs->forward(base.last_hidden_state);
  auto parts = logits.split(1, -1);
  out.start_logits = parts[0].squeeze(-1).contiguous();
  out.end_logits = parts[1].squeeze(-1).contiguous();
  if (in.start_positions.defined() && in.end_positions.defined()) {
    at::Tensor s = in.start_positions, e = in.end_positions;
    if (s.dim() > 1) s = s.squeeze(-1);
    if (e.dim() > 1) e = e.squeeze(-1);
    const int64_t ignored = out.start_logits.size(1);
    s = s.clamp(0, ignored);
    e = e.clamp(0, ignored);
    out.loss = (cross_entropy(out.start_logits, s, ignored) + cross_entropy(out.end_logits, e, ignored)) / 2;
  }
  copy_base(out, base);
  return out;
}

}  // namespace qdqbert
