// squad_qa — the C++ counterpart of Hugging Face's run_quant_qa.py: fine-tune (optionally with
// quantization-aware training), calibrate (post-training quantization), evaluate EM/F1 on SQuAD,
// save the checkpoint, and export ONNX.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/onnx/export.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/metrics.h"
#include "qdqbert/squad/postprocess.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/workflow/quant_trainer_cli.h"

using namespace qdqbert;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string model, train_file, predict_file, output_dir;
  bool do_train = false, do_calib = false, do_eval = false, save_onnx = false, init_from_config = false;
  workflow::QuantTrainerOptions quant;
  double learning_rate = 5e-5, warmup_ratio = 0.0, weight_decay = 0.0, max_grad_norm = 1.0;
  double num_train_epochs = 2.0;
  int64_t per_device_train_batch_size = 12, per_device_eval_batch_size = 64, max_seq_length = 384, doc_stride = 128;
  int64_t n_best_size = 20, max_answer_length = 30, seed = 42, max_train_samples = 0, max_eval_samples = 0;
  std::string lr_scheduler = "linear", device = "cpu";
  int threads = 0;
};

static ModelInputs to_inputs(const std::vector<squad::Feature>& f, size_t b, size_t e, bool labels,
                             const torch::Device& dev) {
  const int64_t n = static_cast<int64_t>(e - b), len = static_cast<int64_t>(f[b].input_ids.size());
  at::Tensor ids = torch::empty({n, len}, torch::kLong), types = torch::empty({n, len}, torch::kLong),
             mask = torch::empty({n, len}, torch::kLong), sp = torch::empty({n}, torch::kLong),
             ep = torch::empty({n}, torch::kLong);
  for (size_t i = b; i < e; ++i) {
    const int64_t r = static_cast<int64_t>(i - b);
    TORCH_CHECK(static_cast<int64_t>(f[i].input_ids.size()) == len, "features of different lengths in one batch");
    std::memcpy(ids[r].data_ptr<int64_t>(), f[i].input_ids.data(), len * sizeof(int64_t));
    std::memcpy(types[r].data_ptr<int64_t>(), f[i].token_type_ids.data(), len * sizeof(int64_t));
    std::memcpy(mask[r].data_ptr<int64_t>(), f[i].attention_mask.data(), len * sizeof(int64_t));
    sp[r] = f[i].start_position;
    ep[r] = f[i].end_position;
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

static void progress(const char* what, int64_t done, int64_t total, double loss, double rate) {
  const int width = 28, filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
  std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f %.1f ex/s", what, std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               loss, rate);
  if (done == total) std::fprintf(stderr, "\n");
}

static void train(TaskModel& model, const std::vector<squad::Feature>& features, const Args& a,
                  const torch::Device& dev) {
  auto& m = model.module();
  m.train();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& [params, wd] : workflow::decay_groups(model, a.weight_decay)) {
    if (params.empty()) continue;
    groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(a.learning_rate).weight_decay(wd)));
  }
  torch::optim::AdamW opt(groups);
  const int64_t bs = a.per_device_train_batch_size;
  const int64_t steps_per_epoch = (static_cast<int64_t>(features.size()) + bs - 1) / bs;
  const int64_t total = static_cast<int64_t>(std::ceil(a.num_train_epochs * steps_per_epoch));
  const int64_t warmup = static_cast<int64_t>(a.warmup_ratio * total);
  std::mt19937_64 rng(a.seed);
  std::vector<size_t> order(features.size());
  std::iota(order.begin(), order.end(), 0);
  int64_t step = 0;
  double ema = 0;
  auto t0 = Clock::now();
  while (step < total) {
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<squad::Feature> shuffled;
    shuffled.reserve(order.size());
    for (size_t i : order) shuffled.push_back(features[i]);
    for (size_t b = 0; b < shuffled.size() && step < total; b += bs, ++step) {
      const size_t e = std::min(shuffled.size(), b + static_cast<size_t>(bs));
      const double lr = workflow::lr_at(step, total, warmup, a.learning_rate, a.lr_scheduler);
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      opt.zero_grad();
      at::Tensor loss = model.run(to_inputs(shuffled, b, e, true, dev)).loss;
      loss.backward();
      if (a.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m.parameters(), a.max_grad_norm);
      opt.step();
      ema = step == 0 ? loss.item<double>() : 0.95 * ema + 0.05 * loss.item<double>();
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      if (step % 5 == 0 || step + 1 == total) progress("train", step + 1, total, ema, (step + 1) * bs / secs);
    }
  }
  m.eval();
}

int main(int argc, char** argv) {
  CLI::App app{"squad_qa: SQuAD fine-tuning, calibration (PTQ), QAT and evaluation with QDQBERT"};
  Args a;
  app.add_option("--model", a.model, "checkpoint folder (config.json, weights, vocab.txt)")->required();
  app.add_option("--train-file", a.train_file, "SQuAD JSON for training and calibration");
  app.add_option("--predict-file", a.predict_file, "SQuAD JSON for evaluation");
  app.add_option("--output-dir", a.output_dir, "where checkpoints, predictions and results go")->required();
  app.add_flag("--do-train", a.do_train, "fine-tune (QAT unless --quant-disable)");
  app.add_flag("--do-calib", a.do_calib, "calibrate the quantizers on --num-calib-batch training batches");
  app.add_flag("--do-eval", a.do_eval, "evaluate EM/F1 on --predict-file");
  app.add_flag("--save-onnx", a.save_onnx, "export model.onnx (Q/DQ) to the output dir");
  app.add_flag("--init-from-config", a.init_from_config, "random init from config.json (no weights needed)");
  workflow::add_quant_flags(app, a.quant);
  app.add_option("--learning-rate", a.learning_rate);
  app.add_option("--num-train-epochs", a.num_train_epochs);
  app.add_option("--per-device-train-batch-size", a.per_device_train_batch_size)->check(CLI::PositiveNumber);
  app.add_option("--per-device-eval-batch-size", a.per_device_eval_batch_size)->check(CLI::PositiveNumber);
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
  app.add_option("--seed", a.seed);
  app.add_option("--threads", a.threads)->check(CLI::NonNegativeNumber);
  app.add_option("--device", a.device)->check(CLI::IsMember({"cpu", "cuda"}));
  CLI11_PARSE(app, argc, argv);
  try {
    if (a.threads > 0) at::set_num_threads(a.threads);
    torch::manual_seed(a.seed);
    const torch::Device dev(a.device);
    fs::create_directories(a.output_dir);
    // Model with the descriptors of the quantization flags (set before construction, as in Python).
    io::PretrainedOptions po;
    po.task = "question-answering";
    po.quant_desc_input = a.quant.input_desc();
    po.quant_desc_weight = a.quant.weight_desc();
    std::shared_ptr<TaskModel> model;
    if (a.init_from_config) {
      Config c = Config::from_json_file(a.model + "/config.json");
      c.quant_desc_input = po.quant_desc_input;
      c.quant_desc_weight = po.quant_desc_weight;
      model = create_model("question-answering", c);
    } else {
      model = io::from_pretrained(a.model, po);
    }
    model->module().to(dev);
    for (const auto& l : workflow::configure_model(*model, a.quant, /*calib=*/a.do_calib)) std::printf("%s\n", l.c_str());
    auto encoder = squad::make_bert_text_encoder(a.model);
    squad::FeatureOptions fo;
    fo.max_seq_length = a.max_seq_length;
    fo.doc_stride = a.doc_stride;
    std::vector<squad::Feature> train_features;
    if (a.do_train || a.do_calib) {
      TORCH_CHECK(!a.train_file.empty(), "--do-train/--do-calib need --train-file");
      auto ds = squad::read_squad(a.train_file);
      if (a.max_train_samples > 0 && static_cast<int64_t>(ds.examples.size()) > a.max_train_samples) {
        ds.examples.resize(a.max_train_samples);
      }
      train_features = squad::build_features(ds.examples, *encoder, fo);
      std::printf("train: %zu questions, %zu features\n", ds.examples.size(), train_features.size());
    }
    if (a.do_calib) {
      std::vector<ModelInputs> batches;
      const size_t bs = static_cast<size_t>(a.per_device_train_batch_size);
      for (size_t b = 0; b < train_features.size() && static_cast<int64_t>(batches.size()) < a.quant.num_calib_batch;
           b += bs) {
        batches.push_back(to_inputs(train_features, b, std::min(train_features.size(), b + bs), false, dev));
      }
      auto t0 = Clock::now();
      auto r = workflow::calibrate(*model, batches, a.quant.calibration());
      std::printf("calibrated %zu quantizers with %s on %zu batches in %.1f s\n", r.calibrated.size(),
                  a.quant.calibrator.c_str(), batches.size(),
                  std::chrono::duration<double>(Clock::now() - t0).count());
      for (const auto& l : workflow::configure_model(*model, a.quant, /*calib=*/false)) std::printf("%s\n", l.c_str());
      workflow::print_quant_summary(*model, std::cout);
    }
    if (a.do_train) train(*model, train_features, a, dev);
    if (a.do_train || a.do_calib) {
      model->module().to(torch::kCPU);
      io::save_pretrained(*model, a.output_dir);
      fs::copy_file(a.model + "/vocab.txt", a.output_dir + "/vocab.txt", fs::copy_options::overwrite_existing);
      if (fs::exists(a.model + "/tokenizer_config.json")) {
        fs::copy_file(a.model + "/tokenizer_config.json", a.output_dir + "/tokenizer_config.json",
                      fs::copy_options::overwrite_existing);
      }
      model->module().to(dev);
      std::printf("saved checkpoint to %s\n", a.output_dir.c_str());
    }
    if (a.do_eval) {
      TORCH_CHECK(!a.predict_file.empty(), "--do-eval needs --predict-file");
      auto ds = squad::read_squad(a.predict_file);
      if (a.max_eval_samples > 0 && static_cast<int64_t>(ds.examples.size()) > a.max_eval_samples) {
        ds.examples.resize(a.max_eval_samples);
      }
      auto features = squad::build_features(ds.examples, *encoder, fo);
      std::vector<std::vector<float>> starts, ends;
      torch::NoGradGuard ng;
      model->module().eval();
      const size_t bs = static_cast<size_t>(a.per_device_eval_batch_size);
      auto t0 = Clock::now();
      for (size_t b = 0; b < features.size(); b += bs) {
        ModelOutput out = model->run(to_inputs(features, b, std::min(features.size(), b + bs), false, dev));
        at::Tensor s = out.start_logits.to(torch::kCPU).contiguous(), e = out.end_logits.to(torch::kCPU).contiguous();
        for (int64_t r = 0; r < s.size(0); ++r) {
          starts.emplace_back(s[r].data_ptr<float>(), s[r].data_ptr<float>() + s.size(1));
          ends.emplace_back(e[r].data_ptr<float>(), e[r].data_ptr<float>() + e.size(1));
        }
      }
      const double eval_secs = std::chrono::duration<double>(Clock::now() - t0).count();
      squad::PostprocessOptions pp;
      pp.n_best_size = a.n_best_size;
      pp.max_answer_length = a.max_answer_length;
      auto result = squad::postprocess_qa_predictions(ds.examples, features, starts, ends, pp);
      std::vector<squad::Prediction> preds;
      for (const auto& [id, text] : result.predictions) preds.push_back({id, text, 0.0});
      auto metric = squad::evaluate_v1(squad::references_from(ds), preds);
      squad::write_text_file(a.output_dir + "/predictions.json", result.predictions_json());
      nlohmann::json logits = {{"start_logits", starts}, {"end_logits", ends}};
      squad::write_text_file(a.output_dir + "/logits.json", logits.dump());
      squad::write_text_file(a.output_dir + "/features.json", squad::features_to_json(features, ds.examples.size()));
      nlohmann::json res = {{"exact_match", metric.exact_match}, {"f1", metric.f1},
                            {"eval_samples", features.size()}, {"eval_seconds", eval_secs}};
      squad::write_text_file(a.output_dir + "/eval_results.json", res.dump(2) + "\n");
      std::printf("eval: exact_match %.2f f1 %.2f (%zu questions, %zu features, %.1f s)\n", metric.exact_match,
                  metric.f1, ds.examples.size(), features.size(), eval_secs);
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
