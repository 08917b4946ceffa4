// squad_qa — the C++ counterpart of Hugging Face's quantization-qdqbert example (run_quant_qa.py with
// trainer_quant_qa.py and utils_qa.py): fine-tune (optionally with quantization-aware training), calibrate
// (post-training quantization), evaluate EM/F1 on SQuAD v1.1 or v2.0, predict on a test file, save the
// checkpoint, and export ONNX.
//
// What to do: --do-train, --do-calib, --do-eval, --do-predict, --save-onnx (at least one). Flag combinations
// that cannot work (a --do-* without its data file, --resume-from-checkpoint without --do-train or with
// --init-from-config, --save-steps < 0, --gradient-accumulation-steps < 1) are refused before any model is
// loaded or any file written: `squad_qa: error: ...` on stderr, exit status 1.
//
// Loading: --model is a checkpoint folder (config.json, weights, vocab.txt). Without --strict a pretrained
// encoder may sit under the QA head (missing qa_outputs.* are initialized and reported on stderr, as
// Hugging Face does); with --strict every key must match. --init-from-config builds a random model from
// --model/config.json instead.
//
// Calibration (--do-calib), as trainer_quant_qa.py's QuantTrainer.calibrate: the training features in a
// shuffled order (the same permutation scheme as a training epoch, drawn from its own
// std::mt19937_64(--seed), i.e. the order of training epoch 0), in batches of --per-device-eval-batch-size;
// by default it stops after the batch where (step + 1) * batch_size >= --calib-num (default 128, the
// reference's calib_num), so ceil(calib_num / batch) batches. An explicit --num-calib-batch N overrides this:
// exactly N such batches (fewer only when the data runs out, with a note). The line
//   calibrated K quantizers with METHOD on B batches (S samples, shuffled) in T s
// says what was used.
//
// Training (--do-train): AdamW (no decay for biases and LayerNorm weights), linear/cosine schedule with
// ceil(warmup_ratio * total) warmup steps, gradient clipping at --max-grad-norm. With
// --gradient-accumulation-steps N each micro-batch loss is divided by N and the optimizer steps after every
// N micro-batches (the last group of an epoch may be shorter); optimizer steps per epoch =
// ceil(micro_batches_per_epoch / N), total steps = ceil(num_train_epochs * steps_per_epoch) (the progress
// bar, warmup and schedule count optimizer steps, like HF Trainer). Data order: epoch e is a Fisher-Yates
// shuffle of 0..n-1 (for i = n-1 down to 1: j = rng() % (i + 1), swap) with one std::mt19937_64 seeded by
// --seed and drawn once per epoch in order, so the order is the same with every standard library. Before
// each optimizer step the torch generator is reseeded from (--seed, global step) (splitmix64), so dropout
// does not depend on what ran before that step.
//
// Checkpoints (--save-steps N > 0): every N optimizer steps OUTPUT_DIR/checkpoint-<global_step>/ gets the
// model (config.json + model.safetensors), vocab.txt (+ tokenizer_config.json), optimizer.pt (the LibTorch
// AdamW state) and trainer_state.json (global_step, total_steps, epoch position, seed, and a fingerprint of
// everything a resume must agree on: model architecture and vocabulary, train file path + content hash +
// number of features, max_seq_length, doc_stride, batch size, gradient accumulation, learning rate and
// schedule, epochs, seed, quantization flags, calibration). The folder is built as
// checkpoint-<step>.tmp-<pid> and renamed into place, so a killed run never leaves a half-written checkpoint.
//
// Resume (--resume-from-checkpoint DIR, needs --do-train): DIR must hold trainer_state.json, config.json,
// model.safetensors and optimizer.pt, and its fingerprint must equal this run's (a mismatch is an error
// naming each differing field, both values and DIR, raised before anything is written). The model is loaded
// strictly from DIR (with this run's quantization descriptors; --model only provides the tokenizer and must
// describe the same architecture), quantizers are configured again (except --recalibrate-weights, whose
// amax is already in DIR; calibration is not repeated either), the optimizer state is restored, the
// shuffles of the finished epochs are drawn again, and training continues at global_step: the result is
// the one an uninterrupted run gives (bit for bit with the same --threads).
//
// Evaluation (--do-eval on --predict-file) writes predictions.json, nbest_predictions.json, logits.json,
// features.json and eval_results.json ("exact_match", "f1", and with --version-2-with-negative the
// squad_v2 metric fields exact, total, HasAns_*, NoAns_*, best_*; null_odds.json too). Prediction
// (--do-predict on --test-file, else --predict-file) writes predict_predictions.json,
// predict_nbest_predictions.json (v2: predict_null_odds.json) and, when the file has gold answers,
// predict_results.json. --per-device-eval-batch-size is the batch size of evaluation, prediction and
// calibration.
//
// Several processes (WORLD_SIZE > 1 in the environment, e.g. tools/launch.sh --nproc N or torchrun; README
// "Data-parallel training"): --dist-backend gloo|nccl, --dist-timeout S. Rank 0's weights are broadcast; a
// training micro-batch and a calibration batch are global batches of the per-device size x N features, split
// into N contiguous parts in the same shuffled order on every rank, with gradients averaged (bucketed, during
// backward) before clipping; each rank draws its own dropout masks (rank 0 those of one process). Evaluation
// and prediction run batch k on rank k mod N and gather the logits, so the results are those of one process.
// Only rank 0 prints (the others' stdout goes to /dev/null; errors name the rank) and writes files. A resumed
// run needs the WORLD_SIZE of the run that wrote the checkpoint (it is part of the fingerprint).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "qdqbert/config.h"
#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/postprocess.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/runtime.h"
#include "squad_args.h"

using namespace qdqbert;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace squad_qa {
namespace {

/// What a run reads before anything is written: the training features, the evaluation and prediction data
/// and, with --do-train, the schedule, the fingerprint and the checkpoint to resume from.
struct RunData {
  std::vector<squad::Feature> train_features;
  EvalData eval_data, predict_data;
  Schedule schedule;
  Fingerprint fingerprint;
  Resume resume;
};

/// Data first (reads only): bad files and a mismatched checkpoint stop the run before anything is written.
RunData load_data(const Args& a) {
  RunData d;
  auto encoder = squad::make_bert_text_encoder(a.model);
  squad::FeatureOptions fo;
  fo.max_seq_length = a.max_seq_length;
  fo.doc_stride = a.doc_stride;
  if (a.do_train || a.do_calib) {
    auto ds = squad::read_squad(a.train_file);
    if (a.max_train_samples > 0 && static_cast<int64_t>(ds.examples.size()) > a.max_train_samples) {
      ds.examples.resize(static_cast<size_t>(a.max_train_samples));
    }
    d.train_features = squad::build_features(ds.examples, *encoder, fo);
    QDQBERT_CHECK(!d.train_features.empty(), "--train-file ", a.train_file, " gives no training features");
    std::printf("train: %zu questions, %zu features\n", ds.examples.size(), d.train_features.size());
  }
  if (a.do_eval) {
    d.eval_data = load_eval_data(a.predict_file, a.max_eval_samples, *encoder, fo);
    if (!a.version_2_with_negative) {
      const squad::Example* u = first_unanswered(d.eval_data.ds);
      QDQBERT_CHECK(u == nullptr, "--do-eval: ", a.predict_file, ": question id \"", u ? u->id : "",
                    "\" has no answer; pass --version-2-with-negative for SQuAD v2 data");
    }
  }
  if (a.do_predict) {
    d.predict_data = load_eval_data(a.test_file.empty() ? a.predict_file : a.test_file, a.max_predict_samples,
                                    *encoder, fo);
  }
  if (a.do_train) {
    d.schedule = make_schedule(a, d.train_features.size());
    d.fingerprint = make_fingerprint(a, d.schedule);
    if (!a.resume_from_checkpoint.empty()) d.resume = check_resume(a, d.fingerprint, d.schedule);
  }
  return d;
}

/// The model with the descriptors of the quantization flags (set before construction, as in Python), on
/// `dev`, its quantizers configured.
std::shared_ptr<TaskModel> build_model(const Args& a, const Resume& resume, const torch::Device& dev) {
  io::PretrainedOptions po;
  po.task = "question-answering";
  po.strict = a.strict;
  po.log_summary = distributed::is_main();
  po.quant_desc_input = a.quant.input_desc();
  po.quant_desc_weight = a.quant.weight_desc();
  std::shared_ptr<TaskModel> model;
  if (!resume.dir.empty()) {
    io::PretrainedOptions pr = po;
    pr.strict = true;
    model = io::from_pretrained(resume.dir, pr);
  } else if (a.init_from_config) {
    Config c = Config::from_json_file(a.model + "/config.json");
    c.quant_desc_input = po.quant_desc_input;
    c.quant_desc_weight = po.quant_desc_weight;
    model = create_model("question-answering", c);
  } else {
    model = io::from_pretrained(a.model, po);
  }
  model->module().to(dev);
  distributed::broadcast_parameters(model->module());  // every rank starts from rank 0's weights
  if (!resume.dir.empty()) {
    // The checkpoint's amax already went through recalibration, fusion and clipping; the enabled/disabled
    // state of the quantizers is not stored, so the rules are applied again.
    workflow::QuantTrainerOptions q = a.quant;
    q.recalibrate_weights = false;
    for (const auto& l : workflow::configure_model(*model, q, /*calib=*/false)) std::printf("%s\n", l.c_str());
  } else {
    for (const auto& l : workflow::configure_model(*model, a.quant, /*calib=*/a.do_calib)) {
      std::printf("%s\n", l.c_str());
    }
  }
  return model;
}

/// --do-calib: calibration on shuffled training batches, then the quantizer rules again.
void calibrate_step(TaskModel& model, const std::vector<squad::Feature>& train_features, const Args& a,
                    const Resume& resume, const torch::Device& dev) {
  if (!resume.dir.empty()) {
    std::printf("calibration skipped: the quantizers of %s were calibrated before its first step\n",
                resume.dir.c_str());
    return;
  }
  // Several processes: a calibration batch is a global batch of bs x world features and this rank takes its
  // part; the calibrators merge across ranks (max exactly; histograms bit for bit, calibrator.h).
  const int64_t world = distributed::world_size();
  const auto n = static_cast<int64_t>(train_features.size()), bs = a.per_device_eval_batch_size * world;
  std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
  const std::vector<int64_t> order = workflow::permutation(n, rng);
  std::vector<ModelInputs> batches;
  int64_t samples = 0;
  for (int64_t b = 0; b < n; b += bs) {
    const int64_t e = std::min(n, b + bs);
    if (e - b < world) {
      std::fprintf(stderr,
                   "squad_qa: note: the last calibration batch (%lld features) is dropped: it cannot give each of "
                   "the %lld processes a feature\n",
                   static_cast<long long>(e - b), static_cast<long long>(world));
      break;
    }
    const distributed::Shard part = distributed::split_rows(e - b, distributed::rank(), world);
    batches.push_back(
        to_inputs(train_features, order.data() + b + part.begin, static_cast<size_t>(part.size()), false, dev));
    samples += e - b;
    const auto k = static_cast<int64_t>(batches.size());
    if (a.num_calib_batch_given ? k >= a.quant.num_calib_batch : k * bs >= a.calib_num) break;
  }
  if (a.num_calib_batch_given && static_cast<int64_t>(batches.size()) < a.quant.num_calib_batch) {
    std::fprintf(stderr, "squad_qa: note: --num-calib-batch %lld asks for more than the %lld training features "
                 "give at batch size %lld; calibrating on %zu batches\n",
                 static_cast<long long>(a.quant.num_calib_batch), static_cast<long long>(n),
                 static_cast<long long>(bs), batches.size());
  }
  auto t0 = Clock::now();
  auto r = workflow::calibrate(model, batches, a.quant.calibration());
  std::printf("calibrated %zu quantizers with %s on %zu batches (%lld samples, shuffled) in %.1f s%s\n",
              r.calibrated.size(), a.quant.calibrator.c_str(), batches.size(), static_cast<long long>(samples),
              std::chrono::duration<double>(Clock::now() - t0).count(),
              world > 1 ? (" across " + std::to_string(world) + " processes").c_str() : "");
  for (const auto& l : workflow::configure_model(model, a.quant, /*calib=*/false)) std::printf("%s\n", l.c_str());
  workflow::print_quant_summary(model, std::cout);
}

/// --do-eval: predictions, logits, features and metrics of --predict-file.
void eval_step(TaskModel& model, const EvalData& eval_data, const Args& a, const torch::Device& dev) {
  QaOutput o = run_qa(model, eval_data, a, dev);
  if (!distributed::is_main()) return;
  std::string summary;
  ojson res = compute_metrics(a, eval_data.ds, o.result, &summary);
  res["eval_samples"] = eval_data.features.size();
  res["eval_seconds"] = o.seconds;
  squad::write_text_file(a.output_dir + "/predictions.json", o.result.predictions_json());
  squad::write_text_file(a.output_dir + "/nbest_predictions.json", o.result.nbest_json());
  if (a.version_2_with_negative) {
    squad::write_text_file(a.output_dir + "/null_odds.json", o.result.null_odds_json());
  }
  nlohmann::json logits = {{"start_logits", o.starts}, {"end_logits", o.ends}};
  squad::write_text_file(a.output_dir + "/logits.json", logits.dump());
  squad::write_text_file(a.output_dir + "/features.json",
                         squad::features_to_json(eval_data.features, eval_data.ds.examples.size()));
  squad::write_text_file(a.output_dir + "/eval_results.json", res.dump(2) + "\n");
  std::printf("eval: %s (%zu questions, %zu features, %.1f s)\n", summary.c_str(), eval_data.ds.examples.size(),
              eval_data.features.size(), o.seconds);
}

/// --do-predict: predictions of --test-file (else --predict-file), metrics when it has gold answers.
void predict_step(TaskModel& model, const EvalData& predict_data, const Args& a, const torch::Device& dev) {
  QaOutput o = run_qa(model, predict_data, a, dev);
  if (!distributed::is_main()) return;
  const std::string pred_path = a.output_dir + "/predict_predictions.json";
  squad::write_text_file(pred_path, o.result.predictions_json());
  squad::write_text_file(a.output_dir + "/predict_nbest_predictions.json", o.result.nbest_json());
  if (a.version_2_with_negative) {
    squad::write_text_file(a.output_dir + "/predict_null_odds.json", o.result.null_odds_json());
  }
  std::string summary = "no gold answers, no metric";
  const squad::Example* u = first_unanswered(predict_data.ds);
  const bool labelled = a.version_2_with_negative ? has_labels_v2(predict_data.ds) : u == nullptr;
  if (labelled) {
    ojson res = compute_metrics(a, predict_data.ds, o.result, &summary);
    res["predict_samples"] = predict_data.features.size();
    res["predict_seconds"] = o.seconds;
    squad::write_text_file(a.output_dir + "/predict_results.json", res.dump(2) + "\n");
  } else if (!a.version_2_with_negative && has_labels_v2(predict_data.ds)) {
    // Some questions answered, some not: SQuAD v2 data read as v1.1.
    std::fprintf(stderr,
                 "squad_qa: note: %s has questions without an answer (question id \"%s\"); no v1.1 metric "
                 "(pass --version-2-with-negative for SQuAD v2 data)\n",
                 predict_data.path.c_str(), u->id.c_str());
  }
  std::printf("predict: %s -> %s (%zu questions, %zu features, %.1f s)\n", summary.c_str(), pred_path.c_str(),
              predict_data.ds.examples.size(), predict_data.features.size(), o.seconds);
}

/// --save-onnx: model.onnx (Q/DQ) in the output dir.
void export_onnx(TaskModel& model, const Args& a) {
  model.module().to(torch::kCPU);
  auto r = onnx::export_model(model, a.output_dir + "/model.onnx");
  std::printf("exported %s/model.onnx (%lld QuantizeLinear)\n", a.output_dir.c_str(),
              static_cast<long long>(r.quantize_linear));
}

/// The whole run after the command line is parsed; errors are thrown.
void run(const Args& a) {
  validate_flags(a);
  // WORLD_SIZE > 1 (tools/launch.sh, torchrun): join the other processes; only rank 0 prints and writes.
  distributed::InitOptions dist;
  dist.backend = a.dist_backend;
  dist.timeout = std::chrono::seconds(a.dist_timeout);
  distributed::init(dist);
  distributed::mute_stdout_on_other_ranks();
  const bool rank0 = distributed::is_main();
  if (a.threads > 0) at::set_num_threads(a.threads);
  if (rank0) warn_blas_threading_once();  // after the thread count is known
  torch::manual_seed(static_cast<uint64_t>(a.seed));
  const auto gpu = static_cast<c10::DeviceIndex>(distributed::cuda_device_index());  // LOCAL_RANK's GPU
  const torch::Device dev = a.device == "cuda" && distributed::world_size() > 1 ? torch::Device(torch::kCUDA, gpu)
                                                                                : torch::Device(a.device);

  RunData d = load_data(a);
  std::shared_ptr<TaskModel> model = build_model(a, d.resume, dev);
  std::unique_ptr<torch::optim::AdamW> opt;
  if (a.do_train) {
    opt = make_optimizer(*model, a);
    if (!d.resume.dir.empty()) load_optimizer_state(*opt, d.resume.dir, dev);
  }
  if (rank0) fs::create_directories(a.output_dir);

  if (a.do_calib) calibrate_step(*model, d.train_features, a, d.resume, dev);
  if (a.do_train) train(*model, *opt, d.train_features, a, d.schedule, d.fingerprint, d.resume, dev);
  if ((a.do_train || a.do_calib) && rank0) {
    save_model_dir(*model, a.model, a.output_dir);
    std::printf("saved checkpoint to %s\n", a.output_dir.c_str());
  }
  if (a.do_eval) eval_step(*model, d.eval_data, a, dev);
  if (a.do_predict) predict_step(*model, d.predict_data, a, dev);
  if (a.save_onnx && rank0) export_onnx(*model, a);
  distributed::shutdown();
}

}  // namespace
}  // namespace squad_qa

int main(int argc, char** argv) {
  qdqbert::retain_freed_memory();  // activations are freed and allocated again every step: keep them mapped
  CLI::App app{"squad_qa: SQuAD fine-tuning, calibration (PTQ), QAT, evaluation and prediction with QDQBERT"};
  squad_qa::Args a;
  squad_qa::add_flags(app, a);
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // result lines stay in order with the progress on stderr in logs
  a.num_calib_batch_given = app.count("--num-calib-batch") > 0;
  try {
    squad_qa::run(a);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "squad_qa: error: %s%s\n", qdqbert::distributed::error_prefix().c_str(),
                 e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "squad_qa: error: %s%s\n", qdqbert::distributed::error_prefix().c_str(), e.what());
    return 1;
  }
  return 0;
}
