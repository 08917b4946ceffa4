// ONNX graph writer for every QDQBERT head. The graph mirrors the LibTorch forward in
// FakeQuantMode::kTorchNative op for op; see include/qdqbert/onnx/export.h.
#include "qdqbert/onnx/export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <typeinfo>

#include "qdqbert/build_config.h"
#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/models/qdqbert.h"

namespace qdqbert::onnx {

namespace {

using ::onnx::GraphProto;
using ::onnx::ModelProto;
using ::onnx::NodeProto;
using ::onnx::TensorProto;

class GraphBuilder {
 public:
  GraphBuilder(GraphProto* g, const ExportOptions& o, ExportReport& r) : g_(g), opts_(o), report_(r) {}

  std::string fresh(const std::string& base) { return base + "_" + std::to_string(counter_++); }

  NodeProto* node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                  const std::string& name = "") {
    NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? fresh(op) : name);
    for (const auto& i : in) n->add_input(i);
    for (const auto& o : out) n->add_output(o);
    return n;
  }
  std::string op(const std::string& type, const std::vector<std::string>& in, const std::string& hint = "") {
    const std::string out = fresh(hint.empty() ? type : hint);
    node(type, in, {out});
    return out;
  }
  static void attr_int(NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_ints(NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  static void attr_float(NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  /// Adds an initializer from a CPU tensor (float32 / int64 / int8), copying its bytes once.
  std::string initializer(const std::string& name, const at::Tensor& t_in) {
    at::Tensor t = t_in.detach().to(torch::kCPU).contiguous();
    TensorProto* p = g_->add_initializer();
    p->set_name(name);
    for (auto d : t.sizes()) p->add_dims(d);
    switch (t.scalar_type()) {
      case at::kFloat: p->set_data_type(TensorProto::FLOAT); break;
      case at::kLong: p->set_data_type(TensorProto::INT64); break;
      case at::kChar: p->set_data_type(TensorProto::INT8); break;
      default: TORCH_CHECK(false, "onnx export: unsupported initializer dtype ", t.scalar_type());
    }
    p->set_raw_data(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
    return name;
  }
  std::string const_f(float v) { return initializer(fresh("const"), torch::tensor(v)); }
  std::string const_i64(const std::vector<int64_t>& v) {
    return initializer(fresh("const"), torch::tensor(v, torch::kLong));
  }

  /// QuantizeLinear → DequantizeLinear for an enabled quantizer (or x itself when disabled).
  std::string qdq(const std::string& x, const nn::TensorQuantizer& q, const std::string& qname,
                  int64_t weight_axis = -1) {
    if (!q->is_enabled()) return x;
    ++report_.enabled_quantizers;
    check_quantizer(q, qname);
    at::Tensor amax = q->amax().detach().to(torch::kCPU, torch::kFloat);
    at::Tensor scale;
    int64_t axis = -1;
    if (amax.numel() == 1) {
      scale = (amax.reshape({}) / 127.0f);
    } else {
      at::Tensor sq = amax.squeeze();
      TORCH_CHECK_VALUE(sq.dim() == 1 && weight_axis >= 0, "onnx export: quantizer '", qname, "' has amax of shape ",
                        amax.sizes(), "; only per-tensor activations and per-row weights can be exported");
      scale = sq / 127.0f;
      axis = weight_axis;
    }
    scale = scale.masked_fill(scale == 0, 1.0f);
    const std::string s = initializer(qname + ".scale", scale);
    const std::string zp = initializer(qname + ".zero_point", torch::zeros(scale.sizes(), torch::kChar));
    const std::string qo = qname + ".quantized";
    const std::string dqo = qname + ".dequantized";
    NodeProto* qn = node("QuantizeLinear", {x, s, zp}, {qo}, qname + ".QuantizeLinear");
    NodeProto* dn = node("DequantizeLinear", {qo, s, zp}, {dqo}, qname + ".DequantizeLinear");
    if (axis >= 0) {
      attr_int(qn, "axis", axis);
      attr_int(dn, "axis", axis);
    }
    ++report_.quantize_linear;
    ++report_.dequantize_linear;
    return dqo;
  }

  /// A weight [out, in] emitted as [in, out] for MatMul, with its quantizer (per-row amax → axis 1).
  std::string weight(const at::Tensor& w, const nn::TensorQuantizer& q, const std::string& name) {
    at::Tensor wt = w.detach().t().contiguous();
    if (!q->is_enabled()) return initializer(name, wt);
    if (opts_.fold_weights) {
      ++report_.enabled_quantizers;
      check_quantizer(q, name + "_quantizer");
      at::Tensor amax = q->amax().detach().to(torch::kCPU, torch::kFloat);
      at::Tensor scale = amax.numel() == 1 ? amax.reshape({}) / 127.0f : amax.squeeze() / 127.0f;
      scale = scale.masked_fill(scale == 0, 1.0f);
      at::Tensor s_b = amax.numel() == 1 ? scale : scale.unsqueeze(0);  // broadcast over [in, out]
      at::Tensor qv = torch::clamp(torch::round(wt / s_b), -128, 127).to(torch::kChar);
      const std::string qi = initializer(name + ".int8", qv);
      const std::string s = initializer(name + ".scale", scale);
      const std::string zp = initializer(name + ".zero_point", torch::zeros(scale.sizes(), torch::kChar));
      NodeProto* dn = node("DequantizeLinear", {qi, s, zp}, {name + ".dequantized"}, name + ".DequantizeLinear");
      if (amax.numel() != 1) attr_int(dn, "axis", 1);
      ++report_.dequantize_linear;
      return name + ".dequantized";
    }
    return qdq(initializer(name, wt), q, name + "_quantizer", /*weight_axis=*/1);
  }

  void check_quantizer(const nn::TensorQuantizer& q, const std::string& name) {
    TORCH_CHECK_VALUE(!q->learn_amax(), "onnx export: quantizer '", name, "' learns its amax (call init/load a ",
                      "fixed amax first)");
    TORCH_CHECK_VALUE(q->has_amax(), "onnx export: quantizer '", name,
                      "' has no stored amax (dynamic amax cannot be a static Q/DQ): calibrate the model first");
    TORCH_CHECK_VALUE(q->num_bits() == 8, "onnx export: quantizer '", name, "' uses ", q->num_bits(),
                      " bits; TensorRT Q/DQ needs 8");
    TORCH_CHECK_VALUE(!q->is_unsigned(), "onnx export: quantizer '", name, "' is unsigned; TensorRT needs signed int8");
    TORCH_CHECK_VALUE(!q->narrow_range(), "onnx export: quantizer '", name,
                      "' uses narrow range [-127, 127]; ONNX/TensorRT int8 is full range [-128, 127]");
    TORCH_CHECK_VALUE(q->fake_quant(), "onnx export: quantizer '", name, "' is not a fake quantizer");
  }

  // x: [..., in] float; emits MatMul(qdq(x), qdq(W^T)) + bias.
  std::string quant_linear(const std::string& x, nn::QuantLinearImpl& l, const std::string& name) {
    const std::string xi = qdq(x, l.input_quantizer, name + "._input_quantizer");
    const std::string w = weight(l.weight, l.weight_quantizer, name + ".weight");
    std::string y = op("MatMul", {xi, w}, name + ".matmul");
    if (l.bias.defined()) y = op("Add", {y, initializer(name + ".bias", l.bias)}, name + ".out");
    return y;
  }
  std::string linear(const std::string& x, const at::Tensor& weight, const at::Tensor& bias,
                     const std::string& name) {
    std::string y = op("MatMul", {x, initializer(name + ".weight", weight.detach().t().contiguous())}, name + ".matmul");
    if (bias.defined()) y = op("Add", {y, initializer(name + ".bias", bias)}, name + ".out");
    return y;
  }

  std::string layer_norm(const std::string& x, torch::nn::LayerNormImpl& ln, const std::string& name) {
    const std::string w = initializer(name + ".weight", ln.weight);
    const std::string b = initializer(name + ".bias", ln.bias);
    const float eps = static_cast<float>(ln.options.eps());
    if (opts_.opset >= 17) {
      NodeProto* n = node("LayerNormalization", {x, w, b}, {name + ".out"}, name);
      attr_int(n, "axis", -1);
      attr_float(n, "epsilon", eps);
      return name + ".out";
    }
    auto mean = [&](const std::string& v) {
      NodeProto* n = node("ReduceMean", {v}, {fresh(name + ".mean")});
      attr_ints(n, "axes", {-1});
      attr_int(n, "keepdims", 1);
      return n->output(0);
    };
    const std::string mu = mean(x);
    const std::string d = op("Sub", {x, mu}, name + ".centered");
    const std::string var = mean(op("Mul", {d, d}, name + ".sq"));
    const std::string den = op("Sqrt", {op("Add", {var, const_f(eps)}, name + ".var_eps")}, name + ".std");
    return op("Add", {op("Mul", {op("Div", {d, den}, name + ".norm"), w}, name + ".scaled"), b}, name + ".out");
  }

  std::string activation(const std::string& x, const std::string& act, const std::string& name) {
    if (act == "gelu" || act == "gelu_python") {
      const std::string e = op("Erf", {op("Div", {x, const_f(static_cast<float>(std::sqrt(2.0)))}, name + ".div")});
      return op("Mul", {op("Mul", {x, const_f(0.5f)}, name + ".half"), op("Add", {e, const_f(1.f)}, name + ".erf1")},
                name + ".gelu");
    }
    if (act == "relu") return op("Relu", {x}, name);
    if (act == "tanh") return op("Tanh", {x}, name);
    if (act == "sigmoid") return op("Sigmoid", {x}, name);
    if (act == "silu" || act == "swish") return op("Mul", {x, op("Sigmoid", {x}, name + ".sig")}, name);
    TORCH_CHECK_VALUE(false, "onnx export: activation '", act, "' is not supported for export");
  }

  GraphProto* graph() { return g_; }
  /// Sets an int attribute on the node that produced `value` (the last node added).
  void last_attr_int(const std::string& name, int64_t v) { attr_int(g_->mutable_node(g_->node_size() - 1), name, v); }

 private:
  GraphProto* g_;
  const ExportOptions& opts_;
  ExportReport& report_;
  int64_t counter_ = 0;
};

void add_io(::onnx::ValueInfoProto* v, const std::string& name, int elem, const std::vector<std::string>& dims) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  auto* shape = tt->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    bool numeric = !d.empty() && std::all_of(d.begin(), d.end(), ::isdigit);
    if (numeric) dim->set_dim_value(std::stoll(d));
    else dim->set_dim_param(d);
  }
}

struct Encoded {
  std::string sequence_output, pooled;
};

// Embeddings + encoder (+ pooler) for flattened [batch, seq] inputs.
Encoded encode(GraphBuilder& b, QDQBertModelImpl& m, const std::string& ids, const std::string& mask,
               const std::string& types, const std::string& prefix) {
  const Config& c = m.config;
  TORCH_CHECK_VALUE(c.position_embedding_type == "absolute", "onnx export: position_embedding_type '",
                    c.position_embedding_type, "' is not supported for export");
  TORCH_CHECK_VALUE(!c.add_cross_attention, "onnx export: cross-attention models are not supported for export");
  const std::string p = prefix;
  auto& emb = *m.embeddings;
  std::string word = b.op("Gather", {b.initializer(p + "embeddings.word_embeddings.weight", emb.word_embeddings->weight), ids},
                          "word_embeds");
  std::string tt = b.op("Gather", {b.initializer(p + "embeddings.token_type_embeddings.weight",
                                                 emb.token_type_embeddings->weight), types}, "type_embeds");
  // Positions 0..seq-1: slice the position table to the input's sequence length.
  std::string shape = b.op("Shape", {ids}, "ids_shape");
  std::string seq = b.op("Gather", {shape, b.initializer(b.fresh("idx1"), torch::tensor(std::vector<int64_t>{1}))},
                         "seq_len");
  std::string pos = b.op("Slice", {b.initializer(p + "embeddings.position_embeddings.weight",
                                                 emb.position_embeddings->weight),
                                   b.const_i64({0}), seq, b.const_i64({0})},
                         "pos_embeds");
  std::string x = b.op("Add", {b.op("Add", {word, tt}, "emb_sum"), pos}, "emb_sum_pos");
  x = b.layer_norm(x, *emb.LayerNorm, p + "embeddings.LayerNorm");
  // Extended mask: (1 - mask) * finfo(float32).min, shape [B, 1, 1, L] (causal for decoders).
  std::string mf = b.op("Cast", {mask}, "mask_f");
  b.last_attr_int("to", TensorProto::FLOAT);
  std::string m4 = b.op("Unsqueeze", {mf, b.const_i64({1, 2})}, "mask4d");
  if (c.is_decoder) {
    // causal [L, L] lower-triangular block sliced from a max_position_embeddings table.
    at::Tensor tri = torch::tril(torch::ones({c.max_position_embeddings, c.max_position_embeddings}));
    std::string t = b.initializer(p + "causal_mask", tri);
    std::string rows = b.op("Slice", {t, b.const_i64({0}), seq, b.const_i64({0})}, "causal_rows");
    std::string blk = b.op("Slice", {rows, b.const_i64({0}), seq, b.const_i64({1})}, "causal");
    m4 = b.op("Mul", {m4, blk}, "mask_causal");
  }
  std::string ext = b.op("Mul", {b.op("Sub", {b.const_f(1.f), m4}, "mask_inv"),
                                 b.const_f(std::numeric_limits<float>::lowest())},
                         "ext_mask");
  const int64_t heads = c.num_attention_heads, hs = c.head_size(), hidden = c.hidden_size;
  const std::string split_shape = b.const_i64({0, 0, heads, hs});
  const std::string merge_shape = b.const_i64({0, 0, hidden});
  auto to_heads = [&](const std::string& t, bool key) {
    std::string r = b.op("Reshape", {t, split_shape}, "heads");
    NodeProto* n = b.node("Transpose", {r}, {b.fresh("heads_t")});
    GraphBuilder::attr_ints(n, "perm", key ? std::vector<int64_t>{0, 2, 3, 1} : std::vector<int64_t>{0, 2, 1, 3});
    return n->output(0);
  };
  const std::string inv_sqrt = b.const_f(static_cast<float>(std::sqrt(static_cast<double>(hs))));
  for (size_t i = 0; i < m.encoder->layers->size(); ++i) {
    auto lay = m.encoder->layers->ptr<QDQBertLayerImpl>(i);
    const std::string lp = p + "encoder.layer." + std::to_string(i) + ".";
    auto& sa = *lay->attention->self;
    TORCH_CHECK_VALUE(sa.num_attention_heads == heads, "onnx export: pruned heads are not supported for export");
    const std::string ap = lp + "attention.self.";
    std::string q = to_heads(b.quant_linear(x, *sa.query, ap + "query"), false);
    std::string k = to_heads(b.quant_linear(x, *sa.key, ap + "key"), true);
    std::string v = to_heads(b.quant_linear(x, *sa.value, ap + "value"), false);
    std::string scores = b.op("MatMul", {b.qdq(q, sa.matmul_q_input_quantizer, ap + "matmul_q_input_quantizer"),
                                         b.qdq(k, sa.matmul_k_input_quantizer, ap + "matmul_k_input_quantizer")},
                              "scores");
    scores = b.op("Add", {b.op("Div", {scores, inv_sqrt}, "scores_scaled"), ext}, "scores_masked");
    NodeProto* sm = b.node("Softmax", {scores}, {b.fresh("probs")});
    GraphBuilder::attr_int(sm, "axis", -1);
    std::string ctx = b.op("MatMul", {b.qdq(sm->output(0), sa.matmul_a_input_quantizer, ap + "matmul_a_input_quantizer"),
                                      b.qdq(v, sa.matmul_v_input_quantizer, ap + "matmul_v_input_quantizer")},
                           "context");
    NodeProto* tr = b.node("Transpose", {ctx}, {b.fresh("context_t")});
    GraphBuilder::attr_ints(tr, "perm", {0, 2, 1, 3});
    ctx = b.op("Reshape", {tr->output(0), merge_shape}, "context_merged");
    auto residual = [&](QDQBertResidualOutputImpl& o, const std::string& in, const std::string& res,
                        const std::string& name) {
      std::string h = b.quant_linear(in, *o.dense, name + "dense");
      std::string sum = b.op("Add", {b.qdq(h, o.add_local_input_quantizer, name + "add_local_input_quantizer"),
                                     b.qdq(res, o.add_residual_input_quantizer, name + "add_residual_input_quantizer")},
                             "residual");
      return b.layer_norm(sum, *o.LayerNorm, name + "LayerNorm");
    };
    std::string att = residual(*lay->attention->output, ctx, x, lp + "attention.output.");
    std::string inter = b.activation(b.quant_linear(att, *lay->intermediate->dense, lp + "intermediate.dense"),
                                     c.hidden_act, lp + "intermediate.act");
    x = residual(*lay->output, inter, att, lp + "output.");
  }
  Encoded e{x, ""};
  if (m.pooler) {
    std::string first = b.op("Gather", {x, b.initializer(b.fresh("idx0"), torch::tensor(int64_t{0}))}, "first_token");
    b.last_attr_int("axis", 1);
    e.pooled = b.op("Tanh", {b.linear(first, m.pooler->dense->weight, m.pooler->dense->bias, p + "pooler.dense")},
                    "pooled");
  }
  return e;
}

std::string mlm_head(GraphBuilder& b, QDQBertOnlyMLMHeadImpl& cls, const std::string& h, const Config& c) {
  auto& pr = *cls.predictions;
  std::string t = b.linear(h, pr.transform->dense->weight, pr.transform->dense->bias, "cls.predictions.transform.dense");
  t = b.activation(t, c.hidden_act, "cls.predictions.transform.act");
  t = b.layer_norm(t, *pr.transform->LayerNorm, "cls.predictions.transform.LayerNorm");
  return b.linear(t, pr.decoder->weight, pr.decoder->bias, "cls.predictions.decoder");
}

void name_output(GraphBuilder& b, const std::string& value, const std::string& name) {
  b.node("Identity", {value}, {name}, name + ".identity");
}

// The graph of each head after the encoder, keyed by the task registry's task name (one entry per
// exportable row of task_registry()). Each returns the graph outputs with their dims.
using Outputs = std::vector<std::pair<std::string, std::vector<std::string>>>;
struct GraphInputs {
  std::string ids, mask, types;
};
using HeadEmitter = Outputs (*)(GraphBuilder&, torch::nn::Module&, const GraphInputs&);

template <typename Impl>
Impl& as(torch::nn::Module& m) {
  auto* p = dynamic_cast<Impl*>(&m);
  TORCH_CHECK(p != nullptr, "onnx export: the model is not a ", typeid(Impl).name());
  return *p;
}

const std::map<std::string, HeadEmitter>& head_emitters() {
  static const std::map<std::string, HeadEmitter> emitters = {
      {"base",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& m = as<QDQBertModelImpl>(root);
         Encoded e = encode(b, m, in.ids, in.mask, in.types, "");
         name_output(b, e.sequence_output, "last_hidden_state");
         Outputs outs{{"last_hidden_state", {"batch", "sequence", std::to_string(m.config.hidden_size)}}};
         if (!e.pooled.empty()) {
           name_output(b, e.pooled, "pooler_output");
           outs.push_back({"pooler_output", {"batch", std::to_string(m.config.hidden_size)}});
         }
         return outs;
       }},
      {"question-answering",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForQuestionAnsweringImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         std::string logits = b.linear(e.sequence_output, h.qa_outputs->weight, h.qa_outputs->bias, "qa_outputs");
         NodeProto* sp = b.node("Split", {logits}, {"start_split", "end_split"}, "qa_split");
         GraphBuilder::attr_int(sp, "axis", -1);
         b.node("Squeeze", {"start_split", b.const_i64({-1})}, {"start_logits"}, "start_squeeze");
         b.node("Squeeze", {"end_split", b.const_i64({-1})}, {"end_logits"}, "end_squeeze");
         return {{"start_logits", {"batch", "sequence"}}, {"end_logits", {"batch", "sequence"}}};
       }},
      {"sequence-classification",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForSequenceClassificationImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         name_output(b, b.linear(e.pooled, h.classifier->weight, h.classifier->bias, "classifier"), "logits");
         return {{"logits", {"batch", std::to_string(h.config.num_labels())}}};
       }},
      {"next-sentence-prediction",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForNextSentencePredictionImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         name_output(b,
                     b.linear(e.pooled, h.cls->seq_relationship->weight, h.cls->seq_relationship->bias,
                              "cls.seq_relationship"),
                     "logits");
         return {{"logits", {"batch", "2"}}};
       }},
      {"multiple-choice",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForMultipleChoiceImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         std::string l = b.linear(e.pooled, h.classifier->weight, h.classifier->bias, "classifier");
         std::string c = b.op("Gather", {b.op("Shape", {"input_ids"}, "mc_in_shape"), b.const_i64({1})}, "mc_choices");
         std::string shape = b.op("Concat", {b.const_i64({-1}), c}, "mc_out_shape");
         b.last_attr_int("axis", 0);
         b.node("Reshape", {l, shape}, {"logits"}, "logits_reshape");
         return {{"logits", {"batch", "num_choices"}}};
       }},
      {"token-classification",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForTokenClassificationImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         name_output(b, b.linear(e.sequence_output, h.classifier->weight, h.classifier->bias, "classifier"),
                     "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.num_labels())}}};
       }},
      {"masked-lm",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForMaskedLMImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         name_output(b, mlm_head(b, *h.cls, e.sequence_output, h.config), "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.vocab_size)}}};
       }},
      {"causal-lm",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertLMHeadModelImpl>(root);
         Encoded e = encode(b, *h.bert, in.ids, in.mask, in.types, "bert.");
         name_output(b, mlm_head(b, *h.cls, e.sequence_output, h.config), "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.vocab_size)}}};
       }},
  };
  return emitters;
}

}  // namespace

ExportReport export_model(TaskModel& model, const std::string& path, const ExportOptions& options) {
  TORCH_CHECK_VALUE(options.opset >= 13 && options.opset <= 17, "onnx export: opset must be in [13, 17], got ",
                    options.opset);
  torch::NoGradGuard no_grad;
  ExportReport report;
  ModelProto mp;
  mp.set_ir_version(8);
  mp.set_producer_name("qdqbert");
  mp.set_producer_version(QDQBERT_VERSION_STRING);
  auto* opset = mp.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  GraphProto* g = mp.mutable_graph();
  g->set_name(model.class_name());
  GraphBuilder b(g, options, report);

  const std::string cls = model.class_name();
  const bool mc = cls == "QDQBertForMultipleChoice";
  const std::vector<std::string> dims = mc ? std::vector<std::string>{"batch", "num_choices", "sequence"}
                                           : std::vector<std::string>{"batch", "sequence"};
  for (const char* n : {"input_ids", "attention_mask", "token_type_ids"}) {
    add_io(g->add_input(), n, TensorProto::INT64, dims);
    report.inputs.push_back(n);
  }
  std::string ids = "input_ids", mask = "attention_mask", types = "token_type_ids";
  if (mc) {
    // Reshape [B, C, L] -> [B*C, L]: 0 copies a dim only from the same position, so use the last dim.
    std::string l = b.op("Gather", {b.op("Shape", {ids}, "mc_shape"), b.const_i64({2})}, "mc_len");
    std::string shape = b.op("Concat", {b.const_i64({-1}), l}, "mc_flat_shape");
    b.last_attr_int("axis", 0);
    ids = b.op("Reshape", {ids, shape}, "ids_flat");
    mask = b.op("Reshape", {mask, shape}, "mask_flat");
    types = b.op("Reshape", {types, shape}, "types_flat");
  }
  auto emitter = head_emitters().find(task_for_class(cls));
  TORCH_CHECK_VALUE(emitter != head_emitters().end(), "onnx export: unsupported model class ", cls);
  const Outputs outs = emitter->second(b, model.module(), {ids, mask, types});
  for (const auto& [n, d] : outs) {
    add_io(g->add_output(), n, TensorProto::FLOAT, d);
    report.outputs.push_back(n);
  }
  if (options.check) {
    try {
      ::onnx::checker::check_model(mp);
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "onnx export: the ONNX checker rejected the graph: ", e.what());
    }
  }
  try {
    io::AtomicFile out(path);
    TORCH_CHECK(mp.SerializeToFileDescriptor(out.fd()), "onnx export: cannot write '", path, "'");
    out.commit();
  } catch (const qdqbert::Error& e) {
    TORCH_CHECK(false, "onnx export: ", e.what());
  }
  return report;
}

}  // namespace qdqbert::onnx
