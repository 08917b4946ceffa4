// squad_qa: the training side — data order, optimizer-step schedule, AdamW, the training loop, checkpoints
// (--save-steps) and resume (--resume-from-checkpoint), as described at the top of squad_qa.cpp.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "qdqbert/config.h"
#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/gradient_reducer.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/file.h"
#include "qdqbert/squad/postprocess.h"
#include "qdqbert/workflow/quant_trainer.h"
#include "squad_args.h"

using namespace qdqbert;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace squad_qa {
namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.pt";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kQaClass = "QDQBertForQuestionAnswering";

void progress(const char* what, int64_t done, int64_t total, double loss, double rate) {
  const int width = 28, filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
  std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f %.1f ex/s", what, std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               loss, rate);
  if (done == total) std::fprintf(stderr, "\n");
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

ojson fingerprint_json(const Fingerprint& fp) {
  ojson j = ojson::object();
  for (const auto& f : fp) j[f.key] = f.value;
  return j;
}

ojson read_json_file(const std::string& path, const std::string& what) {
  const std::string text = io::read_file(path, what);
  try {
    return ojson::parse(text);
  } catch (const std::exception& e) {
    fail(what, ": ", path, " is not valid JSON: ", e.what());
  }
}

}  // namespace

Schedule make_schedule(const Args& a, size_t num_features) {
  Schedule s;
  s.num_features = static_cast<int64_t>(num_features);
  // A micro-batch is a global batch: per-device batch x processes.
  const int64_t bs = a.per_device_train_batch_size * distributed::world_size(), n = a.gradient_accumulation_steps;
  s.micro_batches_per_epoch = (s.num_features + bs - 1) / bs;
  s.steps_per_epoch = (s.micro_batches_per_epoch + n - 1) / n;
  s.total_steps = static_cast<int64_t>(std::ceil(a.num_train_epochs * static_cast<double>(s.steps_per_epoch)));
  s.total_steps = std::max<int64_t>(0, s.total_steps);
  // HF TrainingArguments.get_warmup_steps: ceil(max_steps * warmup_ratio).
  s.warmup_steps = static_cast<int64_t>(std::ceil(static_cast<double>(s.total_steps) * a.warmup_ratio));
  return s;
}

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
      {"world_size", "WORLD_SIZE (number of processes)", distributed::world_size(), ojson(1)},
  };
}

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
    if (has ? saved.at(f.key) == f.value : f.if_absent && *f.if_absent == f.value) continue;
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

void save_model_dir(TaskModel& model, const std::string& model_dir, const std::string& dir) {
  io::save_pretrained(model, dir);
  io::copy_tokenizer_files(model_dir, dir);
}

namespace {

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

}  // namespace

std::unique_ptr<torch::optim::AdamW> make_optimizer(TaskModel& model, const Args& a) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& [params, wd] : workflow::decay_groups(model, a.weight_decay)) {
    if (params.empty()) continue;
    groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(a.learning_rate).weight_decay(wd)));
  }
  return std::make_unique<torch::optim::AdamW>(groups);
}

void load_optimizer_state(torch::optim::AdamW& opt, const std::string& dir, const torch::Device& dev) {
  torch::serialize::InputArchive archive;
  archive.load_from((fs::path(dir) / kOptimizerFile).string(), dev);
  opt.load(archive);
}

void train(TaskModel& model, torch::optim::AdamW& opt, const std::vector<squad::Feature>& features, const Args& a,
           const Schedule& s, const Fingerprint& fp, const Resume& resume, const torch::Device& dev) {
  auto& m = model.module();
  m.train();
  const int64_t n = s.num_features, bs = a.per_device_train_batch_size, acc = a.gradient_accumulation_steps;
  // Several processes: each micro-batch is a global batch of bs x world features, this rank takes its part
  // (distributed/sharding.h) and the gradients are averaged before clipping (bucketed, during backward).
  const distributed::ShardedSampler sampler(n, bs);
  distributed::GradientReducer reducer(m.parameters());
  const bool rank0 = distributed::is_main();
  const int64_t spe = s.steps_per_epoch, total = s.total_steps;
  int64_t step = resume.global_step;
  const int64_t start_epoch = spe > 0 ? step / spe : 0;
  std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
  for (int64_t e = 0; e < start_epoch; ++e) workflow::permutation(n, rng);  // the finished epochs' shuffles
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
    const std::vector<int64_t> order = workflow::permutation(n, rng);
    for (int64_t g = step - epoch * spe; g < spe && step < total; ++g) {
      torch::manual_seed(distributed::rank_seed(step_seed(a.seed, step)));  // each rank its own dropout
      const double lr = workflow::lr_at(step, total, s.warmup_steps, a.learning_rate, a.lr_scheduler);
      for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      opt.zero_grad();
      double step_loss = 0;
      const int64_t mb_end = std::min(s.micro_batches_per_epoch, (g + 1) * acc);
      for (int64_t mb = g * acc; mb < mb_end; ++mb) {
        const distributed::Shard sh = sampler.shard(mb);
        if (mb + 1 == mb_end) reducer.expect_backward();
        if (sh.empty()) continue;
        at::Tensor loss =
            model.run(to_inputs(features, order.data() + sh.begin, static_cast<size_t>(sh.size()), true, dev)).loss;
        const at::Tensor weighted = sh.loss_scale == 1.0 ? loss : loss * sh.loss_scale;  // a short last batch
        (weighted / static_cast<double>(acc)).backward();
        step_loss += loss.item<double>() * sh.loss_scale / static_cast<double>(acc);
      }
      reducer.synchronize();
      step_loss = distributed::mean_over_ranks(step_loss);
      if (a.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m.parameters(), a.max_grad_norm);
      opt.step();
      ++step;
      ema = first ? step_loss : 0.95 * ema + 0.05 * step_loss;
      first = false;
      if (rank0 && a.save_steps > 0 && step % a.save_steps == 0) {
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
        state["world_size"] = distributed::world_size();
        state["device"] = a.device;
        state["loss"] = ema;
        state["fingerprint"] = fp_json;
        write_checkpoint(model, opt, a, state, step);
      }
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      const auto examples = static_cast<double>((step - first_step) * sampler.global_batch_size() * acc);
      const double rate = secs > 0 ? examples / secs : 0.0;
      if (rank0 && ((step - first_step) % 5 == 1 || step == total)) progress("train", step, total, ema, rate);
    }
  }
  m.eval();
}

}  // namespace squad_qa
