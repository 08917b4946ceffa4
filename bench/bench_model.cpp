// bert-base-sized QDQBertForQuestionAnswering (random init), seq 128, batch 1, 8 and 32: forward latency
// with quantizers max-calibrated vs disabled (same run, same thread count, interleaved rounds), then ONNX
// Runtime on the exported graphs and checkpoint load time and peak RSS vs file size (in a child process).
// usage: bench_model [THREADS] [BENCH_ONNX_PY | none]   (none: the forwards only)
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "model_bench.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/runtime.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;
using Clock = std::chrono::steady_clock;

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
  retain_freed_memory();  // as qdqbert-cli does
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  Config config;  // bert-base
  auto model = create_model("question-answering", config);
  model->module().eval();
  torch::manual_seed(0);  // the same weights again, quantizers disabled: the FP32 side of the timing
  auto fp32 = create_model("question-answering", config);
  fp32->module().eval();
  bench::set_quantizers(*fp32, false);
  workflow::CalibrationOptions co;
  workflow::calibrate(*model, {bench::random_batch(2, 128)}, co);
  std::printf("bert-base QA, seq 128, %d LibTorch threads (OpenBLAS)\n", at::get_num_threads());
  std::printf("%-6s %14s %14s %8s\n", "batch", "fake-quant ms", "disabled ms", "ratio");
  for (int64_t b : {1, 8, 32}) {
    const auto t = bench::interleaved_medians(*fp32, *model, bench::random_batch(b, 128), b == 1 ? 7 : 3);
    std::printf("%-6lld %14.1f %14.1f %7.2fx\n", static_cast<long long>(b), t.quant_ms, t.fp32_ms,
                t.quant_ms / t.fp32_ms);
  }
  std::fflush(stdout);
  if (argc > 2 && std::string(argv[2]) == "none") return 0;  // the forwards only
  // ONNX Runtime on the same model: int8 Q/DQ graph vs the graph exported without Q/DQ (bench_onnx.py).
  fp32.reset();
  const std::string here = std::filesystem::path(__FILE__).parent_path().string();
  bench::run_onnx_runtime(*model, argc > 2 ? std::string(argv[2]) : here + "/bench_onnx.py", threads, "",
                          "qdqbert_bench_onnx");
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
