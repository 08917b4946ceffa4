// TensorQuantizer / QuantDescriptor / QuantLinear: parity with the tq_* fixtures and module behaviour.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qdqbert/error.h"
#include "qdqbert/nn/quant_descriptor_json.h"
#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/nn/tensor_quantizer.h"
#include "qdqbert/ops/fake_quant.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert::nn;

class TensorQuantizerFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorQuantizerFixture, MatchesReference) {
  const std::string dir = "quant/" + GetParam();
  const auto c = qt::read_json(qt::data_path(dir + "/case.json"));
  auto in = qdqbert::io::load_safetensors(qt::data_path(dir + "/inputs.safetensors"));
  auto ex = qdqbert::io::load_safetensors(qt::data_path(dir + "/expected.safetensors"));
  auto sd = qdqbert::io::load_safetensors(qt::data_path(dir + "/state_dict.safetensors"));
  QuantDescriptor desc;
  from_json(c["quant_desc"], desc);
  TensorQuantizer q{TensorQuantizerOptions(desc)};
  const std::string setup = c["setup"].is_null() ? "" : c["setup"].get<std::string>();
  if (setup == "tq.disable()") q->disable();
  if (setup.rfind("tq.amax = 1.25", 0) == 0) q->set_amax(1.25);

  // The module's state dict holds exactly the reference's keys and shapes.
  std::map<std::string, at::Tensor> state;
  for (const auto& p : q->named_parameters()) state[p.key()] = p.value();
  for (const auto& b : q->named_buffers()) state[b.key()] = b.value();
  ASSERT_EQ(state.size(), sd.size());
  for (const auto& [k, v] : sd) {
    ASSERT_TRUE(state.count(k)) << "missing state key " << k;
    EXPECT_TRUE(qt::tensors_equal(state[k], v, "state " + k));
  }

  at::Tensor x = in["x"].clone().requires_grad_(true);
  at::Tensor y = q->forward(x);
  EXPECT_TRUE(qt::tensors_equal(y, ex["output"], "output"));
  if (ex.count("amax_used")) {
    at::Tensor used = q->learn_amax() ? at::Tensor() : q->effective_amax(in["x"]);
    EXPECT_TRUE(qt::tensors_equal(used, ex["amax_used"], "amax_used"));
  }
  y.backward(in["grad_output"]);
  EXPECT_TRUE(qt::tensors_equal(x.grad(), ex["grad_input"], "grad_input"));
  if (ex.count("grad_clip_value_min")) {
    EXPECT_TRUE(qt::tensors_equal(q->clip->clip_value_min.grad(), ex["grad_clip_value_min"], "grad min"));
    EXPECT_TRUE(qt::tensors_equal(q->clip->clip_value_max.grad(), ex["grad_clip_value_max"], "grad max"));
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, TensorQuantizerFixture, ::testing::ValuesIn(qt::case_names("quant", "tq_")),
                         [](const auto& info) { return info.param; });

TEST(QuantDescriptor, DefaultsAndPredefined) {
  QuantDescriptor d;
  EXPECT_EQ(d.num_bits, 8);
  EXPECT_TRUE(d.fake_quant);
  EXPECT_FALSE(d.axis);
  EXPECT_EQ(d.calib_method, "max");
  EXPECT_FALSE(d.is_unsigned);
  EXPECT_FALSE(d.narrow_range);
  EXPECT_EQ(quant_desc_8bit_per_tensor(), QuantDescriptor());
  EXPECT_TRUE(quant_desc_unsigned_8bit_per_tensor().is_unsigned);
  EXPECT_EQ(*quant_desc_8bit_linear_weight_per_row().axis, std::vector<int64_t>{0});
  EXPECT_EQ(quant_desc_8bit_linear_weight_per_row().str(), "QuantDescriptor(8bit fake axis=0)");
  EXPECT_EQ(QuantDescriptor().with_axis(std::vector<int64_t>{0}).str(), "QuantDescriptor(8bit fake axis=(0,))");
  EXPECT_EQ(QuantDescriptor().str(), "QuantDescriptor(8bit fake axis= per-tensor)");
}

TEST(QuantDescriptor, JsonRoundTripAndErrors) {
  QuantDescriptor d = QuantDescriptor().with_num_bits(4).with_axis(std::vector<int64_t>{0, 2}).with_unsigned(true)
                          .with_calib_method("histogram").with_scale_amax(0.5).with_name("w");
  EXPECT_EQ(QuantDescriptor::from_json_string(d.to_json_string()), d);
  QuantDescriptor a = QuantDescriptor::from_json_string(R"({"num_bits": 8, "amax": [1.0, 2.0], "axis": 0})");
  EXPECT_EQ(a.amax->size(), 2u);
  EXPECT_TRUE(a.axis_is_int);
  EXPECT_THROW(QuantDescriptor::from_json_string(R"({"num_bitz": 8})"), qdqbert::Error);
  EXPECT_THROW(QuantDescriptor::from_json_string(R"({"num_bits": "eight"})"), qdqbert::Error);
  EXPECT_THROW(QuantDescriptor::from_json_string(R"({"learn_amax": true, "axis": [0]})"), qdqbert::Error);
  EXPECT_THROW(QuantDescriptor::from_json_string("{not json"), qdqbert::Error);
}

TEST(QuantDescriptor, PyFloatRepr) {
  EXPECT_EQ(py_float_repr(1.0), "1.0");
  EXPECT_EQ(py_float_repr(0.5), "0.5");
  EXPECT_EQ(py_float_repr(1e-5), "1e-05");
  EXPECT_EQ(py_float_repr(0.0001), "0.0001");
  EXPECT_EQ(py_float_repr(123456.0), "123456.0");
  EXPECT_EQ(py_float_repr(1e16), "1e+16");
  EXPECT_EQ(py_float_repr(0.1), "0.1");
  EXPECT_EQ(py_float_repr(-2.5), "-2.5");
}

static std::string printed(const torch::nn::Module& m) {
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}

TEST(TensorQuantizer, PrettyPrintMatchesPythonRepr) {
  TensorQuantizer q{TensorQuantizerOptions(QuantDescriptor())};
  EXPECT_EQ(printed(*q), "qdqbert::nn::TensorQuantizer(8bit fake per-tensor amax=dynamic calibrator=MaxCalibrator "
                         "scale=1.0 quant)");
  q->set_amax(2.64182);
  q->set_narrow_range(true);
  EXPECT_EQ(q->extra_repr(), "8bit narrow fake per-tensor amax=2.6418 calibrator=MaxCalibrator scale=1.0 quant");
  TensorQuantizer w{TensorQuantizerOptions(quant_desc_8bit_linear_weight_per_row())};
  w->set_amax(torch::tensor({0.5f, 1.25f, 3.f}).reshape({3, 1}));
  EXPECT_EQ(w->extra_repr(), "8bit fake axis=0 amax=[0.5000, 3.0000](3) calibrator=MaxCalibrator scale=1.0 quant");
  TensorQuantizer h(TensorQuantizerOptions(
      QuantDescriptor().with_unsigned(true).with_calib_method("histogram").with_scale_amax(0.5).with_num_bits(4)));
  h->enable_calib();
  h->disable_quant();
  EXPECT_EQ(h->extra_repr(), "unsigned 4bit fake per-tensor amax=dynamic *0.5 calibrator=HistogramCalibrator "
                             "scale=1.0 calib");
  TensorQuantizer l(TensorQuantizerOptions(QuantDescriptor().with_learn_amax(true).with_amax(2.f)));
  EXPECT_EQ(l->extra_repr(), "8bit fake per-tensor amax=2.0000 learned calibrator=MaxCalibrator scale=1.0 quant clip");
  l->disable();
  EXPECT_EQ(l->extra_repr(), "disabled");
}

TEST(TensorQuantizer, AmaxBufferRegistrationCloneAndShapeCheck) {
  TensorQuantizer q;
  EXPECT_EQ(q->named_buffers().size(), 0u) << "dynamic amax: no _amax in the state";
  q->set_amax(1.5);
  ASSERT_EQ(q->named_buffers().size(), 1u);
  EXPECT_EQ(q->named_buffers().begin()->key(), "_amax");
  EXPECT_EQ(q->amax().dim(), 0);
  EXPECT_THROW(q->set_amax(torch::ones({3})), c10::Error);
  auto copy = std::dynamic_pointer_cast<TensorQuantizerImpl>(q->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->amax().item<float>(), 1.5f);
  copy->set_amax(3.0);
  EXPECT_EQ(q->amax().item<float>(), 1.5f) << "clone() must not share amax storage";
  q->to(torch::kDouble);
  EXPECT_EQ(q->amax().scalar_type(), at::kDouble) << "_amax must move with .to()";
  q->clear_amax();
  EXPECT_FALSE(q->has_amax());
  EXPECT_EQ(q->named_buffers().size(), 0u);
  TensorQuantizer dyn;
  auto dyn_copy = std::dynamic_pointer_cast<TensorQuantizerImpl>(dyn->clone());
  EXPECT_FALSE(dyn_copy->has_amax());
}

TEST(TensorQuantizer, PreparedAmaxFollowsEveryChange) {
  torch::manual_seed(5);
  at::Tensor x = torch::randn({3, 16}) * 4;
  TensorQuantizer q;
  q->set_amax(2.0);
  torch::NoGradGuard no_grad;
  auto expect = [&](double amax, int64_t bits, bool narrow, const char* what) {
    EXPECT_TRUE(qt::tensors_equal(q->forward(x),
                                  qdqbert::ops::fake_tensor_quant(x, torch::tensor(amax), bits, false, narrow), what));
  };
  expect(2.0, 8, false, "first call");
  expect(2.0, 8, false, "cached call");
  q->amax().mul_(0.5);  // in place: bumps the version counter
  expect(1.0, 8, false, "in-place amax change");
  q->set_amax(3.0);
  expect(3.0, 8, false, "set_amax");
  q->set_num_bits(4);
  expect(3.0, 4, false, "num_bits");
  q->set_narrow_range(true);
  expect(3.0, 4, true, "narrow range");
  auto copy = std::dynamic_pointer_cast<TensorQuantizerImpl>(q->clone());
  copy->amax().fill_(0.25);
  EXPECT_TRUE(qt::tensors_equal(copy->forward(x),
                                qdqbert::ops::fake_tensor_quant(x, torch::tensor(0.25), 4, false, true), "clone"));
  expect(3.0, 4, true, "original after the clone changed");
  q->amax().fill_(NAN);
  EXPECT_NE(qt::error_message([&] { q->forward(x); }).find("NaN"), std::string::npos);
  TensorQuantizer scaled(TensorQuantizerOptions(QuantDescriptor().with_scale_amax(0.5).with_amax(2.f)));
  EXPECT_TRUE(qt::tensors_equal(scaled->forward(x),
                                qdqbert::ops::fake_tensor_quant(x, torch::tensor(1.f), 8, false, false), "scale_amax"));
}

TEST(TensorQuantizer, CalibrationFlowAndErrors) {
  TensorQuantizer q;
  q->disable_quant();
  q->enable_calib();
  at::Tensor x = torch::tensor({-3.f, 1.f, 2.f});
  EXPECT_TRUE(qt::tensors_equal(q->forward(x), x, "calib passes x through"));
  q->load_calib_amax();
  EXPECT_EQ(q->amax().item<float>(), 3.f);
  TensorQuantizer empty;
  try {
    empty->load_calib_amax("", {}, true, "bert.encoder.layer.0.output.dense._input_quantizer");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bert.encoder.layer.0.output.dense._input_quantizer"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("saw no data"), std::string::npos);
  }
  TensorQuantizer none(TensorQuantizerOptions(QuantDescriptor().with_calib_method("none")));
  EXPECT_THROW(none->enable_calib(), c10::Error);
  EXPECT_THROW(q->enable_clip(), c10::Error);
}

TEST(TensorQuantizer, NegativeAxisQuirkAndOptIn) {
  at::Tensor x = torch::randn({2, 3, 4});
  TensorQuantizer quirk(TensorQuantizerOptions(QuantDescriptor().with_axis(-1)));
  EXPECT_EQ(quirk->effective_amax(x).dim(), 0);
  TensorQuantizer fixed(TensorQuantizerOptions(QuantDescriptor().with_axis(-1)).normalize_negative_axes(true));
  EXPECT_EQ(fixed->effective_amax(x).sizes(), (std::vector<int64_t>{1, 1, 4}));
}

TEST(TensorQuantizer, TorchNativeModeAndStepSize) {
  TensorQuantizer q;
  q->set_amax(2.0);
  EXPECT_NEAR(q->step_size().item<float>(), 2.0 / 127, 1e-9);
  q->set_fake_quant_mode(FakeQuantMode::kTorchNative);
  at::Tensor x = torch::tensor({-2.02f, 0.5f});
  at::Tensor y = q->forward(x);
  EXPECT_NEAR(y[0].item<float>(), -128 * 2.0 / 127, 1e-6) << "full range reaches -128";
}

TEST(QuantLinear, NamesShapesAndForward) {
  QuantLinear lin(QuantLinearOptions(6, 4));
  std::vector<std::string> keys;
  for (const auto& p : lin->named_parameters()) keys.push_back(p.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"weight", "bias"}));
  std::vector<std::string> mods;
  for (const auto& m : lin->named_children()) mods.push_back(m.key());
  EXPECT_EQ(mods, (std::vector<std::string>{"_input_quantizer", "_weight_quantizer"}));
  EXPECT_EQ(*lin->weight_quantizer->axis(), std::vector<int64_t>{0});
  at::Tensor x = torch::randn({2, 3, 6});
  at::Tensor y = lin->forward(x);
  at::Tensor wq = qdqbert::ops::fake_tensor_quant(lin->weight, lin->weight.abs().amax({1}, true), 8, false, false);
  at::Tensor xq = qdqbert::ops::fake_tensor_quant(x, x.abs().max(), 8, false, false);
  EXPECT_TRUE(qt::tensors_close(y, torch::nn::functional::linear(xq, wq, lin->bias), 1e-6, 1e-6, "linear"));
  EXPECT_THROW(lin->forward(torch::randn({2, 5})), c10::Error);
  EXPECT_THROW(QuantLinear(QuantLinearOptions(2, 2).quant_desc_input(QuantDescriptor().with_fake_quant(false))),
               c10::Error);
}

TEST(QuantLinear, EvalWeightCacheIsInvalidated) {
  QuantLinear lin(QuantLinearOptions(8, 8));
  lin->weight_quantizer->set_amax(lin->weight.detach().abs().amax({1}, true));
  lin->eval();
  torch::NoGradGuard no_grad;
  at::Tensor x = torch::randn({3, 8});
  at::Tensor y1 = lin->forward(x);
  EXPECT_TRUE(qt::tensors_equal(lin->forward(x), y1, "cached"));
  lin->weight.mul_(0.5);  // in-place change bumps the version counter
  at::Tensor y2 = lin->forward(x);
  EXPECT_FALSE(y2.equal(y1));
  lin->weight_quantizer->set_amax(lin->weight.abs().amax({1}, true) * 0.1);
  at::Tensor y3 = lin->forward(x);
  EXPECT_FALSE(y3.equal(y2));
  lin->weight_quantizer->disable();
  EXPECT_TRUE(qt::tensors_close(lin->forward(x), torch::nn::functional::linear(
                                                     qdqbert::ops::fake_tensor_quant(x, x.abs().max(), 8, false, false),
                                                     lin->weight, lin->bias),
                                1e-6, 1e-6, "disabled weight quantizer"));
}

TEST(QuantLinear, ProcessWideDefaults) {
  const QuantDescriptor saved = default_quant_desc_input();
  set_default_quant_desc_input(QuantDescriptor().with_num_bits(4).with_calib_method("histogram"));
  QuantLinear lin(QuantLinearOptions(2, 2));
  set_default_quant_desc_input(saved);
  EXPECT_EQ(lin->input_quantizer->num_bits(), 4);
  EXPECT_EQ(lin->input_quantizer->calibrator()->name(), "HistogramCalibrator");
  EXPECT_EQ(QuantLinear(QuantLinearOptions(2, 2))->input_quantizer->num_bits(), 8);
}

// forward_consuming: in place only when the caller's handle is the only one and nothing needs the input
// for autograd; the bits are forward's either way.
TEST(TensorQuantizer, ForwardConsumingQuantizesInPlaceOnlyWhenNothingElseSeesTheInput) {
  torch::manual_seed(5);
  TensorQuantizer q(TensorQuantizerOptions(QuantDescriptor().with_amax(2.f)));
  const at::Tensor x = torch::randn({4, 33, 17}) * 3;
  const at::Tensor expected = q->forward(x);
  auto bits = [](const at::Tensor& t) { return t.contiguous().view(at::kInt); };

  at::Tensor sole = x.clone();
  const void* memory = sole.data_ptr();
  const at::Tensor out = q->forward_consuming(std::move(sole));
  EXPECT_EQ(out.data_ptr(), memory);  // written over the input
  EXPECT_TRUE(torch::equal(bits(out), bits(expected)));

  // A permuted dense view that owns its storage alone (the attention's heads) keeps its strides.
  at::Tensor heads = x.clone().permute({0, 2, 1});
  const at::Tensor heads_out = q->forward_consuming(std::move(heads));
  EXPECT_TRUE(torch::equal(bits(heads_out), bits(expected.permute({0, 2, 1}))));

  // Another handle on the tensor, or on its storage through a view: left alone.
  at::Tensor shared = x.clone();
  const at::Tensor keep = shared;
  const at::Tensor shared_out = q->forward_consuming(std::move(shared));
  EXPECT_NE(shared_out.data_ptr(), keep.data_ptr());
  EXPECT_TRUE(torch::equal(keep, x));
  at::Tensor base = x.clone();
  at::Tensor view = base.view({-1});
  q->forward_consuming(std::move(view));
  EXPECT_TRUE(torch::equal(base, x));

  // Requires grad: the differentiable path, and the straight-through gradient reaches the input.
  at::Tensor g = x.clone().requires_grad_(true);
  at::Tensor leaf = g;
  const at::Tensor gout = q->forward_consuming(g * 1.0);
  EXPECT_TRUE(gout.requires_grad());
  gout.sum().backward();
  EXPECT_TRUE(torch::equal(leaf.grad(), (x.abs() <= 2.f).to(at::kFloat)));

  // Calibrating, dynamic amax or disabled: forward() itself.
  TensorQuantizer dynamic{TensorQuantizerOptions(QuantDescriptor{})};
  at::Tensor d = x.clone();
  const at::Tensor d_copy = d;
  EXPECT_TRUE(torch::equal(dynamic->forward_consuming(std::move(d)), dynamic->forward(x)));
  EXPECT_TRUE(torch::equal(d_copy, x));
  q->disable();
  at::Tensor off = x.clone();
  const void* off_memory = off.data_ptr();
  const at::Tensor off_out = q->forward_consuming(std::move(off));
  EXPECT_EQ(off_out.data_ptr(), off_memory);
  EXPECT_TRUE(torch::equal(off_out, x));
}

TEST(FakeQuant, InPlaceIsBitIdenticalAndRefusesWhatItCannotDo) {
  using qdqbert::ops::fake_tensor_quant;
  using qdqbert::ops::fake_tensor_quant_;
  using qdqbert::ops::prepare_amax;
  torch::manual_seed(6);
  at::Tensor x = torch::randn({5, 70001}) * 4;
  x.index_put_({0, torch::indexing::Slice(0, 3)}, torch::tensor({-0.f, 1e30f, -1e30f}));
  for (const float amax : {2.5f, 0.f}) {
    const auto p = prepare_amax(torch::tensor(amax), x.device(), 8, false, true);
    at::Tensor y = x.clone();
    const int64_t version = y._version();
    fake_tensor_quant_(y, p);
    EXPECT_TRUE(torch::equal(y.view(at::kInt), fake_tensor_quant(x, p).view(at::kInt))) << amax;
    EXPECT_GT(y._version(), version);
  }
  const auto p = prepare_amax(torch::tensor(2.5f), x.device());
  at::Tensor d = x.to(at::kDouble), g = x.clone().requires_grad_(true), strided = x.clone().narrow(1, 0, 7);
  for (at::Tensor* bad : {&d, &g, &strided}) {
    EXPECT_NE(qt::error_message([&] { fake_tensor_quant_(*bad, p); }).find("fake quant in place"), std::string::npos);
  }
  at::Tensor y = x.clone();
  const auto per_row = prepare_amax(torch::rand({5, 1}) + 1, x.device());
  EXPECT_NE(qt::error_message([&] { fake_tensor_quant_(y, per_row); }).find("per-tensor amax"), std::string::npos);
}
