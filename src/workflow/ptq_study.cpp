#include "qdqbert/workflow/ptq_study.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/tensors.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/embed.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/workflow/quant_trainer.h"

namespace qdqbert::workflow {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
namespace fs = std::filesystem;

struct Quality {
  double mean = 0, p5 = 0, min = 0, max_abs_diff = 0;
};

Quality compare(const Embeddings& ref, const Embeddings& q) {
  at::Tensor cos = (ref.sentence_embedding * q.sentence_embedding).sum(1);
  at::Tensor sorted = std::get<0>(cos.sort());
  const int64_t n = sorted.numel();
  Quality r;
  r.mean = cos.mean().item<double>();
  r.min = sorted[0].item<double>();
  r.p5 = sorted[std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(0.05 * (n - 1))))].item<double>();
  at::Tensor m = ref.attention_mask.unsqueeze(-1).to(torch::kFloat);
  r.max_abs_diff = ((ref.last_hidden_state - q.last_hidden_state) * m).abs().max().item<double>();
  return r;
}

json to_json(const Quality& q) {
  return {{"cosine_mean", q.mean}, {"cosine_p5", q.p5}, {"cosine_min", q.min}, {"max_abs_diff", q.max_abs_diff}};
}

std::string fmt(double v, int prec = 4) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(prec);
  os << v;
  return os.str();
}

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

void set_enabled(TaskModel& m, const std::vector<std::string>& patterns, bool all_others) {
  std::vector<std::regex> res;
  for (const auto& p : patterns) res.emplace_back(p);
  for (auto& [n, q] : named_quantizers(m.module())) {
    bool hit = false;
    for (const auto& re : res) hit = hit || std::regex_search(n, re);
    (hit ? !all_others : all_others) ? q->enable() : q->disable();
  }
}

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? std::string("&lt;") : c == '>' ? std::string("&gt;") : c == '&' ? std::string("&amp;") : std::string(1, c);
  return o;
}

}  // namespace

std::string run_ptq_study(const PtqStudyOptions& o) {
  TORCH_CHECK_VALUE(!o.calib_lines.empty() && !o.eval_lines.empty(), "ptq-study: calibration and evaluation text "
                                                                     "must not be empty");
  if (o.threads > 0) at::set_num_threads(o.threads);
  torch::NoGradGuard ng;
  const auto study_start = Clock::now();
  auto say = [&](const std::string& line) {
    if (!o.progress) return;
    char when[32];
    std::snprintf(when, sizeof(when), "[%6.1f s] ", std::chrono::duration<double>(Clock::now() - study_start).count());
    o.progress(when + line);
  };
  fs::create_directories(o.output_dir);
  auto tok = tokenization::BertTokenizer::from_pretrained(o.model_dir);
  EmbedOptions eo;
  eo.max_length = o.max_length;
  eo.batch_size = o.batch_size;
  auto load = [&](const nn::QuantDescriptor& in, const nn::QuantDescriptor& w) {
    io::PretrainedOptions po;
    po.task = "base";
    po.quant_desc_input = in;
    po.quant_desc_weight = w;
    auto m = io::from_pretrained(o.model_dir, po);
    m->module().eval();
    return m;
  };
  auto fp32 = load(nn::QuantDescriptor(), nn::quant_desc_8bit_linear_weight_per_row());
  for (auto& [n, q] : named_quantizers(fp32->module())) q->disable();
  const Embeddings ref = embed(*fp32, tok, o.eval_lines, eo);
  say("FP32 reference embeddings of " + std::to_string(o.eval_lines.size()) + " evaluation lines");
  const int64_t layers = fp32->model_config().num_hidden_layers;

  // Calibration inputs.
  std::vector<ModelInputs> batches;
  {
    tokenization::EncodeOptions enc;
    enc.truncation = tokenization::Truncation::LongestFirst;
    enc.max_length = o.max_length;
    enc.padding = tokenization::Padding::Longest;
    for (size_t s = 0; s < o.calib_lines.size(); s += static_cast<size_t>(o.batch_size)) {
      std::vector<std::string> chunk(o.calib_lines.begin() + s,
                                     o.calib_lines.begin() + std::min(o.calib_lines.size(), s + o.batch_size));
      auto t = tokenization::to_tensors(tok.encode_batch(chunk, {}, enc));
      ModelInputs in;
      in.input_ids = t.input_ids;
      in.attention_mask = t.attention_mask;
      in.token_type_ids = t.token_type_ids;
      batches.push_back(in);
    }
  }
  // Two collection passes: max calibrators, and histogram calibrators (shared by the histogram methods).
  std::map<std::string, std::map<std::string, at::Tensor>> amax;  // method -> quantizer -> amax
  std::map<std::string, double> calib_seconds;
  auto t0 = Clock::now();
  auto max_model = load(nn::QuantDescriptor(), nn::quant_desc_8bit_linear_weight_per_row());
  CalibrationOptions co;
  co.calibrate_weights = false;
  calibrate(*max_model, batches, co);
  for (auto& [n, q] : named_quantizers(max_model->module())) {
    if (q->has_amax()) amax["max"][n] = q->amax().clone();
  }
  calib_seconds["max"] = std::chrono::duration<double>(Clock::now() - t0).count();
  say("max calibration on " + std::to_string(o.calib_lines.size()) + " lines");
  t0 = Clock::now();
  auto hist_model = load(nn::QuantDescriptor().with_calib_method("histogram"), nn::quant_desc_8bit_linear_weight_per_row());
  enable_calibration(*hist_model, co);
  for (const auto& b : batches) hist_model->run(b);
  const double collect = std::chrono::duration<double>(Clock::now() - t0).count();
  say("histogram collection");
  std::map<std::string, calib::HistogramCalibrator*> hists;
  for (auto& [n, q] : named_quantizers(hist_model->module())) {
    if (q->is_calib_enabled() && q->calibrator()->has_data()) {
      hists[n] = static_cast<calib::HistogramCalibrator*>(q->calibrator());
    }
  }
  const std::vector<std::pair<std::string, std::pair<std::string, double>>> hist_methods = {
      {"percentile 99.9", {"percentile", 99.9}}, {"percentile 99.99", {"percentile", 99.99}},
      {"percentile 99.999", {"percentile", 99.999}}, {"mse", {"mse", 0}}, {"entropy", {"entropy", 0}}};
  for (const auto& [label, spec] : hist_methods) {
    auto t1 = Clock::now();
    calib::ComputeAmaxOptions ao;
    if (spec.first == "percentile") ao.percentile = spec.second;
    for (auto& [n, h] : hists) {
      auto c = h->clone();
      amax[label][n] = c->compute_amax(spec.first, ao);
    }
    calib_seconds[label] = collect + std::chrono::duration<double>(Clock::now() - t1).count();
    say("amax by " + label);
  }

  // Sweep: every method x per-channel / per-tensor weights.
  json report;
  report["model"] = o.model_dir;
  report["calib_lines"] = o.calib_lines.size();
  report["eval_lines"] = o.eval_lines.size();
  report["target_cosine"] = o.target_cosine;
  std::string best;
  bool best_per_channel = true;
  double best_p5 = -2;
  std::ostringstream md;
  md << "# PTQ study: " << o.model_dir << "\n\n"
     << o.calib_lines.size() << " calibration lines, " << o.eval_lines.size()
     << " evaluation lines (disjoint). Quality = cosine similarity of each evaluation sentence embedding "
        "(mean-pooled, L2-normalised) against FP32; `max |Δh|` = largest difference of last_hidden_state over "
        "real tokens. All 8-bit; activations per tensor.\n\n"
     << "| calibration | weights | cosine mean | cosine p5 | cosine min | max abs Δh | calib time (s) |\n"
     << "|---|---|---|---|---|---|---|\n";
  auto apply = [&](TaskModel& m, const std::string& method, bool per_channel) {
    for (auto& [n, q] : named_quantizers(m.module())) {
      q->enable();
      auto it = amax[method].find(n);
      if (it != amax[method].end()) q->set_amax(it->second, true);
    }
    for (const auto& item : m.module().named_modules("", false)) {
      if (auto lin = std::dynamic_pointer_cast<nn::QuantLinearImpl>(item.value())) {
        at::Tensor w = lin->weight.detach().abs();
        lin->weight_quantizer->set_axis(per_channel ? std::optional<std::vector<int64_t>>(std::vector<int64_t>{0})
                                                    : std::nullopt);
        lin->weight_quantizer->set_amax(per_channel ? w.amax({1}, true) : w.max(), true);
      }
    }
  };
  auto quant_model = load(nn::QuantDescriptor(), nn::quant_desc_8bit_linear_weight_per_row());
  json sweep = json::array();
  std::vector<std::string> method_order = {"max"};
  for (const auto& hm : hist_methods) method_order.push_back(hm.first);
  for (const auto& method : method_order) {
    for (bool pc : {true, false}) {
      apply(*quant_model, method, pc);
      Quality q = compare(ref, embed(*quant_model, tok, o.eval_lines, eo));
      json row = to_json(q);
      row["calibration"] = method;
      row["weights"] = pc ? "per-channel" : "per-tensor";
      row["calib_seconds"] = calib_seconds[method];
      sweep.push_back(row);
      say("sweep " + std::to_string(sweep.size()) + "/" + std::to_string(2 * method_order.size()) + ": " + method +
          ", " + (pc ? "per-channel" : "per-tensor") + " weights: cosine p5 " + fmt(q.p5));
      md << "| " << method << " | " << (pc ? "per-channel" : "per-tensor") << " | " << fmt(q.mean) << " | "
         << fmt(q.p5) << " | " << fmt(q.min) << " | " << fmt(q.max_abs_diff, 3) << " | " << fmt(calib_seconds[method], 2)
         << " |\n";
      if (q.p5 > best_p5) {
        best_p5 = q.p5;
        best = method;
        best_per_channel = pc;
      }
    }
  }
  report["sweep"] = sweep;
  report["best"] = {{"calibration", best}, {"weights", best_per_channel ? "per-channel" : "per-tensor"},
                    {"cosine_p5", best_p5}};

  // Sensitivity: one group quantized at a time with the best method.
  apply(*quant_model, best, best_per_channel);
  auto gs = groups(layers);
  std::vector<std::tuple<std::string, std::string, Quality>> sens;
  for (const auto& [name, pattern] : gs) {
    set_enabled(*quant_model, {pattern}, /*all_others=*/false);
    sens.emplace_back(name, pattern, compare(ref, embed(*quant_model, tok, o.eval_lines, eo)));
    say("sensitivity " + std::to_string(sens.size()) + "/" + std::to_string(gs.size()) + ": " + name + ": cosine p5 " +
        fmt(std::get<2>(sens.back()).p5));
  }
  std::sort(sens.begin(), sens.end(),
            [](const auto& a, const auto& b) { return std::get<2>(a).mean < std::get<2>(b).mean; });
  md << "\n## Sensitivity (" << best << ", " << (best_per_channel ? "per-channel" : "per-tensor")
     << " weights; one group quantized at a time)\n\n| group | cosine cost (1 - mean) | cosine p5 |\n|---|---|---|\n";
  json sj = json::array();
  for (const auto& [name, pattern, q] : sens) {
    md << "| " << name << " | " << fmt(1 - q.mean, 6) << " | " << fmt(q.p5) << " |\n";
    json r = to_json(q);
    r["group"] = name;
    r["pattern"] = pattern;
    sj.push_back(r);
  }
  report["sensitivity"] = sj;

  // Greedy partial quantization: keep the costliest groups in FP32 until p5 reaches the target.
  std::vector<std::string> fp32_patterns;
  set_enabled(*quant_model, {}, /*all_others=*/true);
  Quality cur = compare(ref, embed(*quant_model, tok, o.eval_lines, eo));
  json steps = json::array();
  steps.push_back({{"fp32_groups", json::array()}, {"cosine_p5", cur.p5}, {"cosine_mean", cur.mean}});
  std::vector<std::string> kept;
  for (size_t i = 0; i < sens.size() && cur.p5 < o.target_cosine; ++i) {
    const auto& [name, pattern, q] = sens[i];
    kept.push_back(name);
    fp32_patterns.push_back(pattern);
    set_enabled(*quant_model, fp32_patterns, /*all_others=*/true);
    cur = compare(ref, embed(*quant_model, tok, o.eval_lines, eo));
    steps.push_back({{"fp32_groups", kept}, {"cosine_p5", cur.p5}, {"cosine_mean", cur.mean}});
    say("greedy: " + name + " kept in FP32: cosine p5 " + fmt(cur.p5));
  }
  report["greedy"] = {{"steps", steps}, {"reached", cur.p5 >= o.target_cosine}, {"fp32_groups", kept}};
  md << "\n## Partial quantization (target: cosine p5 >= " << o.target_cosine << ")\n\n";
  md << "| groups kept in FP32 | cosine p5 | cosine mean |\n|---|---|---|\n";
  for (const auto& s : steps) {
    std::string g;
    for (const auto& x : s["fp32_groups"]) g += (g.empty() ? "" : ", ") + x.get<std::string>();
    md << "| " << (g.empty() ? "(none: all quantized)" : g) << " | " << fmt(s["cosine_p5"].get<double>()) << " | "
       << fmt(s["cosine_mean"].get<double>()) << " |\n";
  }
  md << "\n" << (cur.p5 >= o.target_cosine ? "Target reached" : "Target NOT reached even with every group in FP32")
     << "; `quant_config.json` disables the chosen groups and `calibrated/` holds the checkpoint with the "
     << best << " amax, so `qdqbert-cli embed|infer|export-onnx --model calibrated --quant-config quant_config.json` "
     << "runs the chosen partial quantization.\n";

  // Outputs: calibrated checkpoint (best method), quant config, SVGs, report files.
  apply(*quant_model, best, best_per_channel);
  io::save_pretrained(*quant_model, (fs::path(o.output_dir) / "calibrated").string());
  for (const char* f : {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    if (fs::exists(fs::path(o.model_dir) / f)) {
      fs::copy_file(fs::path(o.model_dir) / f, fs::path(o.output_dir) / "calibrated" / f,
                    fs::copy_options::overwrite_existing);
    }
  }
  QuantConfig qc;
  for (const auto& p : fp32_patterns) {
    QuantizerRule r;
    r.pattern = p;
    r.enable = false;
    qc.rules.push_back(r);
  }
  qc.to_json_file((fs::path(o.output_dir) / "quant_config.json").string());

  // Histogram plot: the quantizers where the methods disagree most (max/min amax ratio).
  std::vector<std::pair<double, std::string>> spread;
  for (auto& [n, h] : hists) {
    double lo = 1e30, hi = 0;
    for (const auto& m : method_order) {
      if (!amax[m].count(n)) continue;
      lo = std::min(lo, amax[m][n].item<double>());
      hi = std::max(hi, amax[m][n].item<double>());
    }
    if (lo > 0) spread.emplace_back(hi / lo, n);
  }
  std::sort(spread.rbegin(), spread.rend());
  const char* colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::ostringstream svg;
  const int panels = static_cast<int>(std::min<size_t>(4, spread.size())), W = 720, H = 200;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << (H + 30) * panels + 40
      << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n";
  for (int pi = 0; pi < panels; ++pi) {
    const std::string& n = spread[pi].second;
    const auto& hist = hists[n]->hist();
    const auto& edges = hists[n]->bin_edges();
    const int y0 = 30 + pi * (H + 30);
    const double xmax = edges.back();
    double cmax = 1;
    for (auto c : hist) cmax = std::max(cmax, std::log10(1.0 + static_cast<double>(c)));
    svg << "<text x='10' y='" << y0 - 8 << "'>" << svg_escape(n) << " (log counts; amax ratio " << fmt(spread[pi].first, 1)
        << "x)</text>\n<path fill='#bbb' d='";
    for (size_t k = 0; k < hist.size(); ++k) {
      const double x = 10 + (W - 20) * edges[k] / xmax, h = (H - 10) * std::log10(1.0 + hist[k]) / cmax;
      svg << "M" << fmt(x, 1) << " " << y0 + H << "v" << fmt(-h, 1) << "h" << fmt(std::max(0.5, (W - 20) * (edges[k + 1] - edges[k]) / xmax), 2) << "v" << fmt(h, 1) << "z";
    }
    svg << "'/>\n";
    int ci = 0;
    for (const auto& m : method_order) {
      const double a = amax[m][n].item<double>();
      const double x = 10 + (W - 20) * std::min(1.0, a / xmax);
      svg << "<line x1='" << fmt(x, 1) << "' x2='" << fmt(x, 1) << "' y1='" << y0 << "' y2='" << y0 + H
          << "' stroke='" << colours[ci % 6] << "' stroke-width='1.5'/><text x='" << fmt(x + 2, 1) << "' y='"
          << y0 + 12 + 11 * ci << "' fill='" << colours[ci % 6] << "'>" << m << " " << fmt(a, 2) << "</text>\n";
      ++ci;
    }
  }
  svg << "</svg>\n";
  io::write_file_atomic((fs::path(o.output_dir) / "histograms.svg").string(), svg.str());
  std::ostringstream bar;
  const int BH = 22;
  bar << "<svg xmlns='http://www.w3.org/2000/svg' width='720' height='" << BH * sens.size() + 40
      << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='10' y='16'>Cosine cost (1 - mean cosine) when only this group is quantized</text>\n";
  double worst = 1e-12;
  for (const auto& s : sens) worst = std::max(worst, 1 - std::get<2>(s).mean);
  for (size_t i = 0; i < sens.size(); ++i) {
    const double cost = 1 - std::get<2>(sens[i]).mean;
    const double w = 420 * std::max(0.0, cost) / worst;
    const int y = 28 + BH * static_cast<int>(i);
    bar << "<text x='10' y='" << y + 14 << "'>" << svg_escape(std::get<0>(sens[i])) << "</text><rect x='200' y='" << y + 3
        << "' width='" << fmt(w, 1) << "' height='" << BH - 6 << "' fill='#1f77b4'/><text x='" << fmt(205 + w, 1)
        << "' y='" << y + 14 << "'>" << fmt(cost, 6) << "</text>\n";
  }
  bar << "</svg>\n";
  io::write_file_atomic((fs::path(o.output_dir) / "sensitivity.svg").string(), bar.str());
  md << "\n![calibration histograms](histograms.svg)\n\n![sensitivity](sensitivity.svg)\n";
  io::write_file_atomic((fs::path(o.output_dir) / "report.json").string(), report.dump(2) + "\n");
  io::write_file_atomic((fs::path(o.output_dir) / "report.md").string(), md.str());
  return md.str();
}

}  // namespace qdqbert::workflow
