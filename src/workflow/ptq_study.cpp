// The PTQ study's steps. Each returns plain data; ptq_study_report.cpp turns a result into files.
#include "qdqbert/workflow/ptq_study.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "qdqbert/error.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/regex.h"
#include "qdqbert/tokenization/tokenizer.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/quant_config.h"
#include "workflow/report_util.h"

namespace qdqbert::workflow {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using AmaxMap = std::map<std::string, at::Tensor>;  // quantizer -> amax

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sensitivity groups: per layer attention (q/k/v + matmuls), attention output, FFN, residual adds, plus
// the quantizers that read the embedding output.
std::vector<std::pair<std::string, std::string>> groups(int64_t layers) {
  std::vector<std::pair<std::string, std::string>> g;
  g.emplace_back("embeddings path",
                 "^(bert\\.)?encoder\\.layer\\.0\\.attention\\.(self\\.(query|key|value)\\._input_quantizer|output\\."
                 "add_residual_input_quantizer)$");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = "^(bert\\.)?encoder\\.layer\\." + std::to_string(i) + "\\.";
    g.emplace_back("layer " + std::to_string(i) + " attention",
                   l + "attention\\.self\\.((query|key|value)\\._weight_quantizer|matmul_[qkva]_input_quantizer" +
                       (i == 0 ? "" : "|(query|key|value)\\._input_quantizer") + ")$");
    g.emplace_back("layer " + std::to_string(i) + " attention output",
                   l + "attention\\.output\\.dense\\._(input|weight)_quantizer$");
    g.emplace_back("layer " + std::to_string(i) + " ffn", l + "(intermediate|output)\\.dense\\._(input|weight)_quantizer$");
    g.emplace_back("layer " + std::to_string(i) + " residual adds",
                   l + "(attention\\.output\\.add_local|" + (i == 0 ? "" : "attention\\.output\\.add_residual|") +
                       "output\\.add_(local|residual))_input_quantizer$");
  }
  return g;
}

// Every quantizer on, except those matching one of `fp32_patterns`.
void keep_in_fp32(TaskModel& m, const std::vector<std::string>& fp32_patterns) {
  std::vector<Regex> res;
  for (const auto& p : fp32_patterns) res.emplace_back(p, "ptq study: FP32 group pattern");
  for (auto& [n, q] : named_quantizers(m.module())) {
    bool hit = false;
    for (const auto& re : res) hit = hit || re.search(n);
    hit ? q->disable() : q->enable();
  }
}

// Only the quantizers matching `pattern` on.
void only(TaskModel& m, const std::string& pattern) {
  const Regex re(pattern, "ptq study: group pattern");
  for (auto& [n, q] : named_quantizers(m.module())) re.search(n) ? q->enable() : q->disable();
}

// Estimated squared quantization error of a |x| histogram at `amax` (8-bit signed, bin centres).
double histogram_error(const std::vector<int64_t>& hist, const std::vector<double>& edges, double amax) {
  if (!(amax > 0)) return std::numeric_limits<double>::infinity();
  const double step = amax / 127.0;
  double err = 0;
  for (size_t k = 0; k < hist.size(); ++k) {
    const double c = 0.5 * (edges[k] + edges[k + 1]);
    const double q = std::min(std::nearbyint(c / step) * step, amax);
    err += static_cast<double>(hist[k]) * (c - q) * (c - q);
  }
  return err;
}

// What the steps share: the one model, the tokenized text and the FP32 reference.
struct Study {
  const PtqStudyOptions& o;
  Clock::time_point start = Clock::now();
  std::shared_ptr<TaskModel> model;
  std::vector<ModelInputs> calib, eval;
  std::vector<int64_t> lengths;
  Embeddings reference;
  std::map<std::string, AmaxMap> amax;               // method -> quantizer -> amax
  std::map<std::string, double> calib_seconds;
  std::map<std::string, std::unique_ptr<calib::HistogramCalibrator>> hists;
  std::vector<std::string> methods;                  // sweep order
  // For the ETA: evaluations done and their time, and how many are planned (the partial-quantization
  // step's count is estimated as the number of groups + 2 until it runs).
  int64_t evals_done = 0, evals_planned = 0;
  double eval_seconds = 0;

  explicit Study(const PtqStudyOptions& options) : o(options) {}

  void say(const std::string& line) const {
    if (!o.progress) return;
    char when[64];
    std::snprintf(when, sizeof(when), "[%6.1f s] ", seconds_since(start));
    std::string eta;
    if (evals_done > 0 && evals_planned > evals_done) {
      const double left = eval_seconds / static_cast<double>(evals_done) * static_cast<double>(evals_planned - evals_done);
      char b[64];
      std::snprintf(b, sizeof(b), " (ETA ~%dm%02ds)", static_cast<int>(left / 60), static_cast<int>(std::fmod(left, 60)));
      eta = b;
    }
    o.progress(when + line + eta);
  }
  EmbeddingFidelity fidelity() {
    const auto t0 = Clock::now();
    EmbeddingFidelity f = compare_embeddings(reference, embed_batches(*model, eval, 0), o.k);
    eval_seconds += seconds_since(t0);
    evals_planned = std::max(evals_planned, ++evals_done);
    return f;
  }
  GemmFlops flops() { return gemm_flops(*model, lengths); }
};

// Step 1: tokenize, load once, FP32 reference embeddings.
void prepare(Study& s) {
  const auto tok = tokenization::load_tokenizer(s.o.model_dir);
  s.calib = encode_batches(*tok, s.o.calib_lines, s.o.max_length, s.o.batch_size);
  // Every measure is a statistic over the set (cosine mean/p5/min, recall@k among the sentences), so the
  // evaluation runs in batches of like length: about half the padded tokens of the file's order.
  s.eval = encode_batches(*tok, sort_by_token_count(*tok, s.o.eval_lines, s.o.max_length), s.o.max_length,
                          s.o.batch_size);
  for (const auto& b : s.eval) {
    const auto l = sequence_lengths(b.attention_mask);
    s.lengths.insert(s.lengths.end(), l.begin(), l.end());
  }
  io::PretrainedOptions po;
  po.task = "base";
  po.quant_desc_input = nn::QuantDescriptor();
  po.quant_desc_weight = nn::quant_desc_8bit_linear_weight_per_row();
  s.model = io::from_pretrained(s.o.model_dir, po);
  s.model->module().eval();
  for (auto& [n, q] : named_quantizers(s.model->module())) q->disable();
  s.reference = embed_batches(*s.model, s.eval, tok->pad_token_id());
  s.say("FP32 reference embeddings of " + std::to_string(s.o.eval_lines.size()) + " evaluation lines");
}

// Step 2: amax of every activation quantizer by every method: a max pass, then a histogram pass whose
// histograms serve all histogram methods (each computed on a copy).
void collect(Study& s) {
  auto t0 = Clock::now();
  CalibrationOptions co;
  co.calibrate_weights = false;
  for (auto& [n, q] : named_quantizers(s.model->module())) q->enable();
  calibrate(*s.model, s.calib, co);
  for (auto& info : nn::list_quantizers(s.model->module())) {
    if (info.quantizer->has_amax() && info.role != nn::QuantizerRole::kLinearWeight) {
      s.amax["max"][info.name] = info.quantizer->amax().clone();
    }
  }
  s.calib_seconds["max"] = seconds_since(t0);
  s.methods = {"max"};
  s.say("max calibration on " + std::to_string(s.o.calib_lines.size()) + " lines");
  t0 = Clock::now();
  for (auto& info : nn::list_quantizers(s.model->module())) {
    auto& q = info.quantizer;
    if (info.role != nn::QuantizerRole::kLinearWeight) {
      q->set_calibrator(std::make_unique<calib::HistogramCalibrator>(q->num_bits(), std::vector<int64_t>{}, q->is_unsigned()));
    }
  }
  enable_calibration(*s.model, co);
  {
    torch::NoGradGuard ng;
    for (const auto& b : s.calib) s.model->run(b);
  }
  for (auto& [n, q] : named_quantizers(s.model->module())) {
    if (q->is_calib_enabled() && q->calibrator() && q->calibrator()->has_data() &&
        q->calibrator()->kind() == calib::CalibratorKind::kHistogram) {
      s.hists[n].reset(static_cast<calib::HistogramCalibrator*>(q->calibrator()->clone().release()));
    }
    q->disable_calib();
    q->enable_quant();
  }
  const double collect_seconds = seconds_since(t0);
  s.say("histogram collection");
  const std::vector<std::pair<std::string, double>> hist_methods = {
      {"percentile 99.9", 99.9}, {"percentile 99.99", 99.99}, {"percentile 99.999", 99.999}, {"mse", 0}, {"entropy", 0}};
  for (const auto& [label, pct] : hist_methods) {
    const auto t1 = Clock::now();
    calib::ComputeAmaxOptions ao;
    if (pct > 0) ao.percentile = pct;
    for (auto& [n, h] : s.hists) s.amax[label][n] = h->clone()->compute_amax(pct > 0 ? "percentile" : label, ao);
    s.calib_seconds[label] = collect_seconds + seconds_since(t1);
    s.methods.push_back(label);
    s.say("amax by " + label);
  }
}

// Step 2b: per quantizer, the method whose amax gives the least quantization error on its own histogram.
std::map<std::string, int64_t> per_quantizer_best(Study& s) {
  std::map<std::string, int64_t> choice;
  AmaxMap best;
  for (const auto& [n, h] : s.hists) {
    double err = std::numeric_limits<double>::infinity();
    std::string which;
    for (const auto& m : s.methods) {
      auto it = s.amax[m].find(n);
      if (it == s.amax[m].end()) continue;
      const double e = histogram_error(h->hist(), h->bin_edges(), it->second.item<double>());
      if (e < err) {
        err = e;
        which = m;
      }
    }
    if (which.empty()) continue;
    best[n] = s.amax[which][n];
    ++choice[which];
  }
  for (const auto& [n, a] : s.amax["max"]) {
    if (!best.count(n)) best[n] = a;  // quantizers without a histogram keep max
  }
  s.amax["per-quantizer best"] = best;
  s.calib_seconds["per-quantizer best"] = s.calib_seconds["mse"];
  s.methods.push_back("per-quantizer best");
  return choice;
}

// Sets every quantizer on with `method`'s activation amax and per-channel or per-tensor weight amax.
void apply(Study& s, const std::string& method, bool per_channel) {
  for (auto& [n, q] : named_quantizers(s.model->module())) {
    q->enable();
    auto it = s.amax[method].find(n);
    if (it != s.amax[method].end()) q->set_amax(it->second, true);
  }
  for (const auto& item : s.model->module().named_modules("", false)) {
    if (auto lin = std::dynamic_pointer_cast<nn::QuantLinearImpl>(item.value())) {
      at::Tensor w = lin->weight.detach().abs();
      lin->weight_quantizer->set_axis(per_channel ? std::optional<std::vector<int64_t>>(std::vector<int64_t>{0})
                                                  : std::nullopt);
      lin->weight_quantizer->set_amax(per_channel ? w.amax({1}, true) : w.max(), true);
    }
  }
}

// Step 3: every method x per-channel / per-tensor weights.
void sweep(Study& s, PtqStudyResult& r) {
  torch::NoGradGuard ng;
  for (const auto& method : s.methods) {
    for (bool pc : {true, false}) {
      apply(s, method, pc);
      StudyConfig c{method, pc, s.fidelity(), s.flops(), s.calib_seconds[method]};
      r.sweep.push_back(c);
      s.say("sweep " + std::to_string(r.sweep.size()) + "/" + std::to_string(2 * s.methods.size()) + ": " + method + ", " +
            (pc ? "per-channel" : "per-tensor") + " weights: cosine p5 " + fixed(c.fidelity.cosine_p5));
      if (r.sweep.size() == 1 || c.fidelity.cosine_p5 > r.best.fidelity.cosine_p5) r.best = c;
    }
  }
}

// Step 4: one group quantized at a time with the best configuration; costliest first.
void sensitivity(Study& s, PtqStudyResult& r, int64_t layers) {
  torch::NoGradGuard ng;
  apply(s, r.best.calibration, r.best.per_channel);
  const double all_int8 = s.flops().int8;
  const auto gs = groups(layers);
  for (const auto& [name, pattern] : gs) {
    keep_in_fp32(*s.model, {pattern});
    const double fp32 = all_int8 - s.flops().int8;
    only(*s.model, pattern);
    r.sensitivity.push_back({name, pattern, s.fidelity(), fp32});
    s.say("sensitivity " + std::to_string(r.sensitivity.size()) + "/" + std::to_string(gs.size()) + ": " + name +
          ": cosine p5 " + fixed(r.sensitivity.back().fidelity.cosine_p5));
  }
  std::sort(r.sensitivity.begin(), r.sensitivity.end(),
            [](const auto& a, const auto& b) { return a.fidelity.cosine_mean < b.fidelity.cosine_mean; });
}

// Step 5: the least FP32 GEMM work that reaches the target. Groups go to FP32 in the order of cosine cost
// per FP32 FLOP (free groups such as residual adds first) until the target holds; then each kept group,
// largest first, goes back to int8 when the target still holds without it.
void partial(Study& s, PtqStudyResult& r) {
  torch::NoGradGuard ng;
  std::vector<const GroupResult*> order;
  for (const auto& g : r.sensitivity) order.push_back(&g);
  auto value = [](const GroupResult* g) { return (1 - g->fidelity.cosine_mean) / (g->fp32_flops + 1e3); };
  std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) { return value(a) > value(b); });
  std::vector<const GroupResult*> kept;
  auto measure = [&](const std::string& what) {
    std::vector<std::string> names, patterns;
    for (auto* g : kept) {
      names.push_back(g->name);
      patterns.push_back(g->pattern);
    }
    keep_in_fp32(*s.model, patterns);
    r.partial.push_back({names, s.fidelity(), s.flops()});
    s.say("partial: " + what + ": cosine p5 " + fixed(r.partial.back().fidelity.cosine_p5) + ", int8 GEMM share " +
          fixed(100 * r.partial.back().flops.int8_share(), 1) + "%");
    return r.partial.back().fidelity.cosine_p5 >= r.target_cosine;
  };
  bool ok = measure("all quantized");
  for (size_t i = 0; i < order.size() && !ok; ++i) {
    kept.push_back(order[i]);
    ok = measure(order[i]->name + " kept in FP32");
  }
  r.reached = ok;
  if (ok && kept.size() > 1) {
    std::vector<const GroupResult*> by_flops = kept;
    std::stable_sort(by_flops.begin(), by_flops.end(), [](auto* a, auto* b) { return a->fp32_flops > b->fp32_flops; });
    for (auto* g : by_flops) {
      if (g->fp32_flops <= 0) continue;
      kept.erase(std::find(kept.begin(), kept.end(), g));
      if (!measure(g->name + " back to int8")) kept.push_back(g);
    }
    measure("chosen");
  }
  for (auto* g : kept) {
    r.fp32_groups.push_back(g->name);
    r.fp32_patterns.push_back(g->pattern);
  }
}

// The 4 quantizers where the methods disagree most (largest / smallest amax).
void histograms(Study& s, PtqStudyResult& r) {
  std::vector<AmaxHistogram> all;
  for (const auto& [n, h] : s.hists) {
    AmaxHistogram v;
    v.quantizer = n;
    v.edges = h->bin_edges();
    v.counts.assign(h->hist().begin(), h->hist().end());
    double lo = 1e300, hi = 0;
    for (const auto& m : s.methods) {
      auto it = s.amax[m].find(n);
      if (it == s.amax[m].end() || m == "per-quantizer best") continue;
      const double a = it->second.item<double>();
      v.amax.emplace_back(m, a);
      lo = std::min(lo, a);
      hi = std::max(hi, a);
    }
    v.spread = lo > 0 ? hi / lo : 0;
    all.push_back(std::move(v));
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.spread > b.spread; });
  if (all.size() > 4) all.resize(4);
  r.histograms = std::move(all);
}

}  // namespace

PtqStudyResult study_ptq(const PtqStudyOptions& o, std::shared_ptr<TaskModel>* calibrated) {
  QDQBERT_CHECK(!o.calib_lines.empty() && !o.eval_lines.empty(), "ptq-study: calibration and evaluation text must not "
                                                                 "be empty");
  QDQBERT_CHECK(o.target_cosine > 0 && o.target_cosine <= 1, "ptq-study: target cosine must be in (0, 1], got ",
                o.target_cosine);
  Study s(o);
  PtqStudyResult r;
  r.model_dir = o.model_dir;
  r.calib_lines = static_cast<int64_t>(o.calib_lines.size());
  r.eval_lines = static_cast<int64_t>(o.eval_lines.size());
  r.target_cosine = o.target_cosine;
  r.k = o.k;
  prepare(s);
  collect(s);
  if (o.per_quantizer_calibrator) r.per_quantizer_choice = per_quantizer_best(s);
  const auto group_count = static_cast<int64_t>(groups(s.model->model_config().num_hidden_layers).size());
  s.evals_planned = 2 * static_cast<int64_t>(s.methods.size()) + group_count + group_count + 2;
  sweep(s, r);
  sensitivity(s, r, s.model->model_config().num_hidden_layers);
  partial(s, r);
  histograms(s, r);
  if (calibrated) {
    apply(s, r.best.calibration, r.best.per_channel);
    *calibrated = s.model;
  }
  return r;
}

std::string run_ptq_study(const PtqStudyOptions& o) {
  fs::create_directories(o.output_dir);
  std::shared_ptr<TaskModel> model;
  const PtqStudyResult r = study_ptq(o, &model);
  const std::string calibrated = (fs::path(o.output_dir) / "calibrated").string();
  io::save_pretrained(*model, calibrated);
  io::copy_tokenizer_files(o.model_dir, calibrated);
  QuantConfig qc;
  for (const auto& p : r.fp32_patterns) {
    QuantizerRule rule;
    rule.pattern = p;
    rule.enable = false;
    qc.rules.push_back(rule);
  }
  qc.to_json_file((fs::path(o.output_dir) / "quant_config.json").string());
  return write_ptq_study_report(r, o.output_dir);
}

}  // namespace qdqbert::workflow
