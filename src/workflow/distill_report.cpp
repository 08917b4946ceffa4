// The report of a distillation QAT run: report.md, report.json and training_curve.svg.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "qdqbert/io/atomic_file.h"
#include "qdqbert/report/svg_chart.h"
#include "qdqbert/workflow/distill.h"
#include "workflow/report_util.h"

namespace qdqbert::workflow {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Centred moving average over `w` steps (the per-step loss is noisy at small batches).
std::vector<double> smooth(const std::vector<double>& v, size_t w) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t a = i >= w / 2 ? i - w / 2 : 0, b = std::min(v.size(), i + w / 2 + 1);
    double s = 0;
    for (size_t j = a; j < b; ++j) s += v[j];
    out[i] = s / static_cast<double>(b - a);
  }
  return out;
}

std::string curve_svg(const DistillResult& r, const DistillReportInfo& info) {
  report::LineChart ch;
  ch.title = "Distillation QAT: the loss falls and the evaluation cosine to FP32 rises";
  ch.subtitle = info.model + " vs teacher " + info.teacher + ", " + to_string(info.options.loss) + " loss, " +
                std::to_string(r.total_steps) + " steps";
  ch.x.label = "optimizer step";
  ch.y.label = "training loss (log)";
  ch.y.log = true;
  ch.y2.label = "cosine to FP32 (evaluation text)";
  const size_t w = std::max<size_t>(1, r.loss.size() / 50);
  report::Series loss;
  loss.label = "loss, moving average of " + std::to_string(w) + " steps";
  loss.colour = report::palette()[0];
  loss.y = smooth(r.loss, w);
  for (size_t i = 0; i < loss.y.size(); ++i) loss.x.push_back(static_cast<double>(i + 1));
  ch.series.push_back(loss);
  report::Series mean, p5;
  mean.label = "cosine mean";
  p5.label = "cosine p5";
  mean.colour = report::palette()[1];
  p5.colour = report::palette()[2];
  mean.markers = p5.markers = mean.right_axis = p5.right_axis = true;
  for (const auto& e : r.evals) {
    mean.x.push_back(static_cast<double>(e.step));
    p5.x.push_back(static_cast<double>(e.step));
    mean.y.push_back(e.fidelity.cosine_mean);
    p5.y.push_back(e.fidelity.cosine_p5);
  }
  ch.series.push_back(mean);
  ch.series.push_back(p5);
  return report::render(ch);
}

}  // namespace

std::string write_distill_report(const DistillResult& r, const DistillReportInfo& info, const std::string& dir) {
  TORCH_CHECK_VALUE(!r.evals.empty(), "distill report: the result has no evaluation");
  const DistillOptions& o = info.options;
  ojson j;
  j["format"] = "qdqbert qat report 1";
  j["model"] = info.model;
  j["teacher"] = info.teacher;
  j["train_text"] = info.train_text;
  j["eval_text"] = info.eval_text;
  j["quant_config"] = info.quant_config;
  j["options"] = {{"steps", r.total_steps},         {"lr", o.lr},
                  {"amax_lr", o.amax_lr > 0 ? o.amax_lr : o.lr}, {"warmup_ratio", o.warmup_ratio},
                  {"weight_decay", o.weight_decay}, {"max_grad_norm", o.max_grad_norm},
                  {"learn_amax", o.learn_amax}, {"range_learning", nn::to_string(o.range_learning)},     {"loss", to_string(o.loss)},
                  {"eval_every", o.eval_every},     {"seed", o.seed},
                  {"threads", info.threads}};
  j["train_sentences"] = r.train_sentences;
  j["train_batches"] = r.train_batches;
  j["eval_sentences"] = r.eval_sentences;
  j["learned_amax_quantizers"] = r.learned_amax_quantizers;
  j["quantizers"] = {{"enabled", info.enabled_quantizers}, {"total", info.quantizers}};
  j["gemm_flops"] = {{"total", info.flops.total}, {"int8", info.flops.int8}, {"int8_share", info.flops.int8_share()}};
  j["train_seconds"] = r.train_seconds;
  j["seconds_per_step"] = r.seconds_per_step;
  j["before"] = fidelity_json(r.before());
  j["after"] = fidelity_json(r.after());
  ojson evals = ojson::array();
  for (const auto& e : r.evals) {
    ojson row = fidelity_json(e.fidelity);
    row["step"] = e.step;
    evals.push_back(row);
  }
  j["evals"] = evals;
  j["loss"] = r.loss;

  std::ostringstream md;
  md << "# QAT by distillation: " << info.model << "\n\n"
     << "Student `" << info.model << "` (" << info.enabled_quantizers << " of " << info.quantizers
     << " quantizers enabled" << (info.quant_config.empty() ? "" : ", quant config `" + info.quant_config + "`")
     << "; " << fixed(100 * info.flops.int8_share(), 1) << "% of the encoder's GEMM FLOPs in int8) learns from the FP32 "
     << "teacher `" << info.teacher << "`: " << to_string(o.loss) << " loss, " << r.total_steps << " steps of "
     << (r.train_sentences + r.train_batches - 1) / std::max<int64_t>(1, r.train_batches) << " sentences (" << r.train_sentences
     << " training sentences from `" << info.train_text << "`), AdamW lr " << o.lr << ", warmup " << o.warmup_ratio
     << ", weight decay " << o.weight_decay << ", clip " << o.max_grad_norm
     << (o.learn_amax ? ", learned activation ranges (" + nn::to_string(o.range_learning) + ", " +
                            std::to_string(r.learned_amax_quantizers) + " quantizers)"
                      : "")
     << ", seed " << o.seed << ". Training took " << fixed(r.train_seconds, 1) << " s (" << fixed(r.seconds_per_step, 3)
     << " s/step" << (info.threads > 0 ? ", " + std::to_string(info.threads) + " threads" : "") << ").\n\n"
     << "Measured on " << r.eval_sentences << " evaluation sentences from `" << info.eval_text
     << "` (never trained on): cosine of each sentence embedding to FP32, and retrieval fidelity (each "
        "sentence's " << r.after().k << " nearest neighbours by the FP32 vs the quantized embeddings).\n\n"
     << "| model " << fidelity_header() << "\n|---" << fidelity_rule() << "\n"
     << "| PTQ (start) " << fidelity_cells(r.before()) << "\n"
     << "| after QAT " << fidelity_cells(r.after()) << "\n\n"
     << "## Evaluations during training\n\n| step " << fidelity_header() << " loss |\n|---" << fidelity_rule()
     << "---|\n";
  for (const auto& e : r.evals) {
    md << "| " << e.step << " " << fidelity_cells(e.fidelity) << " "
       << (e.step > 0 ? fixed(r.loss[static_cast<size_t>(e.step - 1)], 5) : std::string("-")) << " |\n";
  }
  md << "\n![training curve](training_curve.svg)\n";
  fs::create_directories(dir);
  io::write_file_atomic((fs::path(dir) / "training_curve.svg").string(), curve_svg(r, info));
  io::write_file_atomic((fs::path(dir) / "report.json").string(), j.dump(2) + "\n");
  io::write_file_atomic((fs::path(dir) / "report.md").string(), md.str());
  return md.str();
}

}  // namespace qdqbert::workflow
