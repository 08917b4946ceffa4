// QDQBERT encoder modules (embeddings, attention, layers, encoder, pooler, QDQBertModel), in the order of
// transformers' modeling_qdqbert.py; the heads are in heads.cpp, the task registry in registry.cpp. The
// forward math follows the Python operation for operation (same float32 ops in the same order), so outputs
// agree with the reference to ~1e-6.
#include "qdqbert/models/qdqbert.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <set>

#include "qdqbert/error.h"
#include "models/init_weights.h"
#include "qdqbert/ops/fake_quant.h"

namespace qdqbert {

namespace F = torch::nn::functional;

at::Tensor apply_activation(const std::string& name, const at::Tensor& x) {
  if (name == "gelu" || name == "gelu_python") return torch::gelu(x);
  if (name == "gelu_new" || name == "gelu_fast") {
    // NewGELUActivation / FastGELUActivation (tanh approximation, written out as in Python).
    if (name == "gelu_fast") return 0.5 * x * (1.0 + torch::tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)));
    return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3.0))));
  }
  if (name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu") return torch::relu(x);
  if (name == "relu6") return torch::clamp(x, 0, 6);
  if (name == "silu" || name == "swish") return torch::silu(x);
  if (name == "tanh") return torch::tanh(x);
  if (name == "sigmoid") return torch::sigmoid(x);
  if (name == "mish") return x * torch::tanh(F::softplus(x));
  if (name == "linear") return x;
  TORCH_CHECK_VALUE(false, "unknown activation '", name, "'");
}

// ------------------------------------------------------------------------------------------------
TiedLinearImpl::TiedLinearImpl(int64_t in, int64_t out, bool bias) : in_(in), out_(out), has_bias_(bias) { reset(); }

void TiedLinearImpl::reset() {
  weight = register_parameter("weight", torch::empty({out_, in_}));
  bias = has_bias_ ? register_parameter("bias", torch::zeros({out_})) : register_parameter("bias", {}, false);
  torch::NoGradGuard g;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

at::Tensor TiedLinearImpl::forward(const at::Tensor& x) { return F::linear(x, weight, bias); }

void TiedLinearImpl::tie(const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK_VALUE(w.sizes() == weight.sizes(), "tie: weight shape ", w.sizes(), " != ", weight.sizes());
  parameters_["weight"] = w;
  weight = w;
  if (b.defined()) {
    parameters_["bias"] = b;
    bias = b;
  }
}

// ------------------------------------------------------------------------------------------------
QDQBertEmbeddingsImpl::QDQBertEmbeddingsImpl(const Config& c) : config(c.structure()) { reset(); }

void QDQBertEmbeddingsImpl::reset() {
  auto we = torch::nn::EmbeddingOptions(config.vocab_size, config.hidden_size);
  if (config.pad_token_id && *config.pad_token_id >= 0 && *config.pad_token_id < config.vocab_size) {
    we.padding_idx(*config.pad_token_id);
  }
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(we));
  position_embeddings = register_module(
      "position_embeddings", torch::nn::Embedding(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps)));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
}

at::Tensor QDQBertEmbeddingsImpl::forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                                          const at::Tensor& position_ids, const at::Tensor& inputs_embeds,
                                          int64_t past_len) {
  TORCH_CHECK_VALUE(input_ids.defined() != inputs_embeds.defined(),
                    "QDQBertModel: give exactly one of input_ids and inputs_embeds");
  const auto input_shape = input_ids.defined() ? input_ids.sizes() : inputs_embeds.sizes().slice(0, 2);
  TORCH_CHECK_VALUE(input_shape.size() == 2, "QDQBertModel: input_ids must be [batch, seq], got ", input_shape);
  const int64_t seq = input_shape[1];
  TORCH_CHECK_VALUE(input_shape[0] > 0 && seq > 0, "QDQBertModel: the input is empty (shape ", input_shape,
                    "); give at least one token");
  const auto device = input_ids.defined() ? input_ids.device() : inputs_embeds.device();
  TORCH_CHECK_VALUE(past_len + seq <= config.max_position_embeddings, "QDQBertModel: sequence length ",
                    past_len + seq, " exceeds max_position_embeddings ", config.max_position_embeddings);
  if (input_ids.defined()) {
    const int64_t lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    TORCH_CHECK_INDEX(lo >= 0 && hi < config.vocab_size, "QDQBertModel: input_ids out of range [0, ",
                      config.vocab_size, "): min ", lo, ", max ", hi);
  }
  at::Tensor pos = position_ids.defined()
                       ? position_ids
                       : torch::arange(past_len, past_len + seq, torch::dtype(torch::kLong).device(device)).unsqueeze(0);
  if (position_ids.defined() && position_ids.numel() > 0 && config.position_embedding_type == "absolute") {
    const int64_t lo = position_ids.min().item<int64_t>(), hi = position_ids.max().item<int64_t>();
    TORCH_CHECK_INDEX(lo >= 0 && hi < config.max_position_embeddings, "QDQBertModel: position_ids out of range [0, ",
                      config.max_position_embeddings, ") (max_position_embeddings): min ", lo, ", max ", hi);
  }
  at::Tensor tt = token_type_ids.defined()
                      ? token_type_ids
                      : torch::zeros({input_shape[0], seq}, torch::dtype(torch::kLong).device(device));
  if (token_type_ids.defined()) {
    TORCH_CHECK_INDEX(tt.min().item<int64_t>() >= 0 && tt.max().item<int64_t>() < config.type_vocab_size,
                      "QDQBertModel: token_type_ids out of range [0, ", config.type_vocab_size, ")");
  }
  at::Tensor emb = inputs_embeds.defined() ? inputs_embeds : word_embeddings->forward(input_ids);
  emb = emb + token_type_embeddings->forward(tt);
  if (config.position_embedding_type == "absolute") emb = emb + position_embeddings->forward(pos);
  return dropout->forward(LayerNorm->forward(emb));
}

// ------------------------------------------------------------------------------------------------
namespace {
nn::TensorQuantizer input_quantizer(const Config& c) {
  return nn::TensorQuantizer(nn::TensorQuantizerOptions(c.input_desc()));
}
nn::QuantLinear quant_linear(const Config& c, int64_t in, int64_t out) {
  return nn::QuantLinear(nn::QuantLinearOptions(in, out).quant_desc_input(c.input_desc()).quant_desc_weight(
      c.weight_desc()));
}
}  // namespace

QDQBertSelfAttentionImpl::QDQBertSelfAttentionImpl(const Config& c)
    : config(c.structure()),
      num_attention_heads(c.num_attention_heads),
      attention_head_size(c.head_size()),
      all_head_size(c.num_attention_heads * c.head_size()) {
  reset();
}

void QDQBertSelfAttentionImpl::reset() {
  query = register_module("query", quant_linear(config, config.hidden_size, all_head_size));
  key = register_module("key", quant_linear(config, config.hidden_size, all_head_size));
  value = register_module("value", quant_linear(config, config.hidden_size, all_head_size));
  dropout = register_module("dropout", torch::nn::Dropout(config.attention_probs_dropout_prob));
  if (config.position_embedding_type != "absolute") {
    distance_embedding = register_module(
        "distance_embedding", torch::nn::Embedding(2 * config.max_position_embeddings - 1, attention_head_size));
  }
  matmul_q_input_quantizer = register_module("matmul_q_input_quantizer", input_quantizer(config));
  matmul_k_input_quantizer = register_module("matmul_k_input_quantizer", input_quantizer(config));
  matmul_v_input_quantizer = register_module("matmul_v_input_quantizer", input_quantizer(config));
  matmul_a_input_quantizer = register_module("matmul_a_input_quantizer", input_quantizer(config));
}

at::Tensor QDQBertSelfAttentionImpl::transpose_for_scores(const at::Tensor& x) const {
  return x.view({x.size(0), x.size(1), num_attention_heads, attention_head_size}).permute({0, 2, 1, 3});
}

AttentionResult QDQBertSelfAttentionImpl::forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask_in,
                                                  const at::Tensor& head_mask,
                                                  const at::Tensor& encoder_hidden_states,
                                                  const at::Tensor& encoder_attention_mask,
                                                  const std::vector<at::Tensor>& past, bool output_attentions) {
  const bool cross = encoder_hidden_states.defined();
  // Inference: query, key and value read the same hidden states, so when their input quantizers agree
  // (they see the same data when calibrated, so they usually do) the input is quantized once.
  const at::Tensor shared = cross ? at::Tensor() : quantize_shared_input(hidden_states);
  auto project = [&](nn::QuantLinear& l, const at::Tensor& x) {
    return shared.defined() ? l->forward_quantized_input(shared) : l->forward(x);
  };
  at::Tensor mixed_query = project(query, hidden_states);
  at::Tensor key_layer, value_layer, attention_mask = attention_mask_in;
  if (cross && !past.empty()) {
    key_layer = past[0];
    value_layer = past[1];
    attention_mask = encoder_attention_mask;
  } else if (cross) {
    key_layer = transpose_for_scores(key->forward(encoder_hidden_states));
    value_layer = transpose_for_scores(value->forward(encoder_hidden_states));
    attention_mask = encoder_attention_mask;
  } else if (!past.empty()) {
    key_layer = torch::cat({past[0], transpose_for_scores(project(key, hidden_states))}, 2);
    value_layer = torch::cat({past[1], transpose_for_scores(project(value, hidden_states))}, 2);
  } else {
    key_layer = transpose_for_scores(project(key, hidden_states));
    value_layer = transpose_for_scores(project(value, hidden_states));
  }
  at::Tensor query_layer = transpose_for_scores(mixed_query);
  mixed_query.reset();
  AttentionResult r;
  if (config.is_decoder) r.present = {key_layer, value_layer};

  // Activations nobody reads afterwards are handed to their quantizers (forward_consuming), which then
  // quantize them in place in inference; a tensor that is still referenced (present, output_attentions,
  // the relative position terms) is left as it is.
  const bool relative = config.position_embedding_type != "absolute";
  at::Tensor key_t = key_layer.transpose(-1, -2);
  if (!relative && !config.is_decoder) key_layer.reset();
  at::Tensor scores =
      torch::matmul(relative ? matmul_q_input_quantizer->forward(query_layer)
                             : matmul_q_input_quantizer->forward_consuming(std::move(query_layer)),
                    matmul_k_input_quantizer->forward_consuming(std::move(key_t)));
  if (relative) {
    const int64_t seq = hidden_states.size(1);
    auto opts = torch::dtype(torch::kLong).device(hidden_states.device());
    at::Tensor l = torch::arange(seq, opts).view({-1, 1});
    at::Tensor rr = torch::arange(seq, opts).view({1, -1});
    at::Tensor pe = distance_embedding->forward(l - rr + config.max_position_embeddings - 1).to(query_layer.dtype());
    if (config.position_embedding_type == "relative_key") {
      scores = scores + torch::einsum("bhld,lrd->bhlr", {query_layer, pe});
    } else {
      at::Tensor rq = torch::einsum("bhld,lrd->bhlr", {query_layer, pe});
      at::Tensor rk = torch::einsum("bhrd,lrd->bhlr", {key_layer, pe});
      scores = scores + rq + rk;
    }
  }
  scores = scores / std::sqrt(static_cast<double>(attention_head_size));
  if (attention_mask.defined()) scores = scores + attention_mask;
  at::Tensor probs = torch::softmax(scores, -1);
  probs = dropout->forward(probs);
  if (head_mask.defined()) probs = probs * head_mask;
  if (output_attentions) r.probs = probs;
  at::Tensor context = torch::matmul(matmul_a_input_quantizer->forward_consuming(std::move(probs)),
                                     matmul_v_input_quantizer->forward_consuming(std::move(value_layer)));
  context = context.permute({0, 2, 1, 3}).contiguous();
  r.context = context.view({context.size(0), context.size(1), all_head_size});
  return r;
}

at::Tensor QDQBertSelfAttentionImpl::quantize_shared_input(const at::Tensor& x) {
  if (at::GradMode::is_enabled() && x.requires_grad()) return {};  // training keeps one path per layer
  const c10::Device dev = x.device();
  const ops::PreparedAmax* q = query->input_quantizer->static_prepared(dev);
  const ops::PreparedAmax* k = key->input_quantizer->static_prepared(dev);
  const ops::PreparedAmax* v = value->input_quantizer->static_prepared(dev);
  if (q == nullptr || k == nullptr || v == nullptr || !ops::same_quantization(*q, *k) || !ops::same_quantization(*q, *v)) {
    return {};
  }
  return query->input_quantizer->forward(x);
}

void QDQBertSelfAttentionImpl::prune(const std::vector<int64_t>& heads) {
  std::set<int64_t> drop(heads.begin(), heads.end());
  std::vector<int64_t> keep;
  for (int64_t h = 0; h < num_attention_heads; ++h) {
    if (drop.count(h)) continue;
    for (int64_t d = 0; d < attention_head_size; ++d) keep.push_back(h * attention_head_size + d);
  }
  at::Tensor idx = torch::tensor(keep, torch::kLong);
  query->prune(idx, 0);
  key->prune(idx, 0);
  value->prune(idx, 0);
  num_attention_heads -= static_cast<int64_t>(drop.size());
  all_head_size = num_attention_heads * attention_head_size;
}

// ------------------------------------------------------------------------------------------------
QDQBertResidualOutputImpl::QDQBertResidualOutputImpl(const Config& c, int64_t in) : config(c.structure()), in_features(in) {
  reset();
}

void QDQBertResidualOutputImpl::reset() {
  dense = register_module("dense", quant_linear(config, in_features, config.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps)));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  add_local_input_quantizer = register_module("add_local_input_quantizer", input_quantizer(config));
  add_residual_input_quantizer = register_module("add_residual_input_quantizer", input_quantizer(config));
}

at::Tensor QDQBertResidualOutputImpl::forward(at::Tensor hidden_states, const at::Tensor& input_tensor) {
  at::Tensor h = dropout->forward(dense->forward_consuming(std::move(hidden_states)));
  // Both inputs quantized with fixed ranges: quantize and add in one pass (bit-identical; inference only,
  // fake_quant_add falls back to the unfused path where an input requires grad).
  const ops::PreparedAmax* pl = add_local_input_quantizer->static_prepared(h.device());
  const ops::PreparedAmax* pr = add_residual_input_quantizer->static_prepared(input_tensor.device());
  if (pl != nullptr && pr != nullptr) return LayerNorm->forward(ops::fake_quant_add(h, *pl, input_tensor, *pr));
  at::Tensor local = add_local_input_quantizer->forward(h);
  at::Tensor residual = add_residual_input_quantizer->forward(input_tensor);
  return LayerNorm->forward(local + residual);
}

// ------------------------------------------------------------------------------------------------
QDQBertAttentionImpl::QDQBertAttentionImpl(const Config& c) : config(c.structure()) { reset(); }

void QDQBertAttentionImpl::reset() {
  self = register_module("self", QDQBertSelfAttention(config));
  output = register_module("output", QDQBertResidualOutput(config, config.hidden_size));
}

AttentionResult QDQBertAttentionImpl::forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                              const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                              const at::Tensor& encoder_attention_mask,
                                              const std::vector<at::Tensor>& past, bool output_attentions) {
  AttentionResult r = self->forward(hidden_states, attention_mask, head_mask, encoder_hidden_states,
                                    encoder_attention_mask, past, output_attentions);
  r.context = output->forward(std::move(r.context), hidden_states);
  return r;
}

void QDQBertAttentionImpl::prune_heads(const std::vector<int64_t>& heads_in) {
  // Heads are given in the original numbering (like Python, which tracks pruned_heads).
  std::set<int64_t> already(pruned_heads.begin(), pruned_heads.end());
  std::vector<int64_t> current;
  for (int64_t h : heads_in) {
    TORCH_CHECK_INDEX(h >= 0 && h < config.num_attention_heads, "prune_heads: head ", h, " out of range [0, ",
                      config.num_attention_heads, ")");
    if (already.count(h)) continue;
    int64_t shift = 0;
    for (int64_t p : already) shift += p < h ? 1 : 0;
    current.push_back(h - shift);
  }
  if (current.empty()) return;
  const int64_t hs = self->attention_head_size;
  std::set<int64_t> drop(current.begin(), current.end());
  std::vector<int64_t> keep;
  for (int64_t h = 0; h < self->num_attention_heads; ++h) {
    if (drop.count(h)) continue;
    for (int64_t d = 0; d < hs; ++d) keep.push_back(h * hs + d);
  }
  self->prune(current);
  output->dense->prune(torch::tensor(keep, torch::kLong), 1);
  for (int64_t h : heads_in) already.insert(h);
  pruned_heads.assign(already.begin(), already.end());
}

// ------------------------------------------------------------------------------------------------
QDQBertIntermediateImpl::QDQBertIntermediateImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertIntermediateImpl::reset() {
  dense = register_module("dense", quant_linear(config, config.hidden_size, config.intermediate_size));
}
at::Tensor QDQBertIntermediateImpl::forward(const at::Tensor& x) {
  return apply_activation(config.hidden_act, dense->forward(x));
}

// ------------------------------------------------------------------------------------------------
QDQBertLayerImpl::QDQBertLayerImpl(const Config& c) : config(c.structure()) { reset(); }

void QDQBertLayerImpl::reset() {
  attention = register_module("attention", QDQBertAttention(config));
  if (config.add_cross_attention) {
    TORCH_CHECK_VALUE(config.is_decoder, "QDQBertLayer: cross attention is only supported for decoders");
    crossattention = register_module("crossattention", QDQBertAttention(config));
  }
  intermediate = register_module("intermediate", QDQBertIntermediate(config));
  output = register_module("output", QDQBertResidualOutput(config, config.intermediate_size));
}

LayerResult QDQBertLayerImpl::forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                      const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                      const at::Tensor& encoder_attention_mask,
                                      const std::vector<at::Tensor>& past, bool output_attentions) {
  std::vector<at::Tensor> self_past, cross_past;
  if (!past.empty()) {
    self_past = {past[0], past[1]};
    if (past.size() >= 4) cross_past = {past[past.size() - 2], past[past.size() - 1]};
  }
  AttentionResult sa =
      attention->forward(hidden_states, attention_mask, head_mask, {}, {}, self_past, output_attentions);
  LayerResult r;
  r.self_attention = sa.probs;
  r.present = sa.present;
  at::Tensor attention_output = sa.context;
  if (config.is_decoder && encoder_hidden_states.defined()) {
    TORCH_CHECK_VALUE(crossattention, "QDQBertLayer: encoder_hidden_states given but the model has no "
                                      "cross-attention layers (set add_cross_attention=true)");
    AttentionResult ca = crossattention->forward(attention_output, encoder_attention_mask, head_mask,
                                                 encoder_hidden_states, encoder_attention_mask, cross_past,
                                                 output_attentions);
    attention_output = ca.context;
    r.cross_attention = ca.probs;
    for (auto& t : ca.present) r.present.push_back(t);
  }
  // apply_chunking_to_forward: chunking along the sequence gives the same numbers (row-wise ops).
  if (config.chunk_size_feed_forward > 0 && attention_output.size(1) > config.chunk_size_feed_forward) {
    std::vector<at::Tensor> parts;
    for (const auto& chunk : attention_output.split(config.chunk_size_feed_forward, 1)) {
      parts.push_back(output->forward(intermediate->forward(chunk), chunk));
    }
    r.hidden_states = torch::cat(parts, 1);
  } else {
    r.hidden_states = output->forward(intermediate->forward(attention_output), attention_output);
  }
  return r;
}

// ------------------------------------------------------------------------------------------------
QDQBertEncoderImpl::QDQBertEncoderImpl(const Config& c) : config(c.structure()) { reset(); }

void QDQBertEncoderImpl::reset() {
  layer.clear();
  layers = torch::nn::ModuleList();
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layer.push_back(QDQBertLayer(config));
    layers->push_back(layer.back());
  }
  layers = register_module("layer", layers);
}

ModelOutput QDQBertEncoderImpl::forward(at::Tensor hidden_states, const at::Tensor& attention_mask,
                                        const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                        const at::Tensor& encoder_attention_mask, const PastKeyValues& past,
                                        bool use_cache, bool output_attentions, bool output_hidden_states) {
  ModelOutput out;
  // After clone() the ModuleList holds the copies; read layers from it.
  for (size_t i = 0; i < layers->size(); ++i) {
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    auto lay = layers->ptr<QDQBertLayerImpl>(i);
    at::Tensor hm = head_mask.defined() ? head_mask[static_cast<int64_t>(i)] : at::Tensor();
    static const std::vector<at::Tensor> kNone;
    const auto& p = i < past.size() ? past[i] : kNone;
    LayerResult r = lay->forward(hidden_states, attention_mask, hm, encoder_hidden_states, encoder_attention_mask, p,
                                 output_attentions);
    hidden_states = r.hidden_states;
    if (use_cache) out.past_key_values.push_back(r.present);
    if (output_attentions) {
      out.attentions.push_back(r.self_attention);
      if (config.add_cross_attention && r.cross_attention.defined()) out.cross_attentions.push_back(r.cross_attention);
    }
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  return out;
}

// ------------------------------------------------------------------------------------------------
QDQBertPoolerImpl::QDQBertPoolerImpl(const Config& c) : config(c.structure()) { reset(); }
void QDQBertPoolerImpl::reset() {
  dense = register_module("dense", torch::nn::Linear(config.hidden_size, config.hidden_size));
}
at::Tensor QDQBertPoolerImpl::forward(const at::Tensor& h) {
  return torch::tanh(dense->forward(h.select(1, 0)));
}

// ------------------------------------------------------------------------------------------------
QDQBertModelImpl::QDQBertModelImpl(const Config& c, bool pool) : config(c), add_pooling_layer(pool) {
  config.validate();
  reset();
  init_weights();
}

void QDQBertModelImpl::reset() {
  embeddings = register_module("embeddings", QDQBertEmbeddings(config));
  encoder = register_module("encoder", QDQBertEncoder(config));
  if (add_pooling_layer) pooler = register_module("pooler", QDQBertPooler(config));
}

void init_module_weights(torch::nn::Module& root, const Config& config) {
  torch::NoGradGuard g;
  const double std = config.initializer_range;
  // include_self=false: this runs inside constructors, before the module is owned by a shared_ptr
  // (the roots themselves own no parameters).
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* ql = m->as<nn::QuantLinearImpl>()) {
      ql->weight.normal_(0.0, std);
      if (ql->bias.defined()) ql->bias.zero_();
    } else if (auto* l = m->as<torch::nn::LinearImpl>()) {
      l->weight.normal_(0.0, std);
      if (l->bias.defined()) l->bias.zero_();
    } else if (auto* t = m->as<TiedLinearImpl>()) {
      t->weight.normal_(0.0, std);
      if (t->bias.defined()) t->bias.zero_();
    } else if (auto* e = m->as<torch::nn::EmbeddingImpl>()) {
      e->weight.normal_(0.0, std);
      if (e->options.padding_idx()) e->weight[*e->options.padding_idx()].zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNormImpl>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    } else if (auto* head = m->as<QDQBertLMPredictionHeadImpl>()) {
      head->bias.zero_();
    }
  }
}

void QDQBertModelImpl::init_weights() { init_module_weights(*this, config); }

void QDQBertModelImpl::prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  for (const auto& [l, heads] : heads_to_prune) {
    TORCH_CHECK_INDEX(l >= 0 && l < static_cast<int64_t>(encoder->layers->size()), "prune_heads: layer ", l,
                      " out of range");
    encoder->layers->ptr<QDQBertLayerImpl>(l)->attention->prune_heads(heads);
  }
}

namespace {

// (1 - mask) * finfo(float32).min, as get_extended_attention_mask / invert_attention_mask do.
at::Tensor to_additive(const at::Tensor& m) {
  return (1.0 - m.to(torch::kFloat)) * std::numeric_limits<float>::lowest();
}

at::Tensor extended_attention_mask(const at::Tensor& mask, int64_t batch, int64_t seq, bool is_decoder) {
  if (mask.dim() == 3) return to_additive(mask.unsqueeze(1));
  TORCH_CHECK_VALUE(mask.dim() == 2, "attention_mask must be [batch, seq] or [batch, seq, seq], got ", mask.sizes());
  if (!is_decoder) return to_additive(mask.unsqueeze(1).unsqueeze(2));
  at::Tensor ids = torch::arange(seq, torch::dtype(torch::kLong).device(mask.device()));
  at::Tensor causal = (ids.view({1, 1, seq}).repeat({batch, seq, 1}) <= ids.view({1, seq, 1})).to(mask.dtype());
  if (causal.size(1) < mask.size(1)) {
    const int64_t prefix = mask.size(1) - causal.size(1);
    causal = torch::cat({torch::ones({batch, seq, prefix}, causal.options()), causal}, -1);
  }
  return to_additive(causal.unsqueeze(1) * mask.unsqueeze(1).unsqueeze(2));
}

at::Tensor head_mask_5d(const at::Tensor& hm, int64_t layers) {
  if (!hm.defined()) return {};
  if (hm.dim() == 1) {
    return hm.unsqueeze(0).unsqueeze(0).unsqueeze(-1).unsqueeze(-1).expand({layers, -1, -1, -1, -1}).to(torch::kFloat);
  }
  TORCH_CHECK_VALUE(hm.dim() == 2 && hm.size(0) == layers, "head_mask must be [heads] or [num_layers, heads], got ",
                    hm.sizes());
  return hm.unsqueeze(1).unsqueeze(-1).unsqueeze(-1).to(torch::kFloat);
}

}  // namespace

ModelOutput QDQBertModelImpl::forward(const ModelInputs& in) {
  const bool output_attentions = in.output_attentions.value_or(config.output_attentions);
  const bool output_hidden_states = in.output_hidden_states.value_or(config.output_hidden_states);
  const bool use_cache = config.is_decoder ? in.use_cache.value_or(config.use_cache) : false;
  TORCH_CHECK_VALUE(in.input_ids.defined() || in.inputs_embeds.defined(),
                    "QDQBertModel: you have to specify either input_ids or inputs_embeds");
  TORCH_CHECK_VALUE(!(in.input_ids.defined() && in.inputs_embeds.defined()),
                    "QDQBertModel: you cannot specify both input_ids and inputs_embeds");
  const at::Tensor& ref = in.input_ids.defined() ? in.input_ids : in.inputs_embeds;
  TORCH_CHECK_VALUE(ref.dim() == (in.input_ids.defined() ? 2 : 3), "QDQBertModel: input of shape ", ref.sizes(),
                    " is not [batch, seq]", in.input_ids.defined() ? "" : "[, hidden]");
  const int64_t batch = ref.size(0), seq = ref.size(1);
  const int64_t past_len = in.past_key_values.empty() ? 0 : in.past_key_values[0][0].size(2);
  at::Tensor mask = in.attention_mask.defined()
                        ? in.attention_mask
                        : torch::ones({batch, seq + past_len}, torch::dtype(torch::kFloat).device(ref.device()));
  TORCH_CHECK_VALUE(mask.size(0) == batch && mask.size(-1) == seq + past_len, "QDQBertModel: attention_mask of shape ",
                    mask.sizes(), " does not match the input [", batch, ", ", seq + past_len, "]");
  at::Tensor ext = extended_attention_mask(mask, batch, seq, config.is_decoder);
  at::Tensor enc_ext;
  if (config.is_decoder && in.encoder_hidden_states.defined()) {
    at::Tensor em = in.encoder_attention_mask.defined()
                        ? in.encoder_attention_mask
                        : torch::ones({in.encoder_hidden_states.size(0), in.encoder_hidden_states.size(1)},
                                      torch::dtype(torch::kFloat).device(ref.device()));
    enc_ext = em.dim() == 3 ? to_additive(em.unsqueeze(1)) : to_additive(em.unsqueeze(1).unsqueeze(2));
  }
  at::Tensor hm = head_mask_5d(in.head_mask, config.num_hidden_layers);
  at::Tensor emb = embeddings->forward(in.input_ids, in.token_type_ids, in.position_ids, in.inputs_embeds, past_len);
  ModelOutput out = encoder->forward(emb, ext, hm, in.encoder_hidden_states, enc_ext, in.past_key_values, use_cache,
                                     output_attentions, output_hidden_states);
  if (pooler) out.pooler_output = pooler->forward(out.last_hidden_state);
  return out;
}

}  // namespace qdqbert
