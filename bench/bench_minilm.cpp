// all-MiniLM-L6-v2 at seq 128, batch 1, 8 and 32, same thread count everywhere, one run: our FP32
// forward, our fake-quant forward (every quantizer, max-calibrated), ONNX Runtime on the exported int8
// Q/DQ graph, and Python transformers FP32 (bench_transformers.py, when a Python with transformers is given).
// usage: bench_minilm MODEL_DIR [THREADS] [PYTHON_WITH_TRANSFORMERS | none | fp32]
//   none: our two forwards only; fp32: our FP32 forward alone, one model in the process as on the Python
//   side (compare_minilm.sh takes FP32 / transformers from this and fake-quant / FP32 from `none`).
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "model_bench.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/runtime.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_minilm MODEL_DIR [THREADS] [PYTHON | none | fp32]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  at::set_num_threads(threads);
  retain_freed_memory();  // as qdqbert-cli does (bench_transformers.py does the same for Python)
  torch::manual_seed(0);
  torch::NoGradGuard ng;
  if (argc > 3 && std::string(argv[3]) == "fp32") {
    auto alone = io::from_pretrained(dir);
    bench::set_quantizers(*alone, false);
    std::printf("all-MiniLM-L6-v2 FP32 alone, seq 128, %d threads\n%-6s %10s\n", threads, "batch", "FP32 ms");
    for (int64_t b : {1, 8, 32}) {
      const double ms = bench::median_ms(*alone, bench::random_batch(b, 128), b == 1 ? 21 : b == 8 ? 9 : 5);
      std::printf("%-6lld %10.1f\n", static_cast<long long>(b), ms);
    }
    return 0;
  }
  auto model = io::from_pretrained(dir);
  std::vector<ModelInputs> calib = {bench::random_batch(8, 128), bench::random_batch(8, 128)};
  workflow::calibrate(*model, calib);
  auto fp32 = io::from_pretrained(dir);
  bench::set_quantizers(*fp32, false);
  std::printf("all-MiniLM-L6-v2, seq 128, %d threads\n%-6s %10s %14s %8s\n", threads, "batch", "FP32 ms",
              "fake-quant ms", "ratio");
  for (int64_t b : {1, 8, 32}) {
    const auto t = bench::interleaved_medians(*fp32, *model, bench::random_batch(b, 128), b == 1 ? 21 : b == 8 ? 9 : 5);
    std::printf("%-6lld %10.1f %14.1f %7.2fx\n", static_cast<long long>(b), t.fp32_ms, t.quant_ms,
                t.quant_ms / t.fp32_ms);
  }
  std::fflush(stdout);
  if (argc > 3 && std::string(argv[3]) == "none") return 0;  // our forwards only (profiling)
  const std::string here = std::filesystem::path(__FILE__).parent_path().string();
  bench::run_onnx_runtime(*model, here + "/bench_onnx.py", threads, " all", "qdqbert_bench_minilm");
  if (argc > 3) {
    const std::string cmd =
        std::string(argv[3]) + " " + here + "/bench_transformers.py " + dir + " " + std::to_string(threads);
    if (std::system(cmd.c_str()) != 0) std::printf("(transformers part failed: %s)\n", cmd.c_str());
  }
  return 0;
}
