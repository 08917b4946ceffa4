// bert-base-sized QDQBertForQuestionAnswering (random init), seq 128, batch 1 and 8: forward latency
// with quantizers max-calibrated vs disabled (same run, same thread count), plus checkpoint load time
// and peak RSS vs file size (measured in a child process).
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;
using Clock = std::chrono::steady_clock;

static double median_ms(TaskModel& m, const ModelInputs& in, int iters) {
  std::vector<double> t;
  m.run(in);  // warm-up
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    m.run(in);
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

static ModelInputs batch(int64_t b, int64_t seq) {
  ModelInputs in;
  in.input_ids = torch::randint(1000, 30000, {b, seq}, torch::kLong);
  in.attention_mask = torch::ones({b, seq}, torch::kLong);
  in.token_type_ids = torch::zeros({b, seq}, torch::kLong);
  return in;
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--load-only") {
    struct rusage before {};
    getrusage(RUSAGE_SELF, &before);
    auto t0 = Clock::now();
    auto m = io::from_pretrained(argv[2]);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    struct rusage after {};
    getrusage(RUSAGE_SELF, &after);
    std::printf("from_pretrained: %.0f ms; peak RSS of the loading process %.0f MiB (before loading %.0f MiB, "
                "LibTorch itself)\n",
                ms, after.ru_maxrss / 1024.0, before.ru_maxrss / 1024.0);
    return 0;
  }
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  at::set_num_threads(threads);
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  Config config;  // bert-base
  auto model = create_model("question-answering", config);
  model->module().eval();
  workflow::CalibrationOptions co;
  workflow::calibrate(*model, {batch(2, 128)}, co);
  std::printf("bert-base QA, seq 128, %d LibTorch threads (OpenBLAS)\n", at::get_num_threads());
  std::printf("%-6s %14s %14s %8s\n", "batch", "fake-quant ms", "disabled ms", "ratio");
  for (int64_t b : {1, 8}) {
    ModelInputs in = batch(b, 128);
    const int iters = b == 1 ? 7 : 3;
    for (auto& [n, q] : named_quantizers(model->module())) q->enable();
    const double quant = median_ms(*model, in, iters);
    for (auto& [n, q] : named_quantizers(model->module())) q->disable();
    const double fp32 = median_ms(*model, in, iters);
    std::printf("%-6lld %14.1f %14.1f %7.2fx\n", static_cast<long long>(b), quant, fp32, quant / fp32);
  }
  for (auto& [n, q] : named_quantizers(model->module())) q->enable();
  // ONNX Runtime on the same model: int8 Q/DQ graph vs the graph exported without Q/DQ (bench_onnx.py).
  const std::string onnx_dir = (std::filesystem::temp_directory_path() / "qdqbert_bench_onnx").string();
  std::filesystem::create_directories(onnx_dir);
  onnx::export_model(*model, onnx_dir + "/qdq.onnx");
  for (auto& [n, q] : named_quantizers(model->module())) q->disable();
  onnx::export_model(*model, onnx_dir + "/fp32.onnx");
  for (auto& [n, q] : named_quantizers(model->module())) q->enable();
  const std::string script = std::string(argc > 2 ? argv[2] : "bench/bench_onnx.py");
  const std::string cmd = "python3 " + script + " " + onnx_dir + " " + std::to_string(threads);
  std::fflush(stdout);
  if (std::system(cmd.c_str()) != 0) std::printf("(ONNX Runtime part failed: %s)\n", cmd.c_str());
  std::filesystem::remove_all(onnx_dir);
  const std::string dir = (std::filesystem::temp_directory_path() / "qdqbert_bench_ckpt").string();
  io::save_pretrained(*model, dir);
  const double mib = std::filesystem::file_size(dir + "/model.safetensors") / (1024.0 * 1024.0);
  model.reset();
  // Load in a fresh process (this one already holds a model): time and peak RSS of from_pretrained.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::fflush(stdout);
  if (std::system((self + " --load-only " + dir).c_str()) != 0) std::printf("(load measurement failed)\n");
  std::printf("checkpoint file %.1f MiB\n", mib);
  std::filesystem::remove_all(dir);
  return 0;
}
