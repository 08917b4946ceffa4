// qdqbert-cli qat: quantization-aware training by distillation from the FP32 teacher on plain text.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>

#include "cli.h"
#include "qdqbert/distributed/distributed.h"
#include "qdqbert/error.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/file.h"
#include "qdqbert/tokenization/tokenizer.h"
#include "qdqbert/workflow/distill.h"
#include "qdqbert/workflow/embed.h"
#include "qdqbert/workflow/quant_trainer.h"

namespace qdqbert::cli {
namespace {

namespace fs = std::filesystem;

struct QatArgs {
  std::string model, teacher, train_text, eval_text, output, quant_config, loss = "cosine", range_learning = "clip",
      batching = "length";
  int64_t steps = 0, batch_size = 32, max_length = 128, eval_every = 0, train_lines = 0, eval_lines = 0;
  double epochs = 0, lr = 2e-5, amax_lr = 0, warmup_ratio = 0.1, weight_decay = 0.01, max_grad_norm = 1.0;
  uint64_t seed = 42;
  bool learn_amax = false, overwrite = false, strict = false;
  int threads = 0;
  std::string dist_backend = "gloo";  // several processes (WORLD_SIZE > 1)
  int64_t dist_timeout = 0;
};

void check_same_vocabulary(const tokenization::Tokenizer& s, const tokenization::Tokenizer& t,
                           const QatArgs& a) {
  QDQBERT_CHECK(s.vocab_size() == t.vocab_size(), "the student's vocabulary (", s.vocab_size(), " tokens, '", a.model,
                "') differs from the teacher's (", t.vocab_size(), " tokens, '", a.teacher, "')");
  for (int64_t id = 0; id < s.vocab_size(); ++id) {
    QDQBERT_CHECK(s.id_to_token(id) == t.id_to_token(id), "the student's vocabulary ('", a.model,
                  "') differs from the teacher's ('", a.teacher, "') at id ", id, ": '", s.id_to_token(id), "' vs '",
                  t.id_to_token(id), "'");
  }
}

std::vector<std::string> first_lines(const std::string& path, int64_t limit) {
  auto lines = workflow::read_text_lines(path);
  if (limit > 0 && static_cast<int64_t>(lines.size()) > limit) lines.resize(static_cast<size_t>(limit));
  return lines;
}

std::string duration(double s) {
  char b[32];
  if (s >= 3600) {
    std::snprintf(b, sizeof(b), "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(std::fmod(s, 3600) / 60));
  } else {
    std::snprintf(b, sizeof(b), "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(std::fmod(s, 60)));
  }
  return b;
}

void print_progress(const workflow::DistillProgress& p) {
  const int width = 24, filled = static_cast<int>(width * p.step / std::max<int64_t>(1, p.total));
  std::fprintf(stderr, "\rqat [%s%s] step %lld/%lld loss %.5f %.2f steps/s ETA %s ", std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), static_cast<long long>(p.step),
               static_cast<long long>(p.total), p.loss, p.steps_per_second, duration(p.eta_seconds).c_str());
  if (p.eval) {
    const auto& f = p.eval->fidelity;
    std::fprintf(stderr, "\nqat eval at step %lld: cosine mean %.4f p5 %.4f min %.4f recall@%lld %.3f top-1 %.3f\n",
                 static_cast<long long>(p.step), f.cosine_mean, f.cosine_p5, f.cosine_min, static_cast<long long>(f.k),
                 f.recall_at_k, f.top1_unchanged);
  }
  if (p.step == p.total && !p.eval) std::fprintf(stderr, "\n");
}

void run(const QatArgs& a) {
  set_threads(a.threads);
  check_output_is_not_input("--output", a.output,
                            {{"--model", a.model}, {"--teacher", a.teacher}, {"--train-text", a.train_text},
                             {"--eval-text", a.eval_text}});
  // Everything is written into a staging folder, renamed into place at the very end: a failed or killed
  // run never leaves a half-written checkpoint at --output. Created first, so an unwritable place fails
  // before minutes of training.
  // Several processes (WORLD_SIZE > 1, tools/launch.sh): --batch-size lines per process, and only rank 0
  // prints, stages and writes.
  distributed::InitOptions dist;
  dist.backend = a.dist_backend;
  dist.timeout = std::chrono::seconds(a.dist_timeout);
  distributed::init(dist);
  distributed::mute_stdout_on_other_ranks();
  std::optional<io::StagedDirectory> out;
  if (distributed::is_main()) out.emplace(a.output, a.overwrite);
  std::vector<std::string> train = first_lines(a.train_text, a.train_lines);
  const std::vector<std::string> eval = first_lines(a.eval_text, a.eval_lines);
  const auto tok = tokenization::load_tokenizer(a.model);
  check_same_vocabulary(*tok, *tokenization::load_tokenizer(a.teacher), a);
  auto student = load_model(a.model, "base", a.quant_config, a.strict);
  auto teacher = load_model(a.teacher, "base", "", a.strict);
  for (auto& [name, q] : named_quantizers(teacher->module())) q->disable();
  for (auto& p : teacher->module().parameters()) p.set_requires_grad(false);

  // One seeded shuffle of the training lines, so that each batch mixes the text's sources.
  std::mt19937_64 rng(a.seed);
  {
    std::vector<std::string> shuffled;
    for (int64_t i : workflow::permutation(static_cast<int64_t>(train.size()), rng)) shuffled.push_back(train[static_cast<size_t>(i)]);
    train.swap(shuffled);
  }
  // Batches of like length: each run of kLengthGroupBatches batches' worth of the shuffled lines sorted by
  // token count (equal counts stay shuffled). On short text of mixed length, batches of the shuffled lines as
  // they come are mostly padding. distill_qat shuffles the order of the batches each epoch.
  const int64_t world = distributed::world_size();
  if (a.batching == "length") {
    train = workflow::sort_by_token_count(*tok, train, a.max_length,
                                          workflow::kLengthGroupBatches * a.batch_size * world);
  }
  auto train_batches = workflow::encode_batches(*tok, train, a.max_length, a.batch_size * world);  // global batches
  if (world > 1 && train_batches.size() > 1 && train_batches.back().input_ids.size(0) < world) {
    train_batches.pop_back();  // too few lines to give each process one
  }
  // The evaluation in batches of like length too, as ptq-study evaluates (its figures are order-independent).
  const auto eval_batches = workflow::encode_batches(
      *tok, a.batching == "length" ? workflow::sort_by_token_count(*tok, eval, a.max_length) : eval, a.max_length,
      a.batch_size);

  workflow::DistillOptions o;
  o.steps = a.steps;
  o.epochs = a.steps > 0 ? 0 : (a.epochs > 0 ? a.epochs : 1);
  o.lr = a.lr;
  o.amax_lr = a.amax_lr;
  o.warmup_ratio = a.warmup_ratio;
  o.weight_decay = a.weight_decay;
  o.max_grad_norm = a.max_grad_norm;
  o.learn_amax = a.learn_amax;
  o.range_learning = nn::parse_range_learning(a.range_learning);
  o.loss = workflow::parse_distill_loss(a.loss);
  o.eval_every = a.eval_every;
  o.seed = a.seed;
  if (distributed::is_main()) {
    o.progress = print_progress;
    std::fprintf(stderr, "qat: %zu training lines in %zu batches, %zu evaluation lines, %s loss%s\n", train.size(),
                 train_batches.size(), eval.size(), a.loss.c_str(),
                 a.learn_amax ? (", learned ranges (" + a.range_learning + ")").c_str() : "");
  }
  const auto result = workflow::distill_qat(*student, *teacher, train_batches, eval_batches, o);
  if (!distributed::is_main()) return distributed::shutdown();

  io::save_pretrained(*student, out->path());
  io::copy_tokenizer_files(a.model, out->path());
  if (!a.quant_config.empty()) {
    io::write_file_atomic((fs::path(out->path()) / "quant_config.json").string(),
                          io::read_file(a.quant_config, "quant config"));
  }
  workflow::DistillReportInfo info;
  info.model = a.model;
  info.teacher = a.teacher;
  info.train_text = a.train_text;
  info.eval_text = a.eval_text;
  info.quant_config = a.quant_config;
  info.options = o;
  info.threads = a.threads;
  std::vector<int64_t> lengths;
  for (const auto& b : eval_batches) {
    const auto l = workflow::sequence_lengths(b.attention_mask);
    lengths.insert(lengths.end(), l.begin(), l.end());
  }
  info.flops = workflow::gemm_flops(*student, lengths);
  for (auto& [name, q] : named_quantizers(student->module())) {
    ++info.quantizers;
    info.enabled_quantizers += q->is_enabled();
  }
  const std::string md = workflow::write_distill_report(result, info, out->path());
  out->commit();
  std::cout << md;
  std::printf("\nwrote %s (checkpoint, tokenizer, report.md, report.json, training_curve.svg%s)\n",
              out->final_path().c_str(), a.quant_config.empty() ? "" : ", quant_config.json");
  distributed::shutdown();
}

Register reg({"qat", "Quantization-aware training by distillation from the FP32 teacher on plain text", [](CLI::App& app) {
                auto a = std::make_shared<QatArgs>();
                app.add_option("--model", a->model, "calibrated QDQ checkpoint folder (calibrate / ptq-study's calibrated/)")
                    ->required();
                app.add_option("--teacher", a->teacher, "the FP32 checkpoint folder it was calibrated from")->required();
                app.add_option("--train-text", a->train_text, "UTF-8 training text, one input per line")->required();
                app.add_option("--eval-text", a->eval_text, "UTF-8 evaluation text (disjoint from the training text)")
                    ->required();
                app.add_option("--output", a->output, "folder to write (checkpoint + report)")->required();
                app.add_option("--quant-config", a->quant_config,
                               "quantizer configuration JSON for the student (default: every quantizer enabled)");
                auto* steps = app.add_option("--steps", a->steps, "optimizer steps")->check(positive_number());
                app.add_option("--epochs", a->epochs, "passes over the training text (default 1)")
                    ->check(positive_number())
                    ->excludes(steps);
                app.add_option("--batch-size", a->batch_size, "lines per step (per process when several run)")
                    ->check(int_range(1, kMaxBatchSize));
                app.add_option("--lr", a->lr, "AdamW learning rate")->check(positive_number());
                app.add_option("--warmup-ratio", a->warmup_ratio, "share of the steps for linear warmup")
                    ->check(number_range(0.0, 0.99));
                app.add_option("--weight-decay", a->weight_decay)->check(non_negative_number());
                app.add_option("--max-grad-norm", a->max_grad_norm, "gradient clipping (0 = off)")
                    ->check(non_negative_number());
                app.add_option("--max-length", a->max_length, "truncate to this many tokens")->check(int_range(3, 512));
                app.add_option("--batching", a->batching,
                               "length (default): batches of lines of like token count, in shuffled order (little padding); "
                               "shuffled: batches of the shuffled lines as they come")
                    ->check(CLI::IsMember({"length", "shuffled"}));
                app.add_flag("--learn-amax", a->learn_amax,
                             "train the activation ranges too (learn_amax / Clip); otherwise amax stays fixed");
                app.add_option("--range-learning", a->range_learning,
                               "how --learn-amax trains a range: clip (the toolkit's Clip: gradient of the clipped "
                               "values only) or lsq (learned step size on log(amax): clipping traded against rounding)")
                    ->check(CLI::IsMember({"clip", "lsq"}));
                app.add_option("--amax-lr", a->amax_lr, "learning rate of the learned ranges (default: --lr)")
                    ->check(non_negative_number());
                app.add_option("--loss", a->loss, "distillation loss")
                    ->check(CLI::IsMember({"cosine", "mse", "cosine+hidden"}));
                app.add_option("--eval-every", a->eval_every, "also evaluate every K steps")->check(non_negative_number());
                app.add_option("--train-lines", a->train_lines, "use the first N training lines (0 = all)")
                    ->check(non_negative_number());
                app.add_option("--eval-lines", a->eval_lines, "use the first N evaluation lines (0 = all)")
                    ->check(non_negative_number());
                app.add_option("--seed", a->seed, "shuffle seed (runs are deterministic for a seed and thread count)");
                app.add_flag("--overwrite", a->overwrite, "replace an existing --output folder");
                add_strict_flag(app, a->strict);
                add_threads_option(app, a->threads);
                app.add_option("--dist-backend", a->dist_backend,
                               "several processes (WORLD_SIZE > 1, e.g. tools/launch.sh): gloo (CPU) or nccl (CUDA, "
                               "only with a LibTorch built with NCCL)")
                    ->check(CLI::IsMember({"gloo", "nccl"}));
                app.add_option("--dist-timeout", a->dist_timeout,
                               "seconds a process waits for the others before failing (0 = $QDQBERT_DIST_TIMEOUT, "
                               "else 300)")
                    ->check(non_negative_number());
                app.final_callback([a] { run(*a); });
              }});

}  // namespace
}  // namespace qdqbert::cli
