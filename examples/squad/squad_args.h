#pragma once
/// \file
/// What the squad_qa sources share: the settings of a run (Args, filled from the command line by add_flags)
/// and the steps more than one file uses. squad_flags.cpp: the flags and their validation; squad_train.cpp:
/// data order, schedule, optimizer, training loop, checkpoints and resume; squad_eval.cpp: batching, the
/// evaluation data, the QA forward pass with post-processing, the metrics; squad_qa.cpp: main and the run.
/// The semantics of every flag are described at the top of squad_qa.cpp.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "qdqbert/models/outputs.h"
#include "qdqbert/models/qdqbert.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/postprocess.h"
#include "qdqbert/workflow/quant_trainer.h"

namespace squad_qa {

using ojson = nlohmann::ordered_json;

struct Args {
  std::string model, train_file, predict_file, test_file, output_dir, resume_from_checkpoint;
  bool do_train = false, do_calib = false, do_eval = false, do_predict = false, save_onnx = false,
       init_from_config = false, strict = false, version_2_with_negative = false;
  qdqbert::workflow::QuantTrainerOptions quant;
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
  std::string dist_backend = "gloo";  // several processes (WORLD_SIZE > 1): gloo or nccl
  int64_t dist_timeout = 0;           // seconds; 0 = QDQBERT_DIST_TIMEOUT, else 300
};

// ---- squad_flags.cpp ----

/// Every option and flag of squad_qa (with its checks), in --help order.
void add_flags(CLI::App& app, Args& a);

/// Flag combinations that cannot work, checked before anything is loaded or written.
void validate_flags(const Args& a);

// ---- squad_eval.cpp ----

/// A batch of the features `idx[0..count)` (all of one length).
qdqbert::ModelInputs to_inputs(const std::vector<qdqbert::squad::Feature>& f, const int64_t* idx, size_t count,
                               bool labels, const torch::Device& dev);

/// The datasets of --predict-file / --test-file with their features.
struct EvalData {
  std::string path;
  qdqbert::squad::Dataset ds;
  std::vector<qdqbert::squad::Feature> features;
};

EvalData load_eval_data(const std::string& path, int64_t max_samples, const qdqbert::squad::TextEncoder& encoder,
                        const qdqbert::squad::FeatureOptions& fo);

const qdqbert::squad::Example* first_unanswered(const qdqbert::squad::Dataset& ds);

bool has_labels_v2(const qdqbert::squad::Dataset& ds);

struct QaOutput {
  qdqbert::squad::PostprocessResult result;
  std::vector<std::vector<float>> starts, ends;
  double seconds = 0;
};

QaOutput run_qa(qdqbert::TaskModel& model, const EvalData& d, const Args& a, const torch::Device& dev);

/// The metric as run_quant_qa.py computes it (no_answer_probability 0.0 for every prediction): `squad`
/// {exact_match, f1} or `squad_v2` {exact, f1, total, HasAns_*, NoAns_*, best_*} with "exact_match" = exact.
/// `summary` gets the text for the log line.
ojson compute_metrics(const Args& a, const qdqbert::squad::Dataset& ds, const qdqbert::squad::PostprocessResult& r,
                      std::string* summary);

// ---- squad_train.cpp ----


/// Optimizer-step arithmetic of one training run (HF Trainer's, with a short last accumulation group).
struct Schedule {
  int64_t num_features = 0, micro_batches_per_epoch = 0, steps_per_epoch = 0, total_steps = 0, warmup_steps = 0;
};

Schedule make_schedule(const Args& a, size_t num_features);

/// One field a resumed run must agree on: its key in trainer_state.json, the flags it comes from, its value,
/// and the value a checkpoint without the key stands for (none: such a checkpoint differs).
struct FpField {
  std::string key, flags;
  ojson value;
  std::optional<ojson> if_absent = std::nullopt;
};
using Fingerprint = std::vector<FpField>;

Fingerprint make_fingerprint(const Args& a, const Schedule& s);

struct Resume {
  std::string dir;
  int64_t global_step = 0;
};

/// Checks that `a.resume_from_checkpoint` is a complete checkpoint of a run with the same fingerprint and
/// schedule; reads nothing else and writes nothing.
Resume check_resume(const Args& a, const Fingerprint& fp, const Schedule& s);

/// save_pretrained + the tokenizer files of --model.
void save_model_dir(qdqbert::TaskModel& model, const std::string& model_dir, const std::string& dir);

std::unique_ptr<torch::optim::AdamW> make_optimizer(qdqbert::TaskModel& model, const Args& a);

/// Restores the optimizer state saved in the checkpoint folder `dir`.
void load_optimizer_state(torch::optim::AdamW& opt, const std::string& dir, const torch::Device& dev);

void train(qdqbert::TaskModel& model, torch::optim::AdamW& opt, const std::vector<qdqbert::squad::Feature>& features,
           const Args& a, const Schedule& s, const Fingerprint& fp, const Resume& resume, const torch::Device& dev);

}  // namespace squad_qa
