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
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/file.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/metrics.h"
#include "qdqbert/squad/postprocess.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/quant_config.h"
#include "quant_trainer_flags.h"

using namespace qdqbert;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ojson = nlohmann::ordered_json;

struct Args {
  std::string model, train_file, predict_file, test_file, output_dir, resume_from_checkpoint;
  bool do_train = false, do_calib = false, do_eval = false, do_predict = false, save_onnx = false,
       init_from_config = false, strict = false, version_2_with_negative = false;
  workflow::QuantTrainerOptions quant;
  bool num_calib_batch_given = false;  // --num-calib-batch on the command line (overrides --calib-num)
  int64_t calib_num = 128;
  double learning_rate = 5e-5, warmup_ratio = 0.0, weight_decay = 0.0, max_grad_norm = 1.0;
  double num_train_epochs = 2.0, null_score_diff_threshold = 0.0;
  int64_t per_device_train_batch_size = 12, per_device_eval_batch_size = 64, max_seq_length = 384, doc_stride = 128;
  int64_t gradient_accumulation_steps = 1, save_steps = 0;
  int64_t n_best_size = 20, max_answer_length = 30, seed = 42, max_train_samples = 0, max_eval_samples = 0,
          max_predict_samples = 0;
  std::string lr_scheduler = "linear", device = "cpu";
  int threads = 0;
};

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.pt";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kQaClass = "QDQBertForQuestionAnswering";

/// Flag combinations that cannot work, checked before anything is loaded or written.
void validate_flags(const Args& a) {
  QDQBERT_CHECK(a.do_train || a.do_calib || a.do_eval || a.do_predict || a.save_onnx,
                "nothing to do: pass at least one of --do-train, --do-calib, --do-eval, --do-predict, --save-onnx");
  QDQBERT_CHECK(!a.do_train || !a.train_file.empty(), "--do-train needs --train-file");
  QDQBERT_CHECK(!a.do_calib || !a.train_file.empty(),
                "--do-calib needs --train-file (calibration runs on the training features)");
  QDQBERT_CHECK(!a.do_eval || !a.predict_file.empty(), "--do-eval needs --predict-file");
  QDQBERT_CHECK(!a.do_predict || !a.test_file.empty() || !a.predict_file.empty(),
                "--do-predict needs --test-file (or --predict-file)");
  QDQBERT_CHECK(a.resume_from_checkpoint.empty() || a.do_train,
                "--resume-from-checkpoint needs --do-train (it continues an interrupted training run)");
  QDQBERT_CHECK(a.resume_from_checkpoint.empty() || !a.init_from_config,
                "--resume-from-checkpoint cannot be combined with --init-from-config (the weights come from the "
                "checkpoint)");
  QDQBERT_CHECK(a.save_steps >= 0, "--save-steps must be >= 0 (0 = no checkpoints), got ", a.save_steps);
  QDQBERT_CHECK(a.gradient_accumulation_steps >= 1, "--gradient-accumulation-steps must be >= 1, got ",
                a.gradient_accumulation_steps);
}

/// A batch of the features `idx[0..count)` (all of one length).
ModelInputs to_inputs(const std::vector<squad::Feature>& f, const int64_t* idx, size_t count, bool labels,
                      const torch::Device& dev) {
  const int64_t n = static_cast<int64_t>(count);
  const int64_t len = static_cast<int64_t>(f[static_cast<size_t>(idx[0])].input_ids.size());
  at::Tensor ids = torch::empty({n, len}, torch::kLong), types = torch::empty({n, len}, torch::kLong),
             mask = torch::empty({n, len}, torch::kLong), sp = torch::empty({n}, torch::kLong),
             ep = torch::empty({n}, torch::kLong);
  for (int64_t r = 0; r < n; ++r) {
    const squad::Feature& x = f[static_cast<size_t>(idx[r])];
    TORCH_CHECK(static_cast<int64_t>(x.input_ids.size()) == len, "features of different lengths in one batch");
    std::memcpy(ids[r].data_ptr<int64_t>(), x.input_ids.data(), len * sizeof(int64_t));
    std::memcpy(types[r].data_ptr<int64_t>(), x.token_type_ids.data(), len * sizeof(int64_t));
    std::memcpy(mask[r].data_ptr<int64_t>(), x.attention_mask.data(), len * sizeof(int64_t));
    sp[r] = x.start_position;
    ep[r] = x.end_position;
  }
  ModelInputs in;
  in.input_ids = ids.to(dev);
  in.token_type_ids = types.to(dev);
  in.attention_mask = mask.to(dev);
  if (labels) {
    in.start_positions = sp.to(dev);
    in.end_positions = ep.to(dev);
  }
  return in;
}

void progress(const char* what, int64_t done, int64_t total, double loss, double rate) {
  const int width = 28, filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
  std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f %.1f ex/s", what, std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               loss, rate);
  if (done == total) std::fprintf(stderr, "\n");
}

/// The documented shuffle: Fisher-Yates over 0..n-1 with j = rng() % (i + 1). mt19937_64's output is fixed by
/// the standard, so (unlike std::shuffle) the order is the same with every standard library.
std::vector<int64_t> permutation(int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

/// splitmix64 of (seed, step): the torch seed of one optimizer step.
uint64_t step_seed(int64_t seed, int64_t step) {
  uint64_t z = static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(step) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// FNV-1a 64 of a file's bytes, as 16 hex digits.
std::string file_hash(const std::string& path, const std::string& what) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : io::read_file(path, what)) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

/// Optimizer-step arithmetic of one training run (HF Trainer's, with a short last accumulation group).
struct Schedule {
  int64_t num_features = 0, micro_batches_per_epoch = 0, steps_per_epoch = 0, total_steps = 0, warmup_steps = 0;
};

Schedule make_schedule(const Args& a, size_t num_features) {
  Schedule s;
  s.num_features = static_cast<int64_t>(num_features);
  const int64_t bs = a.per_device_train_batch_size, n = a.gradient_accumulation_steps;
  s.micro_batches_per_epoch = (s.num_features + bs - 1) / bs;
  s.steps_per_epoch = (s.micro_batches_per_epoch + n - 1) / n;
  s.total_steps = static_cast<int64_t>(std::ceil(a.num_train_epochs * static_cast<double>(s.steps_per_epoch)));
  s.total_steps = std::max<int64_t>(0, s.total_steps);
  // HF TrainingArguments.get_warmup_steps: ceil(max_steps * warmup_ratio).
  s.warmup_steps = static_cast<int64_t>(std::ceil(static_cast<double>(s.total_steps) * a.warmup_ratio));
  return s;
}

/// One field a resumed run must agree on: its key in trainer_state.json, the flags it comes from, its value.
struct FpField {
  std::string key, flags;
  ojson value;
};
using Fingerprint = std::vector<FpField>;

Fingerprint make_fingerprint(const Args& a, const Schedule& s) {
  const Config c = Config::from_json_file(a.model + "/config.json");
  const auto& q = a.quant;
  const std::string cal_flags = "--calibrator/--percentile/--calib-num/--num-calib-batch/--per-device-eval-batch-size";
  ojson calibration = nullptr;
  if (a.do_calib) {
    calibration = ojson{{"calibrator", q.calibrator},
                        {"percentile", q.percentile},
                        {"batch_size", a.per_device_eval_batch_size},
                        {"calib_num", a.num_calib_batch_given ? ojson(nullptr) : ojson(a.calib_num)},
                        {"num_calib_batch", a.num_calib_batch_given ? ojson(q.num_calib_batch) : ojson(nullptr)}};
  }
  return {
      {"model_class", "--model", kQaClass},
      {"hidden_size", "--model (config.json)", c.hidden_size},
      {"num_hidden_layers", "--model (config.json)", c.num_hidden_layers},
      {"num_attention_heads", "--model (config.json)", c.num_attention_heads},
      {"intermediate_size", "--model (config.json)", c.intermediate_size},
      {"vocab_size", "--model (config.json)", c.vocab_size},
      {"vocab_txt_hash", "--model (vocab.txt)", file_hash(a.model + "/vocab.txt", "--model vocab.txt")},
      {"train_file", "--train-file", fs::absolute(a.train_file).lexically_normal().string()},
      {"train_file_hash", "--train-file", file_hash(a.train_file, "--train-file")},
      {"max_train_samples", "--max-train-samples", a.max_train_samples},
      {"num_train_features", "--train-file/--max-seq-length/--doc-stride", s.num_features},
      {"max_seq_length", "--max-seq-length", a.max_seq_length},
      {"doc_stride", "--doc-stride", a.doc_stride},
      {"per_device_train_batch_size", "--per-device-train-batch-size", a.per_device_train_batch_size},
      {"gradient_accumulation_steps", "--gradient-accumulation-steps", a.gradient_accumulation_steps},
      {"learning_rate", "--learning-rate", a.learning_rate},
      {"num_train_epochs", "--num-train-epochs", a.num_train_epochs},
      {"warmup_ratio", "--warmup-ratio", a.warmup_ratio},
      {"weight_decay", "--weight-decay", a.weight_decay},
      {"max_grad_norm", "--max-grad-norm", a.max_grad_norm},
      {"lr_scheduler", "--lr-scheduler", a.lr_scheduler},
      {"seed", "--seed", a.seed},
      {"wprec", "--wprec", q.wprec},
      {"aprec", "--aprec", q.aprec},
      {"quant_per_tensor", "--quant-per-tensor", q.quant_per_tensor},
      {"quant_disable", "--quant-disable", q.quant_disable},
      {"quant_disable_keyword", "--quant-disable-keyword", q.quant_disable_keyword},
      {"quant_disable_layer_module", "--quant-disable-layer-module", q.quant_disable_layer_module},
      {"quant_enable_layer_module", "--quant-enable-layer-module", q.quant_enable_layer_module},
      {"fuse_qkv", "--fuse-qkv", q.fuse_qkv},
      {"clip_gelu", "--clip-gelu", q.clip_gelu},
      {"recalibrate_weights", "--recalibrate-weights", q.recalibrate_weights},
      {"do_calib", "--do-calib", a.do_calib},
      {"calibration", cal_flags, calibration},
  };
}

ojson fingerprint_json(const Fingerprint& fp) {
  ojson j = ojson::object();
  for (const auto& f : fp) j[f.key] = f.value;
  return j;
}

struct Resume {
  std::string dir;
  int64_t global_step = 0;
};

ojson read_json_file(const std::string& path, const std::string& what) {
  const std::string text = io::read_file(path, what);
  try {
    return ojson::parse(text);
  } catch (const std::exception& e) {
    fail(what, ": ", path, " is not valid JSON: ", e.what());
  }
}

/// Checks that `a.resume_from_checkpoint` is a complete checkpoint of a run with the same fingerprint and
/// schedule; reads nothing else and writes nothing.
Resume check_resume(const Args& a, const Fingerprint& fp, const Schedule& s) {
  const std::string& dir = a.resume_from_checkpoint;
  const std::string what = "--resume-from-checkpoint " + dir;
  QDQBERT_CHECK(fs::is_directory(dir), what, ": not a directory");
  for (const char* f : {kStateFile, "config.json", kWeightsFile, kOptimizerFile}) {
    QDQBERT_CHECK(fs::is_regular_file(fs::path(dir) / f), what, ": the folder has no ", f,
                  " (not a complete checkpoint written by squad_qa --save-steps)");
  }
  const ojson state = read_json_file((fs::path(dir) / kStateFile).string(), what);
  QDQBERT_CHECK(state.is_object() && state.contains("fingerprint") && state.at("fingerprint").is_object() &&
                    state.contains("global_step") && state.at("global_step").is_number_integer() &&
                    state.contains("total_steps") && state.at("total_steps").is_number_integer(),
                what, ": ", kStateFile, " lacks fingerprint/global_step/total_steps");
  const ojson& saved = state.at("fingerprint");
  std::ostringstream diff;
  int mismatches = 0;
  for (const auto& f : fp) {
    const bool has = saved.contains(f.key);
    if (has && saved.at(f.key) == f.value) continue;
    diff << (mismatches++ ? "; " : "") << f.key << " (" << f.flags << "): checkpoint "
         << (has ? saved.at(f.key).dump() : std::string("<absent>")) << ", this run " << f.value.dump();
  }
  QDQBERT_CHECK(mismatches == 0, what, ": the checkpoint was written by a different run (", mismatches,
                " field", mismatches == 1 ? "" : "s", " differ): ", diff.str(),
                ". Resume with the settings of that run, or train without --resume-from-checkpoint");
  Resume r;
  r.dir = dir;
  r.global_step = state.at("global_step").get<int64_t>();
  const int64_t saved_total = state.at("total_steps").get<int64_t>();
  QDQBERT_CHECK(saved_total == s.total_steps, what, ": total_steps: checkpoint ", saved_total, ", this run ",
                s.total_steps);
  QDQBERT_CHECK(r.global_step > 0 && r.global_step <= s.total_steps, what, ": global_step ", r.global_step,
                " is outside 1..", s.total_steps);
  const int64_t spe = s.steps_per_epoch, epoch = r.global_step / spe,
                batch = (r.global_step - epoch * spe) * a.gradient_accumulation_steps;
  QDQBERT_CHECK(state.value("epoch_index", epoch) == epoch && state.value("batch_in_epoch", batch) == batch, what,
                ": the epoch position in ", kStateFile, " (epoch_index ", state.value("epoch_index", epoch),
                ", batch_in_epoch ", state.value("batch_in_epoch", batch), ") does not follow from global_step ",
                r.global_step, " (expected ", epoch, ", ", batch, ")");
  if (state.contains("threads") && state.at("threads").is_number_integer() &&
      state.at("threads").get<int>() != a.threads) {
    std::fprintf(stderr,
                 "squad_qa: warning: the checkpoint was written with --threads %d, this run uses %d; the result "
                 "may differ from an uninterrupted run in the last bits\n",
                 state.at("threads").get<int>(), a.threads);
  }
  return r;
}

/// save_pretrained + the tokenizer files of --model.
void save_model_dir(TaskModel& model, const std::string& model_dir, const std::string& dir) {
  io::save_pretrained(model, dir);
  io::copy_tokenizer_files(model_dir, dir);
}

/// Writes OUTPUT_DIR/checkpoint-<step> through a temporary folder renamed into place.
void write_checkpoint(TaskModel& model, const torch::optim::Optimizer& opt, const Args& a, const ojson& state,
                      int64_t step) {
  const fs::path out(a.output_dir);
  const std::string name = "checkpoint-" + std::to_string(step), pid = std::to_string(::getpid());
  const fs::path tmp = out / (name + ".tmp-" + pid), dst = out / name;
  fs::remove_all(tmp);
  save_model_dir(model, a.model, tmp.string());
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  archive.save_to((tmp / kOptimizerFile).string());
  squad::write_text_file((tmp / kStateFile).string(), state.dump(2) + "\n");
  if (fs::exists(dst)) {  // an older checkpoint of that step (an earlier, interrupted run): replace it
    const fs::path old = out / (name + ".old-" + pid);
    fs::remove_all(old);
    fs::rename(dst, old);
    fs::rename(tmp, dst);
    fs::remove_all(old);
  } else {
    fs::rename(tmp, dst);
  }
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(TaskModel& model, const Args& a) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& [params, wd] : workflow::decay_groups(model, a.weight_decay)) {
    if (params.empty()) continue;
    groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(a.learning_rate).weight_decay(wd)));
  }
  return std::make_unique<torch::optim::AdamW>(groups);
}

void train(TaskModel& model, torch::optim::AdamW& opt, const std::vector<squad::Feature>& features, const Args& a,
           const Schedule& s, const Fingerprint& fp, const Resume& resume, const torch::Device& dev) {
  auto& m = model.module();
  m.train();
  const int64_t n = s.num_features, bs = a.per_device_train_batch_size, acc = a.gradient_accumulation_steps;
  const int64_t spe = s.steps_per_epoch, total = s.total_steps;
  int64_t step = resume.global_step;
  const int64_t start_epoch = spe > 0 ? step / spe : 0;
  std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
  for (int64_t e = 0; e < start_epoch; ++e) permutation(n, rng);  // the finished epochs' shuffles
  if (step > 0) {
    std::printf("resumed from %s at step %lld of %lld (epoch %lld, micro-batch %lld)\n", resume.dir.c_str(),
                static_cast<long long>(step), static_cast<long long>(total), static_cast<long long>(start_epoch),
                static_cast<long long>((step - start_epoch * spe) * acc));
  }
  const ojson fp_json = fingerprint_json(fp);
  double ema = 0;
  bool first = true;
  const int64_t first_step = step;
  auto t0 = Clock::now();
  for (int64_t epoch = start_epoch; step < total; ++epoch) {
    const std::vector<int64_t> order = permutation(n, rng);
    for (int64_t g = step - epoch * spe; g < spe && step < total; ++g) {
      torch::manual_seed(step_seed(a.seed, step));
      const double lr = workflow::lr_at(step, total, s.warmup_steps, a.learning_rate, a.lr_scheduler);
      for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      opt.zero_grad();
      double step_loss = 0;
      const int64_t mb_end = std::min(s.micro_batches_per_epoch, (g + 1) * acc);
      for (int64_t mb = g * acc; mb < mb_end; ++mb) {
        const int64_t b = mb * bs, e = std::min(n, b + bs);
        at::Tensor loss = model.run(to_inputs(features, order.data() + b, static_cast<size_t>(e - b), true, dev)).loss;
        (loss / static_cast<double>(acc)).backward();
        step_loss += loss.item<double>() / static_cast<double>(acc);
      }
      if (a.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m.parameters(), a.max_grad_norm);
      opt.step();
      ++step;
      ema = first ? step_loss : 0.95 * ema + 0.05 * step_loss;
      first = false;
      if (a.save_steps > 0 && step % a.save_steps == 0) {
        const int64_t next_epoch = step / spe;
        ojson state;
        state["format"] = "qdqbert squad_qa trainer state 1";
        state["global_step"] = step;
        state["total_steps"] = total;
        state["epoch"] = static_cast<double>(step) / static_cast<double>(spe);
        state["epoch_index"] = next_epoch;                   // the shuffled epoch the next step starts in
        state["batch_in_epoch"] = (step - next_epoch * spe) * acc;  // its first micro-batch within that epoch
        state["steps_per_epoch"] = spe;
        state["micro_batches_per_epoch"] = s.micro_batches_per_epoch;
        state["warmup_steps"] = s.warmup_steps;
        state["seed"] = a.seed;
        state["data_order"] = "epoch e: Fisher-Yates (j = rng() % (i + 1)) with one std::mt19937_64(seed), one "
                              "shuffle per epoch; torch reseeded with splitmix64(seed, step) before each step";
        state["threads"] = a.threads;
        state["device"] = a.device;
        state["loss"] = ema;
        state["fingerprint"] = fp_json;
        write_checkpoint(model, opt, a, state, step);
      }
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      const double rate = secs > 0 ? static_cast<double>((step - first_step) * bs * acc) / secs : 0.0;
      if ((step - first_step) % 5 == 1 || step == total) progress("train", step, total, ema, rate);
    }
  }
  m.eval();
}

/// The datasets of --predict-file / --test-file with their features.
struct EvalData {
  std::string path;
  squad::Dataset ds;
  std::vector<squad::Feature> features;
};

EvalData load_eval_data(const std::string& path, int64_t max_samples, const squad::TextEncoder& encoder,
                        const squad::FeatureOptions& fo) {
  EvalData d;
  d.path = path;
  d.ds = squad::read_squad(path);
  if (max_samples > 0 && static_cast<int64_t>(d.ds.examples.size()) > max_samples) {
    d.ds.examples.resize(static_cast<size_t>(max_samples));
  }
  d.features = squad::build_features(d.ds.examples, encoder, fo);
  return d;
}

const squad::Example* first_unanswered(const squad::Dataset& ds) {
  for (const auto& e : ds.examples) {
    if (e.answers.empty()) return &e;
  }
  return nullptr;
}

bool has_labels_v2(const squad::Dataset& ds) {
  for (const auto& e : ds.examples) {
    if (!e.answers.empty() || e.is_impossible) return true;
  }
  return false;
}

struct QaOutput {
  squad::PostprocessResult result;
  std::vector<std::vector<float>> starts, ends;
  double seconds = 0;
};

QaOutput run_qa(TaskModel& model, const EvalData& d, const Args& a, const torch::Device& dev) {
  QaOutput o;
  torch::NoGradGuard ng;
  model.module().eval();
  const size_t bs = static_cast<size_t>(a.per_device_eval_batch_size), n = d.features.size();
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), int64_t{0});
  auto t0 = Clock::now();
  for (size_t b = 0; b < n; b += bs) {
    ModelOutput out = model.run(to_inputs(d.features, idx.data() + b, std::min(n, b + bs) - b, false, dev));
    at::Tensor s = out.start_logits.to(torch::kCPU).contiguous(), e = out.end_logits.to(torch::kCPU).contiguous();
    for (int64_t r = 0; r < s.size(0); ++r) {
      o.starts.emplace_back(s[r].data_ptr<float>(), s[r].data_ptr<float>() + s.size(1));
      o.ends.emplace_back(e[r].data_ptr<float>(), e[r].data_ptr<float>() + e.size(1));
    }
  }
  o.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  squad::PostprocessOptions pp;
  pp.n_best_size = a.n_best_size;
  pp.max_answer_length = a.max_answer_length;
  pp.version_2_with_negative = a.version_2_with_negative;
  pp.null_score_diff_threshold = a.null_score_diff_threshold;
  o.result = squad::postprocess_qa_predictions(d.ds.examples, d.features, o.starts, o.ends, pp);
  return o;
}

/// The metric as run_quant_qa.py computes it (no_answer_probability 0.0 for every prediction): `squad`
/// {exact_match, f1} or `squad_v2` {exact, f1, total, HasAns_*, NoAns_*, best_*} with "exact_match" = exact.
/// `summary` gets the text for the log line.
ojson compute_metrics(const Args& a, const squad::Dataset& ds, const squad::PostprocessResult& r,
                      std::string* summary) {
  std::vector<squad::Prediction> preds;
  for (const auto& [id, text] : r.predictions) preds.push_back({id, text, 0.0});
  const auto refs = squad::references_from(ds);
  ojson j;
  std::ostringstream line;
  line << std::fixed << std::setprecision(2);
  if (a.version_2_with_negative) {
    const auto m = squad::evaluate_v2(refs, preds);
    j["exact_match"] = m.exact;
    const ojson v2 = ojson::parse(m.to_json(true));
    for (auto it = v2.begin(); it != v2.end(); ++it) j[it.key()] = it.value();
    line << "exact_match " << m.exact << " f1 " << m.f1;
    if (m.has_has_ans) line << " HasAns_exact " << m.has_ans_exact << " HasAns_f1 " << m.has_ans_f1;
    if (m.has_no_ans) line << " NoAns_exact " << m.no_ans_exact << " NoAns_f1 " << m.no_ans_f1;
  } else {
    const auto m = squad::evaluate_v1(refs, preds);
    j["exact_match"] = m.exact_match;
    j["f1"] = m.f1;
    line << "exact_match " << m.exact_match << " f1 " << m.f1;
  }
  *summary = line.str();
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"squad_qa: SQuAD fine-tuning, calibration (PTQ), QAT, evaluation and prediction with QDQBERT"};
  Args a;
  app.add_option("--model", a.model, "checkpoint folder (config.json, weights, vocab.txt)")->required();
  app.add_option("--train-file", a.train_file, "SQuAD JSON for training and calibration");
  app.add_option("--predict-file", a.predict_file, "SQuAD JSON for evaluation (--do-eval)");
  app.add_option("--test-file", a.test_file, "SQuAD JSON for --do-predict (default: --predict-file)");
  app.add_option("--output-dir", a.output_dir, "where checkpoints, predictions and results go")->required();
  app.add_flag("--do-train", a.do_train, "fine-tune (QAT unless --quant-disable)");
  app.add_flag("--do-calib", a.do_calib,
               "calibrate the quantizers on shuffled training batches (--calib-num samples or --num-calib-batch "
               "batches of --per-device-eval-batch-size)");
  app.add_flag("--do-eval", a.do_eval, "evaluate EM/F1 on --predict-file");
  app.add_flag("--do-predict", a.do_predict, "predict answers for --test-file (metrics when it has answers)");
  app.add_flag("--save-onnx", a.save_onnx, "export model.onnx (Q/DQ) to the output dir");
  app.add_flag("--init-from-config", a.init_from_config, "random init from config.json (no weights needed)");
  app.add_flag("--strict", a.strict, "every checkpoint key must match the model (no newly initialized QA head)");
  squad_qa::add_quant_flags(app, a.quant);
  app.add_option("--calib-num", a.calib_num,
                 "calibration samples: stop after the batch that reaches N (ignored with --num-calib-batch)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--version-2-with-negative", a.version_2_with_negative,
               "SQuAD v2: unanswerable questions, null answers and the squad_v2 metric");
  app.add_option("--null-score-diff-threshold", a.null_score_diff_threshold,
                 "v2: predict no answer when null score - best span score exceeds this");
  app.add_option("--learning-rate", a.learning_rate);
  app.add_option("--num-train-epochs", a.num_train_epochs);
  app.add_option("--per-device-train-batch-size", a.per_device_train_batch_size)->check(CLI::PositiveNumber);
  app.add_option("--per-device-eval-batch-size", a.per_device_eval_batch_size,
                 "batch size of evaluation, prediction and calibration")
      ->check(CLI::PositiveNumber);
  app.add_option("--gradient-accumulation-steps", a.gradient_accumulation_steps,
                 "micro-batches per optimizer step (loss divided by N)");
  app.add_option("--save-steps", a.save_steps, "write OUTPUT_DIR/checkpoint-<step> every N optimizer steps (0 = off)");
  app.add_option("--resume-from-checkpoint", a.resume_from_checkpoint,
                 "continue the training run that wrote this checkpoint folder (same settings)");
  app.add_option("--max-seq-length", a.max_seq_length)->check(CLI::PositiveNumber);
  app.add_option("--doc-stride", a.doc_stride)->check(CLI::PositiveNumber);
  app.add_option("--warmup-ratio", a.warmup_ratio)->check(CLI::Range(0.0, 1.0));
  app.add_option("--weight-decay", a.weight_decay)->check(CLI::NonNegativeNumber);
  app.add_option("--max-grad-norm", a.max_grad_norm)->check(CLI::NonNegativeNumber);
  app.add_option("--lr-scheduler", a.lr_scheduler)->check(CLI::IsMember({"linear", "cosine"}));
  app.add_option("--n-best-size", a.n_best_size)->check(CLI::PositiveNumber);
  app.add_option("--max-answer-length", a.max_answer_length)->check(CLI::PositiveNumber);
  app.add_option("--max-train-samples", a.max_train_samples, "use only the first N training questions");
  app.add_option("--max-eval-samples", a.max_eval_samples, "use only the first N evaluation questions");
  app.add_option("--max-predict-samples", a.max_predict_samples, "use only the first N test questions");
  app.add_option("--seed", a.seed);
  app.add_option("--threads", a.threads)->check(CLI::NonNegativeNumber);
  app.add_option("--device", a.device)->check(CLI::IsMember({"cpu", "cuda"}));
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // result lines stay in order with the progress on stderr in logs
  a.num_calib_batch_given = app.count("--num-calib-batch") > 0;
  try {
    validate_flags(a);
    if (a.threads > 0) at::set_num_threads(a.threads);
    torch::manual_seed(static_cast<uint64_t>(a.seed));
    const torch::Device dev(a.device);

    // Data first (reads only): bad files and a mismatched checkpoint stop the run before anything is written.
    auto encoder = squad::make_bert_text_encoder(a.model);
    squad::FeatureOptions fo;
    fo.max_seq_length = a.max_seq_length;
    fo.doc_stride = a.doc_stride;
    std::vector<squad::Feature> train_features;
    if (a.do_train || a.do_calib) {
      auto ds = squad::read_squad(a.train_file);
      if (a.max_train_samples > 0 && static_cast<int64_t>(ds.examples.size()) > a.max_train_samples) {
        ds.examples.resize(static_cast<size_t>(a.max_train_samples));
      }
      train_features = squad::build_features(ds.examples, *encoder, fo);
      QDQBERT_CHECK(!train_features.empty(), "--train-file ", a.train_file, " gives no training features");
      std::printf("train: %zu questions, %zu features\n", ds.examples.size(), train_features.size());
    }
    EvalData eval_data, predict_data;
    if (a.do_eval) {
      eval_data = load_eval_data(a.predict_file, a.max_eval_samples, *encoder, fo);
      if (!a.version_2_with_negative) {
        const squad::Example* u = first_unanswered(eval_data.ds);
        QDQBERT_CHECK(u == nullptr, "--do-eval: ", a.predict_file, ": question id \"", u ? u->id : "",
                      "\" has no answer; pass --version-2-with-negative for SQuAD v2 data");
      }
    }
    if (a.do_predict) {
      predict_data = load_eval_data(a.test_file.empty() ? a.predict_file : a.test_file, a.max_predict_samples,
                                    *encoder, fo);
    }
    Schedule schedule;
    Fingerprint fingerprint;
    Resume resume;
    if (a.do_train) {
      schedule = make_schedule(a, train_features.size());
      fingerprint = make_fingerprint(a, schedule);
      if (!a.resume_from_checkpoint.empty()) resume = check_resume(a, fingerprint, schedule);
    }

    // Model with the descriptors of the quantization flags (set before construction, as in Python).
    io::PretrainedOptions po;
    po.task = "question-answering";
    po.strict = a.strict;
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
    std::unique_ptr<torch::optim::AdamW> opt;
    if (a.do_train) {
      opt = make_optimizer(*model, a);
      if (!resume.dir.empty()) {
        torch::serialize::InputArchive archive;
        archive.load_from((fs::path(resume.dir) / kOptimizerFile).string(), dev);
        opt->load(archive);
      }
    }
    fs::create_directories(a.output_dir);

    if (a.do_calib && !resume.dir.empty()) {
      std::printf("calibration skipped: the quantizers of %s were calibrated before its first step\n",
                  resume.dir.c_str());
    } else if (a.do_calib) {
      const auto n = static_cast<int64_t>(train_features.size()), bs = a.per_device_eval_batch_size;
      std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
      const std::vector<int64_t> order = permutation(n, rng);
      std::vector<ModelInputs> batches;
      int64_t samples = 0;
      for (int64_t b = 0; b < n; b += bs) {
        const int64_t e = std::min(n, b + bs);
        batches.push_back(to_inputs(train_features, order.data() + b, static_cast<size_t>(e - b), false, dev));
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
      auto r = workflow::calibrate(*model, batches, a.quant.calibration());
      std::printf("calibrated %zu quantizers with %s on %zu batches (%lld samples, shuffled) in %.1f s\n",
                  r.calibrated.size(), a.quant.calibrator.c_str(), batches.size(), static_cast<long long>(samples),
                  std::chrono::duration<double>(Clock::now() - t0).count());
      for (const auto& l : workflow::configure_model(*model, a.quant, /*calib=*/false)) std::printf("%s\n", l.c_str());
      workflow::print_quant_summary(*model, std::cout);
    }
    if (a.do_train) train(*model, *opt, train_features, a, schedule, fingerprint, resume, dev);
    if (a.do_train || a.do_calib) {
      save_model_dir(*model, a.model, a.output_dir);
      std::printf("saved checkpoint to %s\n", a.output_dir.c_str());
    }
    if (a.do_eval) {
      QaOutput o = run_qa(*model, eval_data, a, dev);
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
    if (a.do_predict) {
      QaOutput o = run_qa(*model, predict_data, a, dev);
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
    if (a.save_onnx) {
      model->module().to(torch::kCPU);
      auto r = onnx::export_model(*model, a.output_dir + "/model.onnx");
      std::printf("exported %s/model.onnx (%lld QuantizeLinear)\n", a.output_dir.c_str(),
                  static_cast<long long>(r.quantize_linear));
    }
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "squad_qa: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "squad_qa: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
