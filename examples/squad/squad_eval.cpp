// squad_qa: evaluation and prediction — batching of features, the evaluation data, the QA forward pass with
// post-processing (utils_qa.py's postprocess_qa_predictions) and the SQuAD v1.1 / v2.0 metrics.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/metrics.h"
#include "qdqbert/squad/postprocess.h"
#include "squad_args.h"

using namespace qdqbert;
using Clock = std::chrono::steady_clock;

namespace squad_qa {

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

QaOutput run_qa(TaskModel& model, const EvalData& d, const Args& a, const torch::Device& dev) {
  QaOutput o;
  torch::NoGradGuard ng;
  model.module().eval();
  const size_t bs = static_cast<size_t>(a.per_device_eval_batch_size), n = d.features.size();
  std::vector<int64_t> idx(n), rows;
  std::iota(idx.begin(), idx.end(), int64_t{0});
  for (size_t b = 0; b < n; b += bs) rows.push_back(static_cast<int64_t>(std::min(n, b + bs) - b));
  auto t0 = Clock::now();
  // Several processes: batch k runs on rank k mod world exactly as one process runs it, and the logits are
  // gathered back into batch order (bit for bit the single-process logits).
  const int64_t len = n > 0 ? static_cast<int64_t>(d.features[0].input_ids.size()) : 0;
  std::vector<at::Tensor> local_starts{torch::empty({0, len})}, local_ends{torch::empty({0, len})};
  for (const int64_t k : distributed::round_robin_batches(static_cast<int64_t>(rows.size()))) {
    const size_t b = static_cast<size_t>(k) * bs;
    ModelOutput out = model.run(to_inputs(d.features, idx.data() + b, static_cast<size_t>(rows[static_cast<size_t>(k)]),
                                          false, dev));
    local_starts.push_back(out.start_logits.to(torch::kCPU, torch::kFloat));
    local_ends.push_back(out.end_logits.to(torch::kCPU, torch::kFloat));
  }
  const at::Tensor s = distributed::all_gather_round_robin(torch::cat(local_starts), rows).contiguous();
  const at::Tensor e = distributed::all_gather_round_robin(torch::cat(local_ends), rows).contiguous();
  for (int64_t r = 0; r < s.size(0); ++r) {
    o.starts.emplace_back(s[r].data_ptr<float>(), s[r].data_ptr<float>() + s.size(1));
    o.ends.emplace_back(e[r].data_ptr<float>(), e[r].data_ptr<float>() + e.size(1));
  }
  o.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!distributed::is_main()) return o;  // only rank 0 post-processes, reports and writes
  squad::PostprocessOptions pp;
  pp.n_best_size = a.n_best_size;
  pp.max_answer_length = a.max_answer_length;
  pp.version_2_with_negative = a.version_2_with_negative;
  pp.null_score_diff_threshold = a.null_score_diff_threshold;
  o.result = squad::postprocess_qa_predictions(d.ds.examples, d.features, o.starts, o.ends, pp);
  return o;
}

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

}  // namespace squad_qa
