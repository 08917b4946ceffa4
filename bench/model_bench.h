#pragma once
// What bench_model (bert-base) and bench_minilm (the real checkpoint) share: random inputs, quantizers
// switched all on or off, FP32 vs fake-quant forward medians over interleaved rounds, and ONNX Runtime
// on the model exported with and without Q/DQ (bench_onnx.py).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/models/qdqbert.h"
#include "qdqbert/onnx/export.h"

namespace qdqbert::bench {

/// A pretrained checkpoint under `task`'s model class, quietly. Pretrained checkpoints carry no quantizers:
/// they get the defaults of QDQBERT (per-tensor inputs, per-row weights).
inline std::shared_ptr<TaskModel> from_pretrained_qdq(const std::string& dir, const std::string& task) {
  io::PretrainedOptions po;
  po.task = task;
  po.log_summary = false;
  po.quant_desc_input = nn::QuantDescriptor();
  po.quant_desc_weight = nn::quant_desc_8bit_linear_weight_per_row();
  return io::from_pretrained(dir, po);
}

/// Token ids drawn from [1000, 30000), full attention, segment 0.
inline ModelInputs random_batch(int64_t batch, int64_t seq) {
  ModelInputs in;
  in.input_ids = torch::randint(1000, 30000, {batch, seq}, torch::kLong);
  in.attention_mask = torch::ones({batch, seq}, torch::kLong);
  in.token_type_ids = torch::zeros({batch, seq}, torch::kLong);
  return in;
}

inline void set_quantizers(TaskModel& m, bool on) {
  for (auto& [n, q] : named_quantizers(m.module())) on ? q->enable() : q->disable();
}

struct ForwardMedians {
  double fp32_ms = 0, quant_ms = 0;
};

inline double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// Milliseconds of one forward of `m`; `sync` runs inside the timed region (a device synchronize for GPU models).
inline double forward_ms(TaskModel& m, const ModelInputs& in, const std::function<void()>& sync = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  m.run(in);
  if (sync) sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/// Median forward time of `m` over `rounds` runs after one warm-up run.
inline double median_ms(TaskModel& m, const ModelInputs& in, int rounds) {
  m.run(in);
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) t.push_back(forward_ms(m, in));
  return median(t);
}

/// Two models with the same weights, one with every quantizer disabled: one warm-up forward each, then
/// `rounds` rounds of (fp32, quant), so drift in the machine's load hits both alike; the median of each.
/// Two models rather than one toggled: toggling a quantizer invalidates QuantLinear's fake-quantized
/// weight cache, and the fake-quant time would then include re-quantizing every weight each round.
/// `sync` runs after each forward inside the timed region (a device synchronize for GPU models).
inline ForwardMedians interleaved_medians(TaskModel& fp32, TaskModel& quant, const ModelInputs& in, int rounds,
                                          const std::function<void()>& sync = {}) {
  std::vector<double> t_fp32, t_quant;
  fp32.run(in);
  quant.run(in);
  for (int r = 0; r < rounds; ++r) {
    t_fp32.push_back(forward_ms(fp32, in, sync));
    t_quant.push_back(forward_ms(quant, in, sync));
  }
  return {median(t_fp32), median(t_quant)};
}

/// Exports the model as it is (qdq.onnx) and with every quantizer disabled (fp32.onnx) into a temporary
/// folder `folder`, runs `python3 SCRIPT FOLDER THREADS EXTRA` (bench_onnx.py) and removes the folder.
/// Leaves the quantizers enabled.
inline void run_onnx_runtime(TaskModel& m, const std::string& script, int threads, const std::string& extra,
                             const std::string& folder) {
  const std::string dir = (std::filesystem::temp_directory_path() / folder).string();
  std::filesystem::create_directories(dir);
  onnx::export_model(m, dir + "/qdq.onnx");
  set_quantizers(m, false);
  onnx::export_model(m, dir + "/fp32.onnx");
  set_quantizers(m, true);
  const std::string cmd = "python3 " + script + " " + dir + " " + std::to_string(threads) + extra;
  std::fflush(stdout);
  if (std::system(cmd.c_str()) != 0) std::printf("(ONNX Runtime part failed: %s)\n", cmd.c_str());
  std::filesystem::remove_all(dir);
}

}  // namespace qdqbert::bench
