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
#include "onnx/graph_builder.h"

namespace qdqbert::onnx {

using namespace detail;  // GraphBuilder, add_io, the ::onnx proto names

namespace {

struct Encoded {
  std::string sequence_output, pooled;
};

// Names of the graph inputs a head reads (encoder_* only for decoders with cross-attention).
struct GraphInputs {
  std::string ids, mask, types, encoder_hidden, encoder_mask;
};

// (1 - mask) * finfo(float32).min for a float mask of any rank, as get_extended_attention_mask does.
std::string additive_mask(GraphBuilder& b, const std::string& m, const std::string& hint) {
  return b.op("Mul", {b.op("Sub", {b.const_f(1.f), m}, hint + "_inv"), b.const_f(std::numeric_limits<float>::lowest())},
              hint);
}

// [B, L] int mask -> [B, 1, 1, L] additive mask (times the causal [L, L] block for decoders).
std::string extended_mask(GraphBuilder& b, const Config& c, const std::string& mask, const std::string& seq,
                          const std::string& prefix) {
  std::string mf = b.op("Cast", {mask}, "mask_f");
  b.last_attr_int("to", TensorProto::FLOAT);
  std::string m4 = b.op("Unsqueeze", {mf, b.const_i64({1, 2})}, "mask4d");
  if (c.is_decoder) {
    // causal [L, L] lower-triangular block sliced from a max_position_embeddings table.
    at::Tensor tri = torch::tril(torch::ones({c.max_position_embeddings, c.max_position_embeddings}));
    std::string t = b.initializer(prefix + "causal_mask", tri);
    std::string rows = b.op("Slice", {t, b.const_i64({0}), seq, b.const_i64({0})}, "causal_rows");
    std::string blk = b.op("Slice", {rows, b.const_i64({0}), seq, b.const_i64({1})}, "causal");
    m4 = b.op("Mul", {m4, blk}, "mask_causal");
  }
  return additive_mask(b, m4, "ext_mask");
}

// Word + token-type + absolute position embeddings and their LayerNorm.
std::string embeddings(GraphBuilder& b, QDQBertEmbeddingsImpl& emb, const Config& c, const GraphInputs& in,
                       const std::string& seq, const std::string& p) {
  std::string word = b.op("Gather", {b.initializer(p + "embeddings.word_embeddings.weight", emb.word_embeddings->weight),
                                     in.ids},
                          "word_embeds");
  std::string tt = b.op("Gather", {b.initializer(p + "embeddings.token_type_embeddings.weight",
                                                 emb.token_type_embeddings->weight),
                                   in.types},
                        "type_embeds");
  std::string x = b.op("Add", {word, tt}, "emb_sum");
  if (c.position_embedding_type == "absolute") {
    // Positions 0..seq-1: slice the position table to the input's sequence length.
    std::string pos = b.op("Slice", {b.initializer(p + "embeddings.position_embeddings.weight",
                                                   emb.position_embeddings->weight),
                                     b.const_i64({0}), seq, b.const_i64({0})},
                           "pos_embeds");
    x = b.op("Add", {x, pos}, "emb_sum_pos");
  }
  return b.layer_norm(x, *emb.LayerNorm, p + "embeddings.LayerNorm");
}

// Dense + Q/DQ on both inputs of the residual add + LayerNorm (QDQBertSelfOutput / QDQBertOutput).
std::string residual(GraphBuilder& b, QDQBertResidualOutputImpl& o, const std::string& in, const std::string& res,
                     const std::string& name) {
  std::string h = b.quant_linear(in, *o.dense, name + "dense");
  std::string sum = b.op("Add", {b.qdq(h, o.add_local_input_quantizer, name + "add_local_input_quantizer"),
                                 b.qdq(res, o.add_residual_input_quantizer, name + "add_residual_input_quantizer")},
                         "residual");
  return b.layer_norm(sum, *o.LayerNorm, name + "LayerNorm");
}

// One (self or cross) attention block: scores, softmax, context and the output residual + LayerNorm.
// `kv` is the key/value source (x for self-attention, encoder_hidden_states for cross-attention); `mask`
// the additive mask; `seq_scalar` the 0-d sequence length (relative positions).
std::string attention(GraphBuilder& b, QDQBertAttentionImpl& a, const Config& c, const std::string& x,
                      const std::string& kv, const std::string& mask, const std::string& seq_scalar,
                      const std::string& name) {
  auto& sa = *a.self;
  const int64_t heads = sa.num_attention_heads, hs = sa.attention_head_size;
  TORCH_CHECK_VALUE(heads > 0, "onnx export: '", name, "' has every attention head pruned; nothing to export");
  const std::string ap = name + "self.";
  const std::string split_shape = b.const_i64({0, 0, heads, hs});
  auto to_heads = [&](const std::string& t, bool key) {
    std::string r = b.op("Reshape", {t, split_shape}, "heads");
    NodeProto* n = b.node("Transpose", {r}, {b.fresh("heads_t")});
    GraphBuilder::attr_ints(n, "perm", key ? std::vector<int64_t>{0, 2, 3, 1} : std::vector<int64_t>{0, 2, 1, 3});
    return n->output(0);
  };
  std::string q = to_heads(b.quant_linear(x, *sa.query, ap + "query"), false);
  std::string k = to_heads(b.quant_linear(kv, *sa.key, ap + "key"), true);  // [B, H, D, R]
  std::string v = to_heads(b.quant_linear(kv, *sa.value, ap + "value"), false);
  std::string scores = b.op("MatMul", {b.qdq(q, sa.matmul_q_input_quantizer, ap + "matmul_q_input_quantizer"),
                                       b.qdq(k, sa.matmul_k_input_quantizer, ap + "matmul_k_input_quantizer")},
                            "scores");
  if (c.position_embedding_type != "absolute") {
    // distance_embedding[l - r + max_positions - 1], [L, L, D], from the graph's own sequence length.
    std::string ar = b.op("Range", {b.const_i64_scalar(0), seq_scalar, b.const_i64_scalar(1)}, "positions");
    std::string l = b.op("Unsqueeze", {ar, b.const_i64({1})}, "pos_l");
    std::string r = b.op("Unsqueeze", {ar, b.const_i64({0})}, "pos_r");
    std::string dist = b.op("Add", {b.op("Sub", {l, r}, "pos_diff"), b.const_i64_scalar(c.max_position_embeddings - 1)},
                            "distance");
    std::string pe = b.op("Gather", {b.initializer(ap + "distance_embedding.weight", sa.distance_embedding->weight), dist},
                          "positional_embedding");
    NodeProto* rq = b.node("Einsum", {q, pe}, {b.fresh("relative_query")});
    GraphBuilder::attr_string(rq, "equation", "bhld,lrd->bhlr");
    scores = b.op("Add", {scores, rq->output(0)}, "scores_rel_q");
    if (c.position_embedding_type == "relative_key_query") {
      NodeProto* rk = b.node("Einsum", {k, pe}, {b.fresh("relative_key")});
      GraphBuilder::attr_string(rk, "equation", "bhdr,lrd->bhlr");
      scores = b.op("Add", {scores, rk->output(0)}, "scores_rel_k");
    }
  }
  const std::string sqrt_d = b.const_f(static_cast<float>(std::sqrt(static_cast<double>(hs))));
  scores = b.op("Add", {b.op("Div", {scores, sqrt_d}, "scores_scaled"), mask}, "scores_masked");
  NodeProto* sm = b.node("Softmax", {scores}, {b.fresh("probs")});
  GraphBuilder::attr_int(sm, "axis", -1);
  std::string ctx = b.op("MatMul", {b.qdq(sm->output(0), sa.matmul_a_input_quantizer, ap + "matmul_a_input_quantizer"),
                                    b.qdq(v, sa.matmul_v_input_quantizer, ap + "matmul_v_input_quantizer")},
                         "context");
  NodeProto* tr = b.node("Transpose", {ctx}, {b.fresh("context_t")});
  GraphBuilder::attr_ints(tr, "perm", {0, 2, 1, 3});
  ctx = b.op("Reshape", {tr->output(0), b.const_i64({0, 0, heads * hs})}, "context_merged");
  return residual(b, *a.output, ctx, x, name + "output.");
}

// Embeddings + encoder (+ pooler) for flattened [batch, seq] inputs.
Encoded encode(GraphBuilder& b, QDQBertModelImpl& m, const GraphInputs& in, const std::string& prefix) {
  const Config& c = m.config;
  const bool cross = !in.encoder_hidden.empty();
  TORCH_CHECK_VALUE(!cross || c.position_embedding_type == "absolute", "onnx export: cross-attention with "
                    "position_embedding_type '", c.position_embedding_type, "' is not supported for export");
  const std::string p = prefix;
  std::string shape = b.op("Shape", {in.ids}, "ids_shape");
  std::string seq = b.op("Gather", {shape, b.const_i64({1})}, "seq_len");         // [1]
  std::string seq_scalar = b.op("Gather", {shape, b.const_i64_scalar(1)}, "seq");  // 0-d
  std::string x = embeddings(b, *m.embeddings, c, in, seq, p);
  const std::string ext = extended_mask(b, c, in.mask, seq, p);
  std::string enc_ext;
  if (cross) {
    std::string em = b.op("Cast", {in.encoder_mask}, "encoder_mask_f");
    b.last_attr_int("to", TensorProto::FLOAT);
    enc_ext = additive_mask(b, b.op("Unsqueeze", {em, b.const_i64({1, 2})}, "encoder_mask4d"), "encoder_ext_mask");
  }
  for (size_t i = 0; i < m.encoder->layers->size(); ++i) {
    auto lay = m.encoder->layers->ptr<QDQBertLayerImpl>(i);
    const std::string lp = p + "encoder.layer." + std::to_string(i) + ".";
    std::string att = attention(b, *lay->attention, c, x, x, ext, seq_scalar, lp + "attention.");
    if (cross) {
      TORCH_CHECK_VALUE(lay->crossattention, "onnx export: layer ", i, " has no cross-attention");
      att = attention(b, *lay->crossattention, c, att, in.encoder_hidden, enc_ext, seq_scalar, lp + "crossattention.");
    }
    std::string inter = b.activation(b.quant_linear(att, *lay->intermediate->dense, lp + "intermediate.dense"),
                                     c.hidden_act, lp + "intermediate.act");
    x = residual(b, *lay->output, inter, att, lp + "output.");
  }
  Encoded e{x, ""};
  if (m.pooler) {
    std::string first = b.op("Gather", {x, b.const_i64_scalar(0)}, "first_token");
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
         Encoded e = encode(b, m, in, "");
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
         Encoded e = encode(b, *h.bert, in, "bert.");
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
         Encoded e = encode(b, *h.bert, in, "bert.");
         name_output(b, b.linear(e.pooled, h.classifier->weight, h.classifier->bias, "classifier"), "logits");
         return {{"logits", {"batch", std::to_string(h.config.num_labels())}}};
       }},
      {"next-sentence-prediction",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForNextSentencePredictionImpl>(root);
         Encoded e = encode(b, *h.bert, in, "bert.");
         name_output(b,
                     b.linear(e.pooled, h.cls->seq_relationship->weight, h.cls->seq_relationship->bias,
                              "cls.seq_relationship"),
                     "logits");
         return {{"logits", {"batch", "2"}}};
       }},
      {"multiple-choice",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForMultipleChoiceImpl>(root);
         Encoded e = encode(b, *h.bert, in, "bert.");
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
         Encoded e = encode(b, *h.bert, in, "bert.");
         name_output(b, b.linear(e.sequence_output, h.classifier->weight, h.classifier->bias, "classifier"),
                     "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.num_labels())}}};
       }},
      {"masked-lm",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertForMaskedLMImpl>(root);
         Encoded e = encode(b, *h.bert, in, "bert.");
         name_output(b, mlm_head(b, *h.cls, e.sequence_output, h.config), "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.vocab_size)}}};
       }},
      {"causal-lm",
       [](GraphBuilder& b, torch::nn::Module& root, const GraphInputs& in) -> Outputs {
         auto& h = as<QDQBertLMHeadModelImpl>(root);
         Encoded e = encode(b, *h.bert, in, "bert.");
         name_output(b, mlm_head(b, *h.cls, e.sequence_output, h.config), "logits");
         return {{"logits", {"batch", "sequence", std::to_string(h.config.vocab_size)}}};
       }},
  };
  return emitters;
}

std::string exportable_tasks() {
  std::string all;
  for (const auto& row : head_emitters()) all += (all.empty() ? "" : ", ") + row.first;
  return all;
}

}  // namespace

ExportReport export_model(TaskModel& model, const std::string& path, const ExportOptions& options) {
  TORCH_CHECK_VALUE(options.opset >= 13 && options.opset <= 17, "onnx export: opset must be in [13, 17], got ",
                    options.opset);
  const std::string cls = model.class_name();
  const std::string task = task_for_class(cls);
  auto emitter = head_emitters().find(task);
  TORCH_CHECK_VALUE(emitter != head_emitters().end(), "onnx export: no ONNX graph for ",
                    task.empty() ? "unregistered class " + cls : "task '" + task + "' (class " + cls + ")",
                    "; exportable tasks: ", exportable_tasks());
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
  GraphInputs in{ids, mask, types, "", ""};
  const Config& config = model.model_config();
  if (config.is_decoder && config.add_cross_attention) {
    // The full-sequence decoder forward with cross-attention: the encoder's states and padding mask.
    in.encoder_hidden = "encoder_hidden_states";
    in.encoder_mask = "encoder_attention_mask";
    add_io(g->add_input(), in.encoder_hidden, TensorProto::FLOAT,
           {"batch", "encoder_sequence", std::to_string(config.hidden_size)});
    add_io(g->add_input(), in.encoder_mask, TensorProto::INT64, {"batch", "encoder_sequence"});
    report.inputs.push_back(in.encoder_hidden);
    report.inputs.push_back(in.encoder_mask);
  }
  const Outputs outs = emitter->second(b, model.module(), in);
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
