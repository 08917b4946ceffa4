#pragma once
// The whole-model parity checks against the reference fixtures (tests/data/model), on any device:
// model_test.cpp runs them on the CPU, cuda_test.cpp on a GPU. The model and its inputs are moved to
// `device`; outputs are compared on the CPU at the bounds each case.json states.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "model_util.h"
#include "qdqbert/workflow/calibrate.h"

namespace qdqbert::testing {

inline bool is_forward_key(const std::string& k) {
  for (const char* p : {"amax.", "calib_", "grad.", "step", "final"}) {
    if (k.rfind(p, 0) == 0) return false;
  }
  return true;
}

/// Every defined tensor of `in` (the decoder cache included) on `device`.
inline ModelInputs inputs_on(ModelInputs in, c10::Device device) {
  for (at::Tensor* t : {&in.input_ids, &in.attention_mask, &in.token_type_ids, &in.position_ids, &in.head_mask,
                        &in.inputs_embeds, &in.encoder_hidden_states, &in.encoder_attention_mask, &in.labels,
                        &in.start_positions, &in.end_positions}) {
    if (t->defined()) *t = t->to(device);
  }
  for (auto& layer : in.past_key_values) {
    for (auto& t : layer) {
      if (t.defined()) t = t.to(device);
    }
  }
  return in;
}

/// load_case with the model moved to `device`.
inline ModelCase load_case_on(const std::string& name, c10::Device device, bool with_amax = true) {
  ModelCase c = load_case(name, with_amax);
  c.model->module().to(device);
  return c;
}

/// Forward outputs (and, for decoder cases, step 1 / step 2 with the cache and the full forward) against
/// the reference at the case's rtol/atol.
inline void check_forward(const std::string& name, c10::Device device) {
  ModelCase c = load_case_on(name, device);
  const double rtol = c.spec["rtol"], atol = c.spec["atol"];
  if (c.spec["mode"] == "train") return;  // training cases: check_training
  torch::NoGradGuard g;
  std::map<std::string, at::Tensor> got;
  if (c.inputs.count("step1_input_ids")) {
    // Incremental decoding: step 1 with use_cache, step 2 with its cache, and a full forward.
    ModelInputs s1 = inputs_on(case_inputs(c, "step1_"), device);
    s1.use_cache = true;
    ModelOutput o1 = c.model->run(s1);
    ModelInputs s2 = inputs_on(case_inputs(c, "step2_"), device);
    s2.use_cache = true;
    s2.past_key_values = o1.past_key_values;
    ModelOutput o2 = c.model->run(s2);
    ModelInputs full = inputs_on(case_inputs(c, "full_"), device);
    full.use_cache = false;
    ModelOutput of = c.model->run(full);
    for (auto& [k, v] : o1.flatten("step1_")) got[k] = v;
    for (auto& [k, v] : o2.flatten("step2_")) got[k] = v;
    for (auto& [k, v] : of.flatten("full_")) got[k] = v;
  } else {
    for (auto& [k, v] : c.model->run(inputs_on(case_inputs(c), device)).flatten()) got[k] = v;
  }
  const bool incremental = c.inputs.count("step1_input_ids") > 0;
  int checked = 0;
  for (const auto& [k, v] : c.expected) {
    const bool wanted = incremental ? (k.rfind("step", 0) == 0 || k.rfind("full_", 0) == 0) : is_forward_key(k);
    if (!wanted) continue;
    ASSERT_TRUE(got.count(k)) << name << ": missing output " << k;
    EXPECT_EQ(got[k].device(), device) << name << ": " << k;
    EXPECT_TRUE(tensors_close(got[k], v, rtol, atol, name + " " + k));
    ++checked;
  }
  EXPECT_GE(checked, incremental ? 3 : 1) << name;
}

/// Calibration from the case's calib.safetensors (amax dropped from the checkpoint first) reproduces the
/// reference amax: histogram methods within two bin widths, max within the encoder's float32 rounding.
inline void check_calibration(const std::string& name, c10::Device device) {
  auto spec = read_json(data_path("model/" + name + "/case.json"));
  if (spec["calibration"].is_null()) return;  // not a calibration case (nothing to check)
  ModelCase c = load_case_on(name, device, /*with_amax=*/false);
  workflow::CalibrationOptions o;
  const auto& cal = spec["calibration"];
  o.method = cal["method"];
  const auto& kw = cal["load_calib_amax_kwargs"];
  if (kw.contains("percentile")) o.amax_options.percentile = kw["percentile"];
  if (kw.contains("start_bin")) o.amax_options.start_bin = kw["start_bin"];
  if (kw.contains("stride")) o.amax_options.stride = kw["stride"];
  const bool was_training = c.model->module().is_training();
  std::vector<ModelInputs> batches;
  for (auto& b : calib_batches(c)) batches.push_back(inputs_on(std::move(b), device));
  workflow::calibrate(*c.model, batches, o);
  c.model->module().train(was_training);
  std::map<std::string, nn::TensorQuantizer> qs;
  for (auto& [n, q] : named_quantizers(c.model->module())) qs.emplace(n, q);
  int checked = 0;
  for (const auto& [k, v] : c.expected) {
    if (k.rfind("amax.", 0) != 0) continue;
    const std::string qname = k.substr(5);
    ASSERT_TRUE(qs.count(qname)) << name << ": no quantizer " << qname;
    at::Tensor got = qs.at(qname)->amax();
    ASSERT_TRUE(got.defined()) << name << ": " << qname << " was not calibrated";
    const std::string bw = "calib_bin_width." + qname;
    if (c.expected.count(bw)) {
      // Histogram methods: an element may cross a bin edge through float32 noise (README §5).
      EXPECT_TRUE(tensors_close(got, v, 1e-6, 2 * c.expected.at(bw).item<double>(), name + " " + k));
    } else if (o.method == "max") {
      // A max of float32 activations: exact when every intermediate is bit-identical, which needs the
      // reference's BLAS kernel. Another kernel (OpenBLAS on AVX2 or AVX-512, cuBLAS) sums in another
      // order, so the activations, and their max, carry the float32 rounding of the encoder.
      EXPECT_TRUE(tensors_close(got, v, float32_encoder_rtol(c.config), 0.0, name + " " + k));
    } else {
      EXPECT_TRUE(tensors_close(got, v, spec["rtol"], spec["atol"], name + " " + k));
    }
    ++checked;
  }
  EXPECT_GT(checked, 0) << name;
}

/// Training cases: gradients of one backward, or the case's SGD loop (losses per step, final outputs and
/// parameters), against the reference.
inline void check_training(const std::string& name, c10::Device device) {
  ModelCase c = load_case_on(name, device);
  const double rtol = c.spec["rtol"], atol = c.spec["atol"];
  const ModelInputs in = inputs_on(case_inputs(c), device);
  if (!c.expected.count("step0_loss")) {
    ModelOutput out = c.model->run(in);
    out.loss.backward();
    std::map<std::string, at::Tensor> params;
    for (const auto& p : c.model->module().named_parameters()) params[p.key()] = p.value();
    int checked = 0;
    for (const auto& [k, v] : c.expected) {
      if (k.rfind("grad.", 0) == 0) {
        const std::string pname = k.substr(5);
        ASSERT_TRUE(params.count(pname)) << name << ": no parameter " << pname;
        EXPECT_TRUE(tensors_close(params[pname].grad(), v, rtol, atol, name + " " + k));
        ++checked;
      } else if (k == "loss") {
        EXPECT_TRUE(tensors_close(out.loss, v, rtol, atol, name + " " + k));
      }
    }
    EXPECT_GT(checked, 0) << name;
    return;
  }
  // The SGD loop the case describes (learning rate, momentum, weight decay, step count) over the
  // de-duplicated parameter list.
  const SgdLoop loop = sgd_loop(c);
  int loss_keys = 0;
  while (c.expected.count("step" + std::to_string(loss_keys) + "_loss")) ++loss_keys;
  ASSERT_EQ(loss_keys, loop.steps) << name << ": call.forward says " << loop.steps
                                   << " steps, expected.safetensors has " << loss_keys << " stepK_loss keys";
  std::vector<at::Tensor> params;
  std::set<const void*> seen;
  for (const auto& p : c.model->module().parameters()) {
    if (seen.insert(p.unsafeGetTensorImpl()).second) params.push_back(p);
  }
  torch::optim::SGD opt(params,
                        torch::optim::SGDOptions(loop.lr).momentum(loop.momentum).weight_decay(loop.weight_decay));
  for (int k = 0; k < loop.steps; ++k) {
    opt.zero_grad();
    at::Tensor loss = c.model->run(in).loss;
    EXPECT_TRUE(tensors_close(loss, c.expected.at("step" + std::to_string(k) + "_loss"), rtol, atol,
                              name + " step" + std::to_string(k) + " loss"));
    loss.backward();
    opt.step();
  }
  ModelOutput final_out = c.model->run(in);
  std::map<std::string, at::Tensor> got;
  for (auto& [k, v] : final_out.flatten("final_")) got[k] = v;
  for (const auto& p : c.model->module().named_parameters()) got["final." + p.key()] = p.value();
  for (const auto& [k, v] : c.expected) {
    if (k.rfind("final", 0) != 0) continue;
    ASSERT_TRUE(got.count(k)) << name << ": missing " << k;
    EXPECT_TRUE(tensors_close(got[k], v, rtol, atol, name + " " + k));
  }
}

}  // namespace qdqbert::testing
