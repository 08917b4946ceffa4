// The PTQ study's report: report.md, report.json and the SVG plots, from a PtqStudyResult.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "qdqbert/io/atomic_file.h"
#include "qdqbert/report/svg_chart.h"
#include "qdqbert/strings.h"
#include "qdqbert/workflow/ptq_study.h"
#include "workflow/report_util.h"

namespace qdqbert::workflow {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string weights(bool per_channel) { return per_channel ? "per-channel" : "per-tensor"; }
std::string share(const GemmFlops& f) { return fixed(100 * f.int8_share(), 1) + "%"; }

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

ojson config_json(const StudyConfig& c) {
  ojson j = fidelity_json(c.fidelity);
  j["calibration"] = c.calibration;
  j["weights"] = weights(c.per_channel);
  j["int8_gemm_share"] = c.flops.int8_share();
  j["calib_seconds"] = c.calib_seconds;
  return j;
}

// The group kind, for the sensitivity chart's colours.
std::string kind(const std::string& group) {
  for (const char* k : {"residual adds", "attention output", "attention", "ffn"}) {
    if (ends_with(group, k)) return k;
  }
  return "embeddings path";
}

std::string histograms_svg(const PtqStudyResult& r) {
  report::HistogramChart ch;
  ch.title = "Where each calibrator puts amax: the quantizers where the methods disagree most";
  ch.subtitle = "|x| histograms of the calibration activations (log counts); values right of a line are clipped "
                "by that method";
  ch.x_label = "|activation| (the quantizer's input units)";
  for (const auto& h : r.histograms) {
    report::HistogramPanel p;
    p.title = h.quantizer + " (largest / smallest amax " + fixed(h.spread, 1) + "x)";
    p.edges = h.edges;
    p.counts = h.counts;
    for (size_t i = 0; i < h.amax.size(); ++i) {
      p.markers.push_back({h.amax[i].first, report::palette()[i % report::palette().size()], h.amax[i].second});
    }
    ch.panels.push_back(std::move(p));
  }
  return report::render(ch);
}

std::string sensitivity_svg(const PtqStudyResult& r) {
  report::BarChart ch;
  ch.title = "Which groups cost accuracy: cosine cost when only that group is quantized";
  ch.subtitle = r.best.calibration + ", " + weights(r.best.per_channel) + " weights; longer bar = more damage";
  ch.value.label = "1 - mean cosine to FP32 (evaluation text)";
  const std::vector<std::string> kinds = {"embeddings path", "attention", "attention output", "ffn", "residual adds"};
  for (size_t i = 0; i < kinds.size(); ++i) ch.legend.emplace_back(kinds[i], report::palette()[i]);
  for (const auto& g : r.sensitivity) {
    const size_t k = static_cast<size_t>(std::find(kinds.begin(), kinds.end(), kind(g.name)) - kinds.begin());
    ch.bars.push_back({g.name, 1 - g.fidelity.cosine_mean, report::palette()[k], fixed(1 - g.fidelity.cosine_mean, 6)});
  }
  return report::render(ch);
}

std::string partial_svg(const PtqStudyResult& r) {
  report::BarChart ch;
  ch.title = "Partial quantization: int8 share of the GEMM work at each step, and the cosine it gives";
  ch.subtitle = "target cosine p5 >= " + fixed(r.target_cosine, 3) + "; green bars reach it";
  ch.value.label = "GEMM FLOPs with both inputs in int8 (% of the encoder)";
  ch.value.min = 0;
  ch.value.max = 100;
  ch.legend = {{"reaches the target", report::palette()[2]}, {"below the target", report::palette()[1]}};
  for (size_t i = 0; i < r.partial.size(); ++i) {
    const auto& s = r.partial[i];
    const bool ok = s.fidelity.cosine_p5 >= r.target_cosine;
    const std::string label = "step " + std::to_string(i) + ": " + std::to_string(s.fp32_groups.size()) + " groups FP32";
    ch.bars.push_back({label, 100 * s.flops.int8_share(), report::palette()[ok ? 2 : 1],
                       fixed(100 * s.flops.int8_share(), 1) + "%, p5 " + fixed(s.fidelity.cosine_p5)});
  }
  return report::render(ch);
}

void markdown_sweep(std::ostringstream& md, const PtqStudyResult& r) {
  md << "| calibration | weights " << fidelity_header() << " max abs Δh | int8 GEMM share | calib time (s) |\n"
     << "|---|---" << fidelity_rule() << "---|---|---|\n";
  for (const auto& c : r.sweep) {
    md << "| " << c.calibration << " | " << weights(c.per_channel) << " " << fidelity_cells(c.fidelity) << " "
       << fixed(c.fidelity.max_abs_diff, 3) << " | " << share(c.flops) << " | " << fixed(c.calib_seconds, 2) << " |\n";
  }
  if (!r.per_quantizer_choice.empty()) {
    const StudyConfig* pq = nullptr;
    const StudyConfig* single = nullptr;
    for (const auto& c : r.sweep) {
      if (c.calibration == "per-quantizer best") {
        if (!pq || c.fidelity.cosine_p5 > pq->fidelity.cosine_p5) pq = &c;
      } else if (!single || c.fidelity.cosine_p5 > single->fidelity.cosine_p5) {
        single = &c;
      }
    }
    md << "\n`per-quantizer best`: each activation quantizer takes the method whose amax gives the least squared "
          "quantization error on its own calibration histogram (";
    std::string sep;
    for (const auto& [m, n] : r.per_quantizer_choice) {
      md << sep << m << ": " << n;
      sep = ", ";
    }
    if (pq && single) {
      md << " quantizers). It " << (pq->fidelity.cosine_p5 > single->fidelity.cosine_p5 ? "beats" : "does not beat")
         << " the best single method (" << single->calibration << ", " << weights(single->per_channel)
         << "): cosine p5 " << fixed(pq->fidelity.cosine_p5) << " vs " << fixed(single->fidelity.cosine_p5) << ".\n";
    }
  }
}

void markdown_partial(std::ostringstream& md, const PtqStudyResult& r) {
  md << "\n## Partial quantization (target: cosine p5 >= " << r.target_cosine
     << ", the least FP32 GEMM work)\n\nGroups go to FP32 in the order of cosine cost per FP32 FLOP (groups without "
        "GEMM work, such as residual adds, first) until the target holds; then each kept group, largest first, "
        "returns to int8 if the target still holds without it. The last row is the choice.\n\n"
     << "| step | change (groups in FP32 after it) " << fidelity_header() << " int8 GEMM share |\n|---|---"
     << fidelity_rule() << "---|\n";
  for (size_t i = 0; i < r.partial.size(); ++i) {
    const auto& s = r.partial[i];
    std::string change = "all quantized";
    if (i > 0) {
      const auto& prev = r.partial[i - 1].fp32_groups;
      change.clear();
      for (const auto& g : s.fp32_groups) {
        if (std::find(prev.begin(), prev.end(), g) == prev.end()) change += (change.empty() ? "" : ", ") + ("+ " + g);
      }
      for (const auto& g : prev) {
        if (std::find(s.fp32_groups.begin(), s.fp32_groups.end(), g) == s.fp32_groups.end()) {
          change += (change.empty() ? "" : ", ") + ("- " + g + " (back to int8)");
        }
      }
      if (change.empty()) change = "(the choice)";
    }
    md << "| " << i << " | " << change << " (" << s.fp32_groups.size() << ") " << fidelity_cells(s.fidelity) << " "
       << share(s.flops) << " |\n";
  }
  md << "\nKept in FP32: " << (r.fp32_groups.empty() ? std::string("nothing") : join(r.fp32_groups)) << ".\n";
  md << "\n" << (r.reached ? "Target reached" : "Target NOT reached even with every group in FP32")
     << "; `quant_config.json` disables the chosen groups and `calibrated/` holds the checkpoint with the "
     << r.best.calibration << " amax, so `qdqbert-cli embed|infer|export-onnx|qat --model calibrated --quant-config "
     << "quant_config.json` runs the chosen partial quantization.\n";
}

}  // namespace

std::string write_ptq_study_report(const PtqStudyResult& r, const std::string& dir) {
  ojson j;
  j["model"] = r.model_dir;
  j["calib_lines"] = r.calib_lines;
  j["eval_lines"] = r.eval_lines;
  j["target_cosine"] = r.target_cosine;
  j["sweep"] = ojson::array();
  for (const auto& c : r.sweep) j["sweep"].push_back(config_json(c));
  j["best"] = config_json(r.best);
  j["per_quantizer_choice"] = r.per_quantizer_choice;
  j["sensitivity"] = ojson::array();
  for (const auto& g : r.sensitivity) {
    ojson row = fidelity_json(g.fidelity);
    row["group"] = g.name;
    row["pattern"] = g.pattern;
    row["fp32_gemm_flops"] = g.fp32_flops;
    j["sensitivity"].push_back(row);
  }
  ojson steps = ojson::array();
  for (const auto& s : r.partial) {
    ojson row = fidelity_json(s.fidelity);
    row["fp32_groups"] = s.fp32_groups;
    row["int8_gemm_share"] = s.flops.int8_share();
    steps.push_back(row);
  }
  j["partial"] = {{"steps", steps}, {"reached", r.reached}, {"fp32_groups", r.fp32_groups}};

  std::ostringstream md;
  md << "# PTQ study: " << r.model_dir << "\n\n"
     << r.calib_lines << " calibration lines, " << r.eval_lines
     << " evaluation lines (disjoint). Quality = cosine similarity of each evaluation sentence embedding "
        "(mean-pooled, L2-normalised) against FP32, and retrieval fidelity: each sentence's "
     << r.k << " nearest neighbours among the others by the FP32 vs the quantized embeddings (recall@" << r.k
     << ", and how often the top-1 neighbour is unchanged). `max |Δh|` = largest difference of last_hidden_state "
        "over real tokens; int8 GEMM share = the encoder's Linear and attention-matmul FLOPs at the evaluation "
        "lengths whose both inputs are quantized. All 8-bit; activations per tensor.\n\n";
  markdown_sweep(md, r);
  md << "\n## Sensitivity (" << r.best.calibration << ", " << weights(r.best.per_channel)
     << " weights; one group quantized at a time)\n\n| group | cosine cost (1 - mean) | cosine p5 | recall@" << r.k
     << " | FP32 GEMM share if kept in FP32 |\n|---|---|---|---|---|\n";
  const double total = r.best.flops.total > 0 ? r.best.flops.total : 1;
  for (const auto& g : r.sensitivity) {
    md << "| " << g.name << " | " << fixed(1 - g.fidelity.cosine_mean, 6) << " | " << fixed(g.fidelity.cosine_p5) << " | "
       << fixed(g.fidelity.recall_at_k, 3) << " | " << fixed(100 * g.fp32_flops / total, 1) << "% |\n";
  }
  markdown_partial(md, r);
  md << "\n![calibration histograms](histograms.svg)\n\n![sensitivity](sensitivity.svg)\n\n![partial quantization]"
        "(partial.svg)\n";
  fs::create_directories(dir);
  io::write_file_atomic((fs::path(dir) / "histograms.svg").string(), histograms_svg(r));
  io::write_file_atomic((fs::path(dir) / "sensitivity.svg").string(), sensitivity_svg(r));
  io::write_file_atomic((fs::path(dir) / "partial.svg").string(), partial_svg(r));
  io::write_file_atomic((fs::path(dir) / "report.json").string(), j.dump(2) + "\n");
  io::write_file_atomic((fs::path(dir) / "report.md").string(), md.str());
  return md.str();
}

}  // namespace qdqbert::workflow
