// squad_qa: the command-line flags (CLI11) and the checks of flag combinations; their semantics are
// described at the top of squad_qa.cpp.
#include "qdqbert/error.h"
#include "quant_trainer_flags.h"
#include "squad_args.h"

namespace squad_qa {

void add_flags(CLI::App& app, Args& a) {
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
  app.add_option("--dist-backend", a.dist_backend,
                 "several processes (WORLD_SIZE > 1, e.g. tools/launch.sh): gloo (CPU tensors) or nccl (CUDA tensors, "
                 "only with a LibTorch built with NCCL)")
      ->check(CLI::IsMember({"gloo", "nccl"}));
  app.add_option("--dist-timeout", a.dist_timeout,
                 "seconds a rank waits for the others before failing (0 = $QDQBERT_DIST_TIMEOUT, else 300)")
      ->check(CLI::NonNegativeNumber);
}

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

}  // namespace squad_qa
