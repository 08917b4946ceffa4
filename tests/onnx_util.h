#pragma once
// Test helpers for the ONNX export checks: random inputs for any head, an exported graph plus the LibTorch
// outputs it must reproduce, and one python3 run of tests/onnx/check_onnx.py over many such folders.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model_util.h"
#include "process_util.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/onnx/export.h"
#include "test_config.h"

namespace qdqbert::testing {

/// Random [batch, seq] (or [batch, 3, seq] for multiple choice) ids/mask/types with the last position
/// padded; decoders with cross-attention also get encoder states [batch, 7, hidden] with a padded last
/// position.
inline ModelInputs random_onnx_inputs(const Config& c, int64_t batch, int64_t seq, bool choices) {
  ModelInputs in;
  std::vector<int64_t> shape = choices ? std::vector<int64_t>{batch, 3, seq} : std::vector<int64_t>{batch, seq};
  in.input_ids = torch::randint(2, c.vocab_size, shape, torch::kLong);
  in.attention_mask = torch::ones(shape, torch::kLong);
  in.attention_mask.select(-1, seq - 1).zero_();  // right padding in the last position
  in.token_type_ids = torch::zeros(shape, torch::kLong);
  in.token_type_ids.slice(-1, seq / 2).fill_(1);
  if (c.is_decoder && c.add_cross_attention) {
    in.encoder_hidden_states = torch::randn({batch, 7, c.hidden_size});
    in.encoder_attention_mask = torch::ones({batch, 7}, torch::kLong);
    in.encoder_attention_mask.select(-1, 6).zero_();
  }
  return in;
}

/// A fresh scratch folder under the temp directory.
inline std::string onnx_scratch(const std::string& tag) {
  std::string safe = tag;
  for (char& ch : safe) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  const auto dir = std::filesystem::temp_directory_path() / ("qdqbert_onnx_" + safe + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// Exports `model` (already calibrated) to DIR/model.onnx and writes DIR/inputs.safetensors,
/// DIR/expected.safetensors (the model's outputs in torch-native export mode) and DIR/expect.json with
/// the number of QuantizeLinear nodes the graph must have. Returns the export report.
inline onnx::ExportReport write_onnx_case(TaskModel& model, const std::string& task, const ModelInputs& in,
                                          const std::string& dir, const onnx::ExportOptions& opts,
                                          int64_t expect_q) {
  onnx::set_export_mode(model, true);
  ModelOutput out;
  {
    torch::NoGradGuard g;
    out = model.run(in);
  }
  onnx::ExportReport report = onnx::export_model(model, dir + "/model.onnx", opts);
  if (std::getenv("QDQBERT_KEEP_ONNX") != nullptr) {  // per-layer LibTorch states, to locate a mismatch
    ModelInputs dbg = in;
    dbg.output_hidden_states = true;
    torch::NoGradGuard g;
    std::map<std::string, at::Tensor> states;
    for (auto& [k, v] : model.run(dbg).flatten()) states[k] = v;
    io::save_safetensors(dir + "/debug_states.safetensors", states);
  }
  std::map<std::string, at::Tensor> feeds = {
      {"input_ids", in.input_ids}, {"attention_mask", in.attention_mask}, {"token_type_ids", in.token_type_ids}};
  if (in.encoder_hidden_states.defined()) {
    feeds["encoder_hidden_states"] = in.encoder_hidden_states.contiguous();
    feeds["encoder_attention_mask"] = in.encoder_attention_mask;
  }
  io::save_safetensors(dir + "/inputs.safetensors", feeds);
  std::map<std::string, at::Tensor> expected;
  for (auto& [k, v] : out.flatten()) {
    for (const auto& n : onnx::output_names(task)) {
      if (k == n) expected[k] = v;
    }
  }
  EXPECT_EQ(expected.size(), onnx::output_names(task).size()) << dir;
  io::save_safetensors(dir + "/expected.safetensors", expected);
  std::ofstream(dir + "/expect.json") << "{\"expect_q\": " << expect_q << "}\n";
  onnx::set_export_mode(model, false);
  return report;
}

/// Runs tests/onnx/check_onnx.py over `dirs` in one python3 process; "OK ..." or "FAIL ..." with its
/// JSON lines (one per folder).
inline std::string check_onnx_dirs(const std::vector<std::string>& dirs, double atol, double all_atol) {
  std::string cmd = "python3 " + std::string(QDQBERT_SOURCE_DIR) + "/tests/onnx/check_onnx.py";
  for (const auto& d : dirs) cmd += " " + d;
  cmd += " --atol " + std::to_string(atol) + " --all-atol " + std::to_string(all_atol);
  const ProcessRun r = run_command(cmd);
  return (r.rc == 0 ? "OK " : "FAIL ") + r.out;
}

}  // namespace qdqbert::testing
