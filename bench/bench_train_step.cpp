// One training step — forward + backward + AdamW, QDQBertForQuestionAnswering, seq 128, dropout on — with
// every quantizer disabled (FP32) and with every quantizer enabled and max-calibrated (QAT: the weights
// require gradients, so they are fake-quantized again every step, as training needs). Two models with the
// same weights, stepped in interleaved rounds so that drift in the machine's load hits both alike; medians.
// bench/compare_train.sh runs this alternately with bench_transformers_train.py (the same step in Python
// transformers on Debian's python3-torch, the same ATen build) and prints the ratios.
//
// usage: bench_train_step MODEL_DIR|bert-base THREADS [BATCHES=8,32] [ROUNDS=3] [both|fp32|qat]
//   MODEL_DIR: a BERT checkpoint (e.g. all-MiniLM-L6-v2; its encoder under a new QA head)
//   bert-base: a randomly initialised bert-base (hidden 768, 12 layers)
//   both (default): the two models in one process, interleaved; fp32 / qat: that model alone, as one
//   training run holds one model (and as the Python side does): compare_train.sh runs these alternately
//   with transformers, since a second model in the process slows the first (measured: all-MiniLM-L6-v2
//   FP32 step at batch 32, 2463 ms beside the QAT model vs 2274-2343 ms alone).
// Prints: "batch B fp32_ms qat_ms" lines (machine-readable, for compare_train.sh; "-" for a model not run)
// and a table.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "model_bench.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/runtime.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;
using Clock = std::chrono::steady_clock;

namespace {

std::shared_ptr<TaskModel> make_model(const std::string& what) {
  torch::manual_seed(0);
  if (what == "bert-base") return create_model("question-answering", Config());
  return bench::from_pretrained_qdq(what, "question-answering");  // the new QA head's weights: the seed above
}

struct Trainee {
  std::shared_ptr<TaskModel> model;
  std::unique_ptr<torch::optim::AdamW> opt;
};

Trainee make_trainee(const std::string& what, bool quantized) {
  Trainee t;
  t.model = make_model(what);
  if (quantized) {
    workflow::CalibrationOptions co;  // max calibration of every quantizer on one random batch
    torch::manual_seed(1);
    workflow::calibrate(*t.model, {bench::random_batch(4, 128)}, co);
  }
  bench::set_quantizers(*t.model, quantized);
  t.model->module().train();  // dropout on
  t.opt = std::make_unique<torch::optim::AdamW>(t.model->module().parameters(), torch::optim::AdamWOptions(1e-5));
  return t;
}

double step_ms(Trainee& t, const ModelInputs& in) {
  const auto t0 = Clock::now();
  t.opt->zero_grad();
  ModelOutput out = t.model->run(in);
  out.loss.backward();
  t.opt->step();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<int64_t> parse_batches(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_train_step MODEL_DIR|bert-base THREADS [BATCHES=8,32] [ROUNDS=3] [both|fp32|qat]\n");
    return 2;
  }
  const std::string what = argv[1];
  at::set_num_threads(std::atoi(argv[2]));
  retain_freed_memory();  // as qdqbert-cli does (bench_transformers_train.py does the same for Python)
  const std::vector<int64_t> batches = parse_batches(argc > 3 ? argv[3] : "8,32");
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 3;
  const std::string mode = argc > 5 ? argv[5] : "both";
  if (mode != "both" && mode != "fp32" && mode != "qat") {
    std::fprintf(stderr, "bench_train_step: mode must be both, fp32 or qat, got '%s'\n", mode.c_str());
    return 2;
  }
  const bool run_fp32 = mode != "qat", run_qat = mode != "fp32";
  Trainee fp32 = run_fp32 ? make_trainee(what, false) : Trainee{};
  Trainee qat = run_qat ? make_trainee(what, true) : Trainee{};
  std::printf("# %s QA training step (forward + backward + AdamW), seq 128, dropout on, %d threads, median of %d\n",
              what.c_str(), at::get_num_threads(), rounds);
  std::printf("# %-5s %10s %10s %8s\n", "batch", "FP32 ms", "QAT ms", "QAT/FP32");
  for (int64_t b : batches) {
    torch::manual_seed(2);
    ModelInputs in = bench::random_batch(b, 128);
    in.start_positions = torch::randint(0, 128, {b}, torch::kLong);
    in.end_positions = torch::randint(0, 128, {b}, torch::kLong);
    if (run_fp32) step_ms(fp32, in);  // warm-up: allocator, optimizer state
    if (run_qat) step_ms(qat, in);
    std::vector<double> tf, tq;
    for (int r = 0; r < rounds; ++r) {
      if (run_fp32) tf.push_back(step_ms(fp32, in));
      if (run_qat) tq.push_back(step_ms(qat, in));
    }
    auto ms = [](const std::vector<double>& v) { return v.empty() ? std::string("-") : std::to_string(bench::median(v)); };
    std::printf("batch %lld %s %s\n", static_cast<long long>(b), ms(tf).c_str(), ms(tq).c_str());
    if (run_fp32 && run_qat) {
      std::printf("# %-5lld %10.1f %10.1f %7.2fx\n", static_cast<long long>(b), bench::median(tf), bench::median(tq),
                  bench::median(tq) / bench::median(tf));
    }
    std::fflush(stdout);
  }
  return 0;
}
