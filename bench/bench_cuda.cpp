// GPU benchmark (a timed binary; built only with CUDA dispatch). Every figure is a ratio against a
// baseline measured in the same run, in interleaved rounds, medians:
//   1. fake quant on a 64 Mi-float tensor: ours (per tensor, prepared amax, per row) against x.clone()
//      (one read + one write: the memory-bandwidth limit) and torch's fake_quantize_per_tensor_affine /
//      per_channel_affine;
//   2. bert-base QA forward, seq 128, batch 8 and 32: every quantizer max-calibrated against the same
//      weights with every quantizer disabled (eval mode, no grad);
//   3. a training step (forward + backward + AdamW, dropout on), batch 32, seq 128: QAT (every quantizer
//      on, weights re-quantized each step) against FP32.
// Usage: bench_cuda [ROUNDS]   (default 7)
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "model_bench.h"
#include "qdqbert/ops/fake_quant.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;

namespace {

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void sync() { torch::cuda::synchronize(); }

// Milliseconds per call of each of `fns`, median over `rounds` interleaved rounds of `reps` calls.
std::vector<double> interleaved_ms(const std::vector<std::function<void()>>& fns, int rounds, int reps) {
  std::vector<std::vector<double>> t(fns.size());
  for (const auto& f : fns) f();  // warm-up (allocator, kernel load)
  sync();
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < reps; ++k) fns[i]();
      sync();
      t[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
  }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

void fake_quant_section(const torch::Device& dev, int rounds) {
  torch::NoGradGuard g;
  const int64_t rows = 65536, cols = 1024;  // 64 Mi floats, 256 MiB
  torch::manual_seed(0);
  at::Tensor x = torch::randn({rows, cols}, torch::TensorOptions().device(dev));
  at::Tensor amax = torch::tensor(3.f, torch::TensorOptions().device(dev));
  at::Tensor row_amax = torch::rand({rows, 1}, torch::TensorOptions().device(dev)) + 1;
  const auto prepared = ops::prepare_amax(amax, dev, 8, false, false);
  at::Tensor row_scale = (row_amax.reshape({-1}) / 127).contiguous();
  at::Tensor row_zp = torch::zeros({rows}, torch::TensorOptions().device(dev).dtype(torch::kInt));
  at::Tensor sink;
  const std::vector<std::string> names = {"x.clone() (copy)",
                                          "torch fake_quantize_per_tensor_affine",
                                          "qdqbert per tensor",
                                          "qdqbert per tensor, prepared amax",
                                          "torch fake_quantize_per_channel_affine",
                                          "qdqbert per row"};
  const auto ms = interleaved_ms(
      {[&] { sink = x.clone(); }, [&] { sink = at::fake_quantize_per_tensor_affine(x, 3.0 / 127, 0, -128, 127); },
       [&] { sink = ops::fake_tensor_quant(x, amax, 8, false, false); },
       [&] { sink = ops::fake_tensor_quant(x, prepared); },
       [&] { sink = at::fake_quantize_per_channel_affine(x, row_scale, row_zp, 0, -128, 127); },
       [&] { sink = ops::fake_tensor_quant(x, row_amax, 8, false, false); }},
      rounds, 20);
  const double bytes = static_cast<double>(x.numel()) * 8;  // one float read + one written per element
  std::printf("\nFake quant, %lld x %lld float32 (256 MiB), median of %d rounds x 20 calls\n",
              static_cast<long long>(rows), static_cast<long long>(cols), rounds);
  std::printf("%-40s %9s %9s %10s %10s\n", "", "ms", "GB/s", "vs copy", "vs torch");
  for (size_t i = 0; i < names.size(); ++i) {
    const double torch_ms = i >= 4 ? ms[4] : ms[1];
    std::printf("%-40s %9.3f %9.0f %9.2fx %9.2fx\n", names[i].c_str(), ms[i], bytes / (ms[i] * 1e6), ms[i] / ms[0],
                ms[i] / torch_ms);
  }
}

ModelInputs on(ModelInputs in, const torch::Device& dev) {
  for (at::Tensor* t : {&in.input_ids, &in.attention_mask, &in.token_type_ids, &in.start_positions, &in.end_positions}) {
    if (t->defined()) *t = t->to(dev);
  }
  return in;
}

// Two bert-base QA models with the same weights on `dev`: `quant` max-calibrated, `fp32` with every
// quantizer disabled.
std::pair<std::shared_ptr<TaskModel>, std::shared_ptr<TaskModel>> model_pair(const torch::Device& dev) {
  Config config;  // bert-base
  torch::manual_seed(0);
  auto quant = create_model("question-answering", config);
  torch::manual_seed(0);
  auto fp32 = create_model("question-answering", config);
  quant->module().to(dev);
  fp32->module().to(dev);
  bench::set_quantizers(*fp32, false);
  quant->module().eval();
  workflow::calibrate(*quant, {on(bench::random_batch(8, 128), dev)}, workflow::CalibrationOptions{});
  return {quant, fp32};
}

void forward_section(const torch::Device& dev, int rounds) {
  torch::NoGradGuard g;
  auto [quant, fp32] = model_pair(dev);
  quant->module().eval();
  fp32->module().eval();
  std::printf("\nbert-base QA forward, seq 128, eval, no grad; median of %d interleaved rounds\n", rounds);
  std::printf("%-6s %14s %14s %8s\n", "batch", "fake-quant ms", "FP32 ms", "ratio");
  for (int64_t b : {8, 32}) {
    const auto t = bench::interleaved_medians(*fp32, *quant, on(bench::random_batch(b, 128), dev), rounds, sync);
    std::printf("%-6lld %14.2f %14.2f %7.2fx\n", static_cast<long long>(b), t.quant_ms, t.fp32_ms,
                t.quant_ms / t.fp32_ms);
  }
}

void training_section(const torch::Device& dev, int rounds) {
  auto [quant, fp32] = model_pair(dev);
  quant->module().train();
  fp32->module().train();
  const int64_t batch = 32, seq = 128;
  ModelInputs in = bench::random_batch(batch, seq);
  in.start_positions = torch::randint(0, seq, {batch}, torch::kLong);
  in.end_positions = torch::randint(0, seq, {batch}, torch::kLong);
  in = on(in, dev);
  auto make_step = [&](TaskModel& m) {
    auto opt = std::make_shared<torch::optim::AdamW>(m.module().parameters(), torch::optim::AdamWOptions(2e-5));
    return [&m, opt, &in] {
      opt->zero_grad();
      m.run(in).loss.backward();
      opt->step();
    };
  };
  const auto ms = interleaved_ms({make_step(*fp32), make_step(*quant)}, rounds, 3);
  std::printf("\nbert-base QA training step (forward + backward + AdamW, dropout on), batch %lld, seq %lld\n",
              static_cast<long long>(batch), static_cast<long long>(seq));
  std::printf("FP32 %.2f ms, QAT %.2f ms: QAT / FP32 %.2fx\n", ms[0], ms[1], ms[1] / ms[0]);
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("bench_cuda: no CUDA device\n");
    return 0;
  }
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const torch::Device dev(torch::kCUDA, 0);
  std::printf("bench_cuda on %s (TF32 matmul %s)\n", dev.str().c_str(),
              at::globalContext().allowTF32CuBLAS() ? "on" : "off");
  fake_quant_section(dev, rounds);
  forward_section(dev, rounds);
  training_section(dev, rounds);
  return 0;
}
