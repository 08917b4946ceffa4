// Fake-quant throughput against two baselines measured in the same run: x.clone() (the memory
// bandwidth limit: one read + one write) and torch::fake_quantize_per_tensor_affine / per_channel.
// Also histogram collect and compute_amax timings. Prints a ratio table at the end.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_util.h"
#include "qdqbert/calib/calibrator.h"
#include "qdqbert/ops/fake_quant.h"

namespace {

at::Tensor input(int64_t n) {
  static std::map<int64_t, at::Tensor> cache;
  auto& t = cache[n];
  if (!t.defined()) {
    torch::manual_seed(0);
    t = torch::randn({n / 1024, 1024});
  }
  return t;
}

void set_bytes(benchmark::State& s, int64_t n) { s.SetBytesProcessed(s.iterations() * n * 8); }

void BM_Clone(benchmark::State& s) {
  auto x = input(s.range(0));
  for (auto _ : s) benchmark::DoNotOptimize(x.clone());
  set_bytes(s, s.range(0));
}

void BM_QdqPerTensor(benchmark::State& s) {
  torch::NoGradGuard g;
  auto x = input(s.range(0));
  auto amax = torch::tensor(3.f);
  for (auto _ : s) benchmark::DoNotOptimize(qdqbert::ops::fake_tensor_quant(x, amax, 8, false, false));
  set_bytes(s, s.range(0));
}

// What TensorQuantizer runs with a static amax: validated and turned into a scale once.
void BM_QdqPerTensorPrepared(benchmark::State& s) {
  torch::NoGradGuard g;
  auto x = input(s.range(0));
  const auto p = qdqbert::ops::prepare_amax(torch::tensor(3.f), x.device(), 8, false, false);
  for (auto _ : s) benchmark::DoNotOptimize(qdqbert::ops::fake_tensor_quant(x, p));
  set_bytes(s, s.range(0));
}

void BM_TorchPerTensor(benchmark::State& s) {
  torch::NoGradGuard g;
  auto x = input(s.range(0));
  for (auto _ : s) benchmark::DoNotOptimize(at::fake_quantize_per_tensor_affine(x, 3.0 / 127, 0, -128, 127));
  set_bytes(s, s.range(0));
}

void BM_QdqPerChannel(benchmark::State& s) {
  torch::NoGradGuard g;
  auto x = input(s.range(0));
  auto amax = torch::rand({x.size(0), 1}) + 1;
  for (auto _ : s) benchmark::DoNotOptimize(qdqbert::ops::fake_tensor_quant(x, amax, 8, false, false));
  set_bytes(s, s.range(0));
}

void BM_TorchPerChannel(benchmark::State& s) {
  torch::NoGradGuard g;
  auto x = input(s.range(0));
  auto scale = (torch::rand({x.size(0)}) + 1) / 127;
  auto zp = torch::zeros({x.size(0)}, at::kInt);
  for (auto _ : s) benchmark::DoNotOptimize(at::fake_quantize_per_channel_affine(x, scale, zp, 0, -128, 127));
  set_bytes(s, s.range(0));
}

void BM_HistCollect(benchmark::State& s) {
  auto x = input(s.range(0));
  for (auto _ : s) {
    qdqbert::calib::HistogramCalibrator c;
    c.collect(x);
    benchmark::DoNotOptimize(c.hist().data());
  }
  s.SetItemsProcessed(s.iterations() * s.range(0));
}

void BM_HistComputeAmax(benchmark::State& s, const char* method) {
  qdqbert::calib::HistogramCalibrator c;
  c.collect(input(1 << 20));
  for (auto _ : s) {
    auto copy = c.clone();
    benchmark::DoNotOptimize(copy->compute_amax(method));
  }
}

}  // namespace

// 49152 floats: one MiniLM activation (128 x 384) at batch 1, where fixed per-call costs show.
#define SIZES ->Arg(49152)->Arg(1 << 20)->Arg(1 << 24)->Arg(1 << 26)->Unit(benchmark::kMicrosecond)->UseRealTime()
BENCHMARK(BM_Clone) SIZES;
BENCHMARK(BM_QdqPerTensor) SIZES;
BENCHMARK(BM_QdqPerTensorPrepared) SIZES;
BENCHMARK(BM_TorchPerTensor) SIZES;
BENCHMARK(BM_QdqPerChannel) SIZES;
BENCHMARK(BM_TorchPerChannel) SIZES;
BENCHMARK(BM_HistCollect)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_HistComputeAmax, percentile, "percentile")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_HistComputeAmax, mse, "mse")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_HistComputeAmax, entropy, "entropy")->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind("--threads=", 0) == 0) threads = std::stoi(std::string(argv[i]).substr(10));
  }
  if (threads > 0) at::set_num_threads(threads);
  std::printf("LibTorch threads: %d\n", at::get_num_threads());
  benchmark::Initialize(&argc, argv);
  qdqbert::bench::RecordingReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  std::printf("\n%-12s %-12s %14s %14s\n", "floats", "layout", "vs clone()", "vs torch op");
  for (int64_t n : {int64_t{49152}, int64_t{1} << 20, int64_t{1} << 24, int64_t{1} << 26}) {
    const std::string sz = "/" + std::to_string(n) + "/real_time";
    const double clone = rep.get("BM_Clone" + sz);
    for (auto [layout, ours, theirs] : {std::tuple{"per-tensor", "BM_QdqPerTensor", "BM_TorchPerTensor"},
                                        std::tuple{"prepared", "BM_QdqPerTensorPrepared", "BM_TorchPerTensor"},
                                        std::tuple{"per-channel", "BM_QdqPerChannel", "BM_TorchPerChannel"}}) {
      const double o = rep.get(ours + sz), t = rep.get(theirs + sz);
      if (o <= 0) continue;
      // Bandwidth ratio: clone time / our time (1.0 = as fast as a copy); speedup: torch / ours.
      std::printf("%-12lld %-12s %13.2fx %13.2fx\n", static_cast<long long>(n), layout, clone / o, t / o);
    }
  }
  benchmark::Shutdown();
  return 0;
}
