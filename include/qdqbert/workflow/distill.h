#pragma once
/// \file
/// Quantization-aware training by knowledge distillation (`qdqbert-cli qat`, the recipe NVIDIA used for
/// its best int8 BERT): a calibrated QDQ student learns to reproduce its FP32 teacher's sentence embeddings
/// on unlabelled text. AdamW with decay groups, linear warmup and decay, gradient clipping, dropout off,
/// optionally trainable activation ranges (learn_amax); deterministic for a seed and a thread count.
/// Plus the report writer (report.md, report.json, training_curve.svg).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qdqbert/nn/tensor_quantizer.h"
#include "qdqbert/workflow/fidelity.h"

namespace qdqbert::workflow {

enum class DistillLoss {
  kCosine,        ///< 1 - cosine of the mean-pooled, normalised sentence embeddings
  kMse,           ///< MSE of last_hidden_state over real tokens
  kCosineHidden,  ///< cosine + the mean over layers of each hidden state's MSE over real tokens divided by
                  ///< the teacher's mean square on that layer (so every layer weighs alike)
};
/// "cosine", "mse" or "cosine+hidden"; anything else is an error listing them.
DistillLoss parse_distill_loss(const std::string& name);
std::string to_string(DistillLoss loss);

struct DistillEval {
  int64_t step = 0;
  EmbeddingFidelity fidelity;
};

struct DistillProgress {
  int64_t step = 0, total = 0;
  double loss = 0;             ///< this step's loss
  double lr = 0;               ///< the learning rate it used
  double steps_per_second = 0, eta_seconds = 0;
  const DistillEval* eval = nullptr;  ///< set on the steps that evaluated
};

/// `qat --batching length`: how many batches' worth of shuffled lines are sorted by token count together.
/// More pads less (on the fortunes of docs/qat-minilm: 2.55x the real tokens unsorted, 1.22x at 8, 1.01x for
/// the whole text) but gathers rare kinds of line (ASCII art) into batches of their own; 8 keeps them spread.
inline constexpr int64_t kLengthGroupBatches = 8;

struct DistillOptions {
  int64_t steps = 0;          ///< optimizer steps; 0 = `epochs` passes over the training batches
  double epochs = 1;
  double lr = 2e-5;
  double amax_lr = 0;         ///< learning rate of the learned ranges (0 = lr)
  double warmup_ratio = 0.1;  ///< linear warmup over this share of the steps, then linear decay to 0
  double weight_decay = 0.01; ///< not applied to biases, LayerNorm weights and ranges
  double max_grad_norm = 1.0; ///< 0 = no clipping (of the weights' gradients; learned ranges are not clipped)
  bool learn_amax = false;    ///< every enabled activation quantizer with a per-tensor amax learns it
  nn::RangeLearning range_learning = nn::RangeLearning::kClip;  ///< how (the toolkit's Clip, or LSQ)
  DistillLoss loss = DistillLoss::kCosine;
  int64_t eval_every = 0;     ///< also evaluate every K steps (always before and after)
  uint64_t seed = 42;         ///< the batch order: one Fisher-Yates shuffle per epoch (j = rng() % (i + 1),
                              ///< std::mt19937_64(seed)), the same with every standard library
  int64_t k = 10;             ///< neighbours for recall@k
  std::function<void(const DistillProgress&)> progress;  ///< called after every step
};

struct DistillResult {
  std::vector<double> loss, lr;     ///< per step (index = step - 1)
  std::vector<DistillEval> evals;   ///< step 0 (the PTQ start) first, the trained model last
  int64_t total_steps = 0, train_batches = 0, train_sentences = 0, eval_sentences = 0;
  int64_t learned_amax_quantizers = 0;
  double train_seconds = 0, seconds_per_step = 0;
  const EmbeddingFidelity& before() const { return evals.front().fidelity; }
  const EmbeddingFidelity& after() const { return evals.back().fidelity; }
};

/// Trains `student` (a calibrated QDQ model; every enabled quantizer needs a stored amax) to reproduce
/// `teacher` (the FP32 model, quantizers disabled, never updated) on `train_batches`, evaluating on
/// `eval_batches` against the teacher's embeddings. Both must give last_hidden_state and agree in
/// hidden size, layers and vocabulary size. Learned ranges are frozen into `_amax` at the end, so the
/// student saves, loads and exports like a calibrated model. The student is left in eval mode.
/// The training batches are used as given, in a seeded new order each epoch; `qdqbert-cli qat` builds them
/// from the shuffled lines with `sort_by_token_count(tokenizer, lines, max_length, kLengthGroupBatches *
/// batch_size)` and `encode_batches`, so that each batch is padded little (embed.h).
DistillResult distill_qat(TaskModel& student, TaskModel& teacher, const std::vector<ModelInputs>& train_batches,
                          const std::vector<ModelInputs>& eval_batches, const DistillOptions& options);

/// What the report says about the run besides the result.
struct DistillReportInfo {
  std::string model, teacher, train_text, eval_text, quant_config;
  DistillOptions options;
  int threads = 0;
  GemmFlops flops;                  ///< of the student on the evaluation lengths
  int64_t enabled_quantizers = 0, quantizers = 0;
};

/// Writes `dir`/report.md, report.json and training_curve.svg (atomically each) and returns the Markdown.
std::string write_distill_report(const DistillResult& result, const DistillReportInfo& info, const std::string& dir);

}  // namespace qdqbert::workflow
