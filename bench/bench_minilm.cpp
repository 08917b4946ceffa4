// all-MiniLM-L6-v2 at seq 128, batch 1, 8 and 32, same thread count everywhere, one run: our FP32
// forward, our fake-quant forward (every quantizer, max-calibrated), ONNX Runtime on the exported int8
// Q/DQ graph, and Python transformers FP32 (bench_transformers.py, when a Python with transformers is given).
// usage: bench_minilm MODEL_DIR [THREADS] [PYTHON_WITH_TRANSFORMERS | none]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;
using Clock = std::chrono::steady_clock;

namespace {

double run_ms(TaskModel& m, const ModelInputs& in) {
  auto t0 = Clock::now();
  m.run(in);
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void set_quantizers(TaskModel& m, bool on) {
  for (auto& [n, q] : named_quantizers(m.module())) on ? q->enable() : q->disable();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_minilm MODEL_DIR [THREADS] [PYTHON | none]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  at::set_num_threads(threads);
  torch::manual_seed(0);
  torch::NoGradGuard ng;
  auto model = io::from_pretrained(dir);
  std::vector<ModelInputs> calib;
  for (int i = 0; i < 2; ++i) {
    ModelInputs in;
    in.input_ids = torch::randint(1000, 30000, {8, 128}, torch::kLong);
    in.attention_mask = torch::ones({8, 128}, torch::kLong);
    calib.push_back(in);
  }
  workflow::calibrate(*model, calib);
  std::printf("all-MiniLM-L6-v2, seq 128, %d threads\n%-6s %10s %14s %8s\n", threads, "batch", "FP32 ms",
              "fake-quant ms", "ratio");
  for (int64_t b : {1, 8, 32}) {
    ModelInputs in;
    in.input_ids = torch::randint(1000, 30000, {b, 128}, torch::kLong);
    in.attention_mask = torch::ones({b, 128}, torch::kLong);
    // FP32 and fake-quant alternate, so drift in machine load hits both alike; median of each.
    const int rounds = b == 1 ? 21 : b == 8 ? 9 : 5;
    std::vector<double> t_fp32, t_quant;
    for (bool on : {false, true}) {  // warm-up
      set_quantizers(*model, on);
      model->run(in);
    }
    for (int r = 0; r < rounds; ++r) {
      set_quantizers(*model, false);
      t_fp32.push_back(run_ms(*model, in));
      set_quantizers(*model, true);
      t_quant.push_back(run_ms(*model, in));
    }
    const double fp32 = median(t_fp32), quant = median(t_quant);
    std::printf("%-6lld %10.1f %14.1f %7.2fx\n", static_cast<long long>(b), fp32, quant, quant / fp32);
  }
  std::fflush(stdout);
  if (argc > 3 && std::string(argv[3]) == "none") return 0;  // our forwards only (profiling)
  const std::string onnx_dir = (std::filesystem::temp_directory_path() / "qdqbert_bench_minilm").string();
  std::filesystem::create_directories(onnx_dir);
  onnx::export_model(*model, onnx_dir + "/qdq.onnx");
  for (auto& [n, q] : named_quantizers(model->module())) q->disable();
  onnx::export_model(*model, onnx_dir + "/fp32.onnx");
  const std::string here = std::filesystem::path(__FILE__).parent_path().string();
  std::system(("python3 " + here + "/bench_onnx.py " + onnx_dir + " " + std::to_string(threads) + " all").c_str());
  if (argc > 3) std::system((std::string(argv[3]) + " " + here + "/bench_transformers.py " + dir + " " +
                             std::to_string(threads)).c_str());
  std::filesystem::remove_all(onnx_dir);
  return 0;
}
