// qdqbert-cli end to end: infer / calibrate / inspect against the model fixtures, and error paths.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "model_util.h"
#include "process_util.h"
#include "qdqbert/workflow/quant_config.h"

namespace qt = qdqbert::testing;
namespace fs = std::filesystem;
using namespace qdqbert;

namespace {

std::string cli() { return qt::cli_binary(); }

struct CliRun {
  int rc;
  std::string out;
};

// rc as pclose reports it (non-zero on any failure).
CliRun run_cli(const std::string& args) {
  const qt::ProcessRun r = qt::run_command(cli() + " " + args);
  return {r.rc == 0 ? 0 : (r.rc > 0 ? r.rc : 128 + r.signal), r.out};
}

std::string tmpdir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qdqbert_cli_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p.string();
}

/// The --quant-config that reproduces the case's descriptors, overrides and disabled state.
std::string write_quant_config(const nlohmann::json& spec, const std::string& dir) {
  workflow::QuantConfig qc;
  qc.input = spec["quant"]["input_desc"].get<nn::QuantDescriptor>();
  qc.weight = spec["quant"]["weight_desc"].get<nn::QuantDescriptor>();
  qc.disable = spec["quant"]["state"] == "disabled";
  for (const auto& o : spec["quant"]["overrides"]) {
    workflow::QuantizerRule r;
    r.pattern = o["suffix"].get<std::string>() + "$";
    if (o["attr"] == "unsigned") r.is_unsigned = o["value"].get<bool>();
    if (o["attr"] == "narrow_range") r.narrow_range = o["value"].get<bool>();
    qc.rules.push_back(r);
  }
  const std::string path = dir + "/quant.json";
  qc.to_json_file(path);
  return path;
}

}  // namespace

class CliInfer : public ::testing::TestWithParam<std::string> {};

TEST_P(CliInfer, MatchesReference) {
  const std::string dir = qt::data_path("model/" + GetParam());
  const auto spec = qt::read_json(dir + "/case.json");
  if (spec["mode"] == "train") return;  // training cases are checked through the C++ API
  const std::string tmp = tmpdir(GetParam());
  const std::string qc = write_quant_config(spec, tmp);
  std::string flags;
  const auto& call = spec["call"];
  if (call.contains("output_hidden_states") && call["output_hidden_states"] == true) flags += " --output-hidden-states";
  if (call.contains("output_attentions") && call["output_attentions"] == true) flags += " --output-attentions";
  const std::string out = tmp + "/out.safetensors";
  CliRun r = run_cli("infer --model " + dir + "/model --task " + spec["task"].get<std::string>() + " --inputs " + dir +
                  "/inputs.safetensors --output " + out + " --quant-config " + qc + flags + " --threads 1");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto got = io::load_safetensors(out);
  auto expected = io::load_safetensors(dir + "/expected.safetensors");
  int checked = 0;
  for (const auto& [k, v] : expected) {
    bool fwd = true;
    for (const char* p : {"amax.", "calib_", "grad.", "final"}) fwd = fwd && k.rfind(p, 0) != 0;
    if (!fwd) continue;
    ASSERT_TRUE(got.count(k)) << "CLI output lacks " << k;
    EXPECT_TRUE(qt::tensors_close(got[k], v, spec["rtol"], spec["atol"], k));
    ++checked;
  }
  EXPECT_GT(checked, 0);
  fs::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(Reference, CliInfer, ::testing::ValuesIn(qt::case_names("model", "")),
                         [](const auto& info) { return info.param; });

TEST(Cli, CalibrateReproducesFixtureAmaxAndInspect) {
  for (const std::string name : {"seqcls_regression_calib_percentile", "masked_lm_calib_max"}) {
    const std::string dir = qt::data_path("model/" + name);
    const auto spec = qt::read_json(dir + "/case.json");
    const std::string tmp = tmpdir("calib_" + name);
    // A copy of the checkpoint without any _amax: what a user starts from.
    auto state = io::read_checkpoint(dir + "/model");
    for (auto it = state.begin(); it != state.end();) {
      it = it->first.find("._amax") != std::string::npos ? state.erase(it) : std::next(it);
    }
    fs::create_directories(tmp + "/in");
    io::save_safetensors(tmp + "/in/model.safetensors", state);
    fs::copy_file(dir + "/model/config.json", tmp + "/in/config.json");
    const std::string qc = write_quant_config(spec, tmp);
    const auto& cal = spec["calibration"];
    std::string args = "calibrate --model " + tmp + "/in --task " + spec["task"].get<std::string>() + " --calib-data " +
                       dir + "/calib.safetensors --method " + cal["method"].get<std::string>() +
                       " --quant-config " + qc + " --output " + tmp + "/out";
    if (!cal["percentile"].is_null()) args += " --percentile " + std::to_string(cal["percentile"].get<double>());
    CliRun r = run_cli(args);
    ASSERT_EQ(r.rc, 0) << r.out;
    auto calibrated = io::read_checkpoint(tmp + "/out");
    auto expected = io::load_safetensors(dir + "/expected.safetensors");
    int checked = 0;
    for (const auto& [k, v] : expected) {
      if (k.rfind("amax.", 0) != 0) continue;
      const std::string key = k.substr(5) + "._amax";
      ASSERT_TRUE(calibrated.count(key)) << key;
      const std::string bw = "calib_bin_width." + k.substr(5);
      const double atol = expected.count(bw) ? 2 * expected.at(bw).item<double>() : 0.0;
      EXPECT_TRUE(qt::tensors_close(calibrated[key], v, qt::float32_encoder_rtol(qt::case_config(spec, dir)), atol,
                                    key));
      ++checked;
    }
    EXPECT_GT(checked, 20);
    CliRun ins = run_cli("inspect --model " + tmp + "/out");
    ASSERT_EQ(ins.rc, 0) << ins.out;
    EXPECT_NE(ins.out.find("bert.encoder.layer.1.output.add_residual_input_quantizer"), std::string::npos);
    EXPECT_NE(ins.out.find("quantizers"), std::string::npos);
    fs::remove_all(tmp);
  }
}

TEST(Cli, ErrorsAreOneLineAndNonZero) {
  const std::string dir = qt::data_path("model/masked_lm_calib_max");
  const std::string tmp = tmpdir("errors");
  CliRun r = run_cli("infer --model " + dir + "/model --task no-such-task --inputs " + dir +
                  "/inputs.safetensors --output " + tmp + "/o.safetensors");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("unknown task 'no-such-task'"), std::string::npos) << r.out;
  r = run_cli("infer --model /nonexistent --inputs x --output y");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent"), std::string::npos) << r.out;
  // A truncated weights file is named in the error.
  fs::create_directories(tmp + "/bad");
  fs::copy_file(dir + "/model/config.json", tmp + "/bad/config.json");
  {
    std::ofstream f(tmp + "/bad/model.safetensors", std::ios::binary);
    f << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  }
  r = run_cli("infer --model " + tmp + "/bad --inputs " + dir + "/inputs.safetensors --output " + tmp + "/o.safetensors");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  // export-onnx: a calibrated fixture exports; a dynamic one is refused with the quantizer's name.
  r = run_cli("export-onnx --model " + dir + "/model --output " + tmp + "/m.onnx");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("40 QuantizeLinear"), std::string::npos) << r.out;
  r = run_cli("export-onnx --model " + qt::data_path("model/base_dynamic_all_outputs/model") + " --output " + tmp +
              "/d.onnx");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("no stored amax"), std::string::npos) << r.out;
  for (const char* sub : {"infer", "calibrate", "inspect", "export-onnx"}) {
    CliRun h = run_cli(std::string(sub) + " --help");
    EXPECT_EQ(h.rc, 0);
    EXPECT_NE(h.out.find("--model"), std::string::npos);
  }
  fs::remove_all(tmp);
}
