#pragma once
// Internal to src/onnx: the ONNX graph writer's node, initializer and Q/DQ helpers (GraphBuilder) and
// graph I/O declarations. Torch and libonnx; included by export.cpp only.
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/onnx/export.h"

namespace qdqbert::onnx::detail {

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
  std::string const_i64_scalar(int64_t v) { return initializer(fresh("const"), torch::tensor(v, torch::kLong)); }
  static void attr_string(NodeProto* n, const std::string& name, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  std::string const_i64(const std::vector<int64_t>& v) {
    return initializer(fresh("const"), torch::tensor(v, torch::kLong));
  }

  /// QuantizeLinear → DequantizeLinear for an enabled quantizer (or x itself when disabled).
  /// `weight` (the [out, in] tensor) is given for weight quantizers: without a stored amax they use the
  /// weight's own amax, which is constant, so it is exported like a stored one.
  std::string qdq(const std::string& x, const nn::TensorQuantizer& q, const std::string& qname,
                  int64_t weight_axis = -1, const at::Tensor& weight = {}) {
    if (!q->is_enabled()) return x;
    ++report_.enabled_quantizers;
    check_quantizer(q, qname, weight.defined());
    std::string in = x;
    if (q->learn_amax()) in = clip(x, q, qname);
    at::Tensor amax = export_amax(q, qname, weight);
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
    NodeProto* qn = node("QuantizeLinear", {in, s, zp}, {qo}, qname + ".QuantizeLinear");
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
      check_quantizer(q, name + "_quantizer", /*weight=*/true);
      if (q->learn_amax()) wt = wt.clamp(q->clip->clip_value_min.item<float>(), q->clip->clip_value_max.item<float>());
      at::Tensor amax = export_amax(q, name + "_quantizer", w.detach());
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
    return qdq(initializer(name, wt), q, name + "_quantizer", /*weight_axis=*/1, w.detach());
  }

  /// The amax the quantizer uses now: the stored one, or for a learned amax (Clip learner) the one its
  /// forward derives from the clip bounds, max(-clip_value_min, clip_value_max).
  static at::Tensor export_amax(const nn::TensorQuantizer& q, const std::string& name, const at::Tensor& weight) {
    at::Tensor amax = q->learn_amax() ? at::max(-q->clip->clip_value_min, q->clip->clip_value_max)
                                      : q->effective_amax(q->has_amax() ? at::Tensor() : weight);
    amax = amax.detach().to(torch::kCPU, torch::kFloat);
    TORCH_CHECK_VALUE(torch::isfinite(amax).all().item<bool>() && (amax >= 0).all().item<bool>(),
                      "onnx export: quantizer '", name, "' has a non-finite or negative amax (max ",
                      amax.max().item<float>(), ", min ", amax.min().item<float>(), ")");
    return amax;
  }
  /// A learned amax clips before quantizing (TensorQuantizer::forward); so does the graph, with the
  /// trained bounds as constants, as torch.onnx writes pytorch-quantization's Clip module.
  std::string clip(const std::string& x, const nn::TensorQuantizer& q, const std::string& qname) {
    const std::string lo = initializer(qname + ".clip_value_min", q->clip->clip_value_min.detach().reshape({}));
    const std::string hi = initializer(qname + ".clip_value_max", q->clip->clip_value_max.detach().reshape({}));
    return op("Clip", {x, lo, hi}, qname + ".clip");
  }

  void check_quantizer(const nn::TensorQuantizer& q, const std::string& name, bool weight) {
    if (q->learn_amax()) {
      TORCH_CHECK_VALUE(q->clip && q->clip->clip_value_min.numel() == 1 && q->clip->clip_value_max.numel() == 1,
                        "onnx export: quantizer '", name, "' learns its amax but has no scalar clip bounds");
      const float lo = q->clip->clip_value_min.item<float>(), hi = q->clip->clip_value_max.item<float>();
      TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "onnx export: quantizer '", name,
                        "' has learned clip bounds [", lo, ", ", hi, "]; they must be finite with min < max");
    } else if (!weight) {
      TORCH_CHECK_VALUE(q->has_amax(), "onnx export: quantizer '", name,
                        "' has no stored amax (dynamic amax cannot be a static Q/DQ): calibrate the model first");
    }
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

  /// Every activation Config accepts, op for op as apply_activation computes it (src/models/qdqbert.cpp).
  std::string activation(const std::string& x, const std::string& act, const std::string& name) {
    auto half_x_times_one_plus = [&](const std::string& t) {  // 0.5 * x * (1 + t)
      return op("Mul", {op("Mul", {x, const_f(0.5f)}, name + ".half"), op("Add", {t, const_f(1.f)}, name + ".one_plus")},
                name);
    };
    if (act == "gelu" || act == "gelu_python") {
      return half_x_times_one_plus(op("Erf", {op("Div", {x, const_f(static_cast<float>(std::sqrt(2.0)))}, name + ".div")}));
    }
    if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
      // tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))
      const std::string cube = op("Mul", {op("Pow", {x, const_f(3.f)}, name + ".cube"), const_f(0.044715f)}, name + ".c");
      const std::string inner = op("Mul", {op("Add", {x, cube}, name + ".sum"),
                                           const_f(static_cast<float>(std::sqrt(2.0 / M_PI)))},
                                   name + ".inner");
      return half_x_times_one_plus(op("Tanh", {inner}, name + ".tanh"));
    }
    if (act == "gelu_fast") {
      // tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))
      const std::string sq = op("Mul", {op("Mul", {x, const_f(0.044715f)}, name + ".c"), x}, name + ".cx2");
      const std::string inner = op("Mul", {op("Mul", {x, const_f(0.7978845608f)}, name + ".kx"),
                                           op("Add", {sq, const_f(1.f)}, name + ".one_plus_cx2")},
                                   name + ".inner");
      return half_x_times_one_plus(op("Tanh", {inner}, name + ".tanh"));
    }
    if (act == "quick_gelu") return op("Mul", {x, op("Sigmoid", {op("Mul", {x, const_f(1.702f)}, name + ".k")})}, name);
    if (act == "relu") return op("Relu", {x}, name);
    if (act == "relu6") return op("Clip", {x, const_f(0.f), const_f(6.f)}, name);
    if (act == "tanh") return op("Tanh", {x}, name);
    if (act == "sigmoid") return op("Sigmoid", {x}, name);
    if (act == "silu" || act == "swish") return op("Mul", {x, op("Sigmoid", {x}, name + ".sig")}, name);
    if (act == "mish") return op("Mul", {x, op("Tanh", {op("Softplus", {x}, name + ".softplus")}, name + ".tanh")}, name);
    if (act == "linear") return op("Identity", {x}, name);
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

inline void add_io(::onnx::ValueInfoProto* v, const std::string& name, int elem, const std::vector<std::string>& dims) {
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

}  // namespace qdqbert::onnx::detail
