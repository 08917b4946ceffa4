#include "qdqbert/workflow/distill.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <random>

#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/gradient_reducer.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/error.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/workflow/data_parallel.h"
#include "qdqbert/workflow/quant_trainer.h"

namespace qdqbert::workflow {
namespace {

using Clock = std::chrono::steady_clock;

// Masked mean of (a - b)^2 over real tokens and features.
at::Tensor masked_mse(const at::Tensor& a, const at::Tensor& b, const at::Tensor& m) {
  return ((a - b).pow(2) * m).sum() / (m.sum() * static_cast<double>(a.size(-1))).clamp_min(1);
}

at::Tensor distill_loss(DistillLoss kind, const ModelOutput& s, const ModelOutput& t, const at::Tensor& mask) {
  const at::Tensor m = mask.unsqueeze(-1).to(s.last_hidden_state.dtype());
  if (kind == DistillLoss::kMse) return masked_mse(s.last_hidden_state, t.last_hidden_state, m);
  const at::Tensor es = mean_pool_normalize(s.last_hidden_state, mask);
  const at::Tensor et = mean_pool_normalize(t.last_hidden_state, mask);
  at::Tensor loss = 1 - (es * et).sum(1).mean();
  if (kind == DistillLoss::kCosineHidden) {
    QDQBERT_CHECK(!s.hidden_states.empty() && s.hidden_states.size() == t.hidden_states.size(),
                  "distill: the models gave no hidden states for the cosine+hidden loss");
    at::Tensor hidden = torch::zeros({}, loss.options());
    for (size_t l = 0; l < s.hidden_states.size(); ++l) {
      const at::Tensor scale = (t.hidden_states[l].pow(2) * m).sum() / (m.sum() * t.hidden_states[l].size(-1));
      hidden = hidden + masked_mse(s.hidden_states[l], t.hidden_states[l], m) / scale.clamp_min(1e-12);
    }
    loss = loss + hidden / static_cast<double>(s.hidden_states.size());
  }
  return loss;
}

void check_compatible(TaskModel& student, TaskModel& teacher) {
  const Config &s = student.model_config(), &t = teacher.model_config();
  auto same = [&](const char* what, int64_t a, int64_t b) {
    QDQBERT_CHECK(a == b, "distill: student and teacher differ in ", what, " (", a, " vs ", b, ")");
  };
  same("hidden_size", s.hidden_size, t.hidden_size);
  same("num_hidden_layers", s.num_hidden_layers, t.num_hidden_layers);
  same("vocab_size", s.vocab_size, t.vocab_size);
}

// The enabled activation quantizers with a per-tensor amax start learning it; returns how many.
int64_t start_learning_ranges(TaskModel& student, nn::RangeLearning how) {
  int64_t n = 0;
  for (auto& info : nn::list_quantizers(student.module())) {
    auto& q = info.quantizer;
    if (!q->is_enabled() || info.role == nn::QuantizerRole::kLinearWeight) continue;
    if (!q->has_amax() || q->amax().numel() != 1 || q->learns_range()) continue;
    q->start_learning_amax(how);
    ++n;
  }
  return n;
}

// The student's trainable weights (clipped together) and its learned ranges (never clipped: one range's
// gradient sums over a whole activation and would otherwise scale every weight's step down).
struct StudentParameters {
  std::vector<at::Tensor> decay, no_decay, ranges;
};

StudentParameters student_parameters(TaskModel& student, double weight_decay) {
  StudentParameters s;
  for (auto& [params, wd] : decay_groups(student, weight_decay)) {
    for (auto& p : params) (wd > 0 ? s.decay : s.no_decay).push_back(p);
  }
  for (const auto& p : student.module().named_parameters()) {
    if (!nn::is_range_parameter(p.key())) continue;
    s.no_decay.erase(std::remove_if(s.no_decay.begin(), s.no_decay.end(),
                                    [&](const at::Tensor& t) { return t.is_same(p.value()); }),
                     s.no_decay.end());
    s.ranges.push_back(p.value());
  }
  return s;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(StudentParameters s, const DistillOptions& o) {
  auto& [decay, no_decay, ranges] = s;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto add = [&](std::vector<at::Tensor>& ps, double lr, double wd) {
    if (!ps.empty()) {
      groups.emplace_back(ps, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).weight_decay(wd)));
    }
  };
  add(decay, o.lr, o.weight_decay);
  add(no_decay, o.lr, 0.0);
  add(ranges, o.amax_lr > 0 ? o.amax_lr : o.lr, 0.0);
  QDQBERT_CHECK(!groups.empty(), "distill: the student has no trainable parameters");
  return std::make_unique<torch::optim::AdamW>(groups);
}

void validate(const DistillOptions& o, const std::vector<ModelInputs>& train, const std::vector<ModelInputs>& eval) {
  QDQBERT_CHECK(!train.empty(), "distill: no training text");
  QDQBERT_CHECK(!eval.empty(), "distill: no evaluation text");
  QDQBERT_CHECK(o.steps >= 0, "distill: steps must be positive, got ", o.steps);
  QDQBERT_CHECK(o.steps > 0 || (std::isfinite(o.epochs) && o.epochs > 0), "distill: epochs must be a positive number, got ",
                o.epochs);
  QDQBERT_CHECK(std::isfinite(o.lr) && o.lr > 0, "distill: the learning rate must be a positive number, got ", o.lr);
  QDQBERT_CHECK(std::isfinite(o.amax_lr) && o.amax_lr >= 0, "distill: amax_lr must be >= 0, got ", o.amax_lr);
  QDQBERT_CHECK(o.warmup_ratio >= 0 && o.warmup_ratio < 1, "distill: warmup_ratio must be in [0, 1), got ", o.warmup_ratio);
  QDQBERT_CHECK(o.weight_decay >= 0 && o.max_grad_norm >= 0 && o.eval_every >= 0,
                "distill: weight_decay, max_grad_norm and eval_every must be >= 0");
}

}  // namespace

DistillLoss parse_distill_loss(const std::string& name) {
  if (name == "cosine") return DistillLoss::kCosine;
  if (name == "mse") return DistillLoss::kMse;
  if (name == "cosine+hidden") return DistillLoss::kCosineHidden;
  fail("distill: unknown loss '", name, "' (cosine, mse or cosine+hidden)");
}

std::string to_string(DistillLoss loss) {
  switch (loss) {
    case DistillLoss::kCosine: return "cosine";
    case DistillLoss::kMse: return "mse";
    case DistillLoss::kCosineHidden: return "cosine+hidden";
  }
  return "?";
}

DistillResult distill_qat(TaskModel& student, TaskModel& teacher, const std::vector<ModelInputs>& train,
                          const std::vector<ModelInputs>& eval, const DistillOptions& o) {
  validate(o, train, eval);
  check_compatible(student, teacher);
  for (auto& [name, q] : named_quantizers(student.module())) {
    QDQBERT_CHECK(!q->is_enabled() || !q->is_quant_enabled() || q->has_amax() || q->learns_range(), "distill: quantizer '",
                  name, "' of the student has no amax (dynamic): calibrate the student first (qdqbert-cli calibrate)");
  }
  student.module().eval();  // dropout off; QuantLinear does not cache weights that need gradients
  teacher.module().eval();
  DistillResult r;
  r.train_batches = static_cast<int64_t>(train.size());
  for (const auto& b : train) r.train_sentences += b.input_ids.size(0);
  const Embeddings reference = embed_batches_sharded(teacher, eval, 0);  // one process: embed_batches
  r.eval_sentences = reference.sentence_embedding.size(0);
  auto evaluate = [&](int64_t step) {
    r.evals.push_back({step, compare_embeddings(reference, embed_batches_sharded(student, eval, 0), o.k)});
  };
  evaluate(0);

  r.learned_amax_quantizers = o.learn_amax ? start_learning_ranges(student, o.range_learning) : 0;
  const StudentParameters trainable = student_parameters(student, o.weight_decay);
  std::vector<at::Tensor> weights = trainable.decay;
  weights.insert(weights.end(), trainable.no_decay.begin(), trainable.no_decay.end());
  auto opt = make_optimizer(trainable, o);
  // Several processes (distributed::init): rank 0's weights everywhere, each training batch split across the
  // ranks, gradients averaged during backward; no-ops for one process.
  distributed::broadcast_parameters(student.module());
  distributed::GradientReducer reducer(student.module().parameters());
  const int64_t n = r.train_batches;
  r.total_steps = o.steps > 0 ? o.steps : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(n))));
  const int64_t warmup = static_cast<int64_t>(std::llround(o.warmup_ratio * static_cast<double>(r.total_steps)));
  const bool hidden = o.loss == DistillLoss::kCosineHidden;
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order;
  const auto t0 = Clock::now();
  for (int64_t step = 0; step < r.total_steps; ++step) {
    if (step % n == 0) order = permutation(n, rng);
    const distributed::BatchShard part =
        distributed::shard_batch(train[static_cast<size_t>(order[static_cast<size_t>(step % n)])]);
    ModelInputs in = part.inputs;
    if (hidden) in.output_hidden_states = true;
    ModelOutput t;
    {
      torch::NoGradGuard no_grad;
      t = teacher.run(in);
    }
    const double lr = lr_at(step, r.total_steps, warmup, o.lr, "linear");
    for (auto& g : opt->param_groups()) {
      auto& go = static_cast<torch::optim::AdamWOptions&>(g.options());
      const bool ranges = &g == &opt->param_groups().back() && o.learn_amax && r.learned_amax_quantizers > 0;
      go.lr(ranges && o.amax_lr > 0 ? lr * o.amax_lr / o.lr : lr);
    }
    opt->zero_grad();
    at::Tensor loss = distill_loss(o.loss, student.run(in), t, in.attention_mask);
    const double value = distributed::mean_over_ranks(loss.item<double>() * part.loss_scale);
    QDQBERT_CHECK(std::isfinite(value), "distill: the loss became ", value, " at step ", step + 1,
                  " (lower the learning rate)");
    reducer.expect_backward();
    (part.loss_scale == 1.0 ? loss : loss * part.loss_scale).backward();
    reducer.synchronize();
    if (o.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(weights, o.max_grad_norm);
    opt->step();
    r.loss.push_back(value);
    r.lr.push_back(lr);
    const int64_t done = step + 1;
    const bool eval_now = done == r.total_steps || (o.eval_every > 0 && done % o.eval_every == 0);
    if (eval_now) evaluate(done);
    if (o.progress) {
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      DistillProgress p;
      p.step = done;
      p.total = r.total_steps;
      p.loss = value;
      p.lr = lr;
      p.steps_per_second = secs > 0 ? static_cast<double>(done) / secs : 0;
      p.eta_seconds = p.steps_per_second > 0 ? static_cast<double>(r.total_steps - done) / p.steps_per_second : 0;
      p.eval = eval_now ? &r.evals.back() : nullptr;
      o.progress(p);
    }
  }
  r.train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.seconds_per_step = r.train_seconds / static_cast<double>(r.total_steps);
  if (r.learned_amax_quantizers > 0) {
    for (auto& [name, q] : named_quantizers(student.module())) {
      if (q->learns_range()) q->freeze_learned_amax();
    }
  }
  student.module().eval();
  return r;
}

}  // namespace qdqbert::workflow
