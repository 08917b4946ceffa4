// qdqbert_distributed_worker: one rank of the data-parallel tests (tests/distributed_test.cpp starts it as
// separate processes with torchrun's variables; without them it is the single-process reference).
//
//   train   --out F --per-device-batch B --steps K [--accum N] [--quant] [--no-overlap] [--bucket-bytes N]
//           SGD on the tiny QA model (dropout off), K optimizer steps of global batches B x world (x N
//           micro-batches); writes every parameter and buffer to F.rank<r>.
//   calib   --out F --method max|percentile|mse|entropy --per-device-batch B --steps K
//           calibration of the tiny model on K global batches; writes every amax to F.rank<r>.
//   dropout --out F [--dropout P]   one training-mode loss on the same batch everywhere; rank 0 writes
//           every rank's loss to F (one per line).
//   distill --out F --per-device-batch B --steps K   distill_qat of a 4-bit tiny student from its FP32 teacher
//           on global batches of B x world lines (sharded) with a sharded evaluation; writes the student to
//           F.rank<r> and rank 0 the losses and the evaluations' cosine figures to F.json.
//   loop    --steps K [--sleep-ms M] [--fail-rank R --fail-at I]   all-reduces, printing "step I"
//   init    joins and prints "joined rank R of W"
//   collectives   checks all_gather, the round-robin gather, shard_batch, broadcast_parameters and the
//           gradient reducer with parameters that only some ranks use; prints "collectives OK"
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "model_util.h"
#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/gradient_reducer.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/distill.h"

using namespace qdqbert;
namespace dist = qdqbert::distributed;
namespace qt = qdqbert::testing;

namespace {

struct Options {
  std::string mode, out, method = "max";
  int64_t per_device_batch = 4, steps = 3, accum = 1, sleep_ms = 0, fail_rank = -1, fail_at = -1;
  int64_t bucket_bytes = 16 << 10;
  double dropout = 0.1;
  bool quant = false, overlap = true;
};

Options parse(int argc, char** argv) {
  Options o;
  TORCH_CHECK(argc >= 2, "usage: qdqbert_distributed_worker MODE [options]");
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      TORCH_CHECK(i + 1 < argc, "worker: ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--out")
      o.out = next();
    else if (k == "--method")
      o.method = next();
    else if (k == "--per-device-batch")
      o.per_device_batch = std::stoll(next());
    else if (k == "--steps")
      o.steps = std::stoll(next());
    else if (k == "--accum")
      o.accum = std::stoll(next());
    else if (k == "--sleep-ms")
      o.sleep_ms = std::stoll(next());
    else if (k == "--fail-rank")
      o.fail_rank = std::stoll(next());
    else if (k == "--fail-at")
      o.fail_at = std::stoll(next());
    else if (k == "--bucket-bytes")
      o.bucket_bytes = std::stoll(next());
    else if (k == "--dropout")
      o.dropout = std::stod(next());
    else if (k == "--quant")
      o.quant = true;
    else if (k == "--no-overlap")
      o.overlap = false;
    else
      TORCH_CHECK(false, "worker: unknown option ", k);
  }
  return o;
}

// Deterministic QA data, the same on every rank: n rows of length 16, real lengths 8..16.
struct Data {
  at::Tensor ids, mask, start, end;
};

Data make_data(int64_t n, int64_t vocab) {
  constexpr int64_t kLen = 16;
  torch::manual_seed(99);
  Data d;
  d.ids = torch::randint(1, vocab, {n, kLen}, torch::kLong);
  const at::Tensor lengths = torch::randint(kLen / 2, kLen + 1, {n, 1}, torch::kLong);
  d.mask = (torch::arange(kLen, torch::kLong).unsqueeze(0) < lengths).to(torch::kLong);
  d.ids = d.ids * d.mask;
  d.start = torch::randint(0, kLen / 2, {n}, torch::kLong);
  d.end = d.start + torch::randint(0, 3, {n}, torch::kLong);
  return d;
}

ModelInputs rows(const Data& d, int64_t begin, int64_t end) {
  ModelInputs in;
  in.input_ids = d.ids.slice(0, begin, end);
  in.attention_mask = d.mask.slice(0, begin, end);
  in.token_type_ids = torch::zeros_like(in.input_ids);
  in.start_positions = d.start.slice(0, begin, end);
  in.end_positions = d.end.slice(0, begin, end);
  return in;
}

// The tiny QA model, built from a different seed on every rank: broadcast_parameters must make them equal.
std::shared_ptr<TaskModel> tiny_model(double dropout, const std::string& calib_method) {
  Config c = qdqbert::testing::tiny_config();
  c.hidden_dropout_prob = dropout;
  c.attention_probs_dropout_prob = dropout;
  c.quant_desc_input = nn::QuantDescriptor().with_calib_method(calib_method == "max" ? "max" : "histogram");
  torch::manual_seed(1234 + static_cast<uint64_t>(dist::rank()));
  auto model = create_model("question-answering", c);
  dist::broadcast_parameters(model->module());
  return model;
}

void write_state(TaskModel& model, const std::string& out) {
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (const auto& p : model.module().named_parameters()) ts.emplace_back(p.key(), p.value().detach());
  for (const auto& b : model.module().named_buffers()) {
    if (b.value().defined()) ts.emplace_back(b.key(), b.value());
  }
  io::save_safetensors(out + ".rank" + std::to_string(dist::rank()), ts);
}

int train(const Options& o) {
  auto model = tiny_model(0.0, "max");
  const int64_t world = dist::world_size(), total = o.per_device_batch * world * o.steps * o.accum;
  const Data data = make_data(total, model->model_config().vocab_size);
  const dist::ShardedSampler sampler(total, o.per_device_batch);
  if (o.quant) {  // max calibration on the first global batch (merged across ranks), then QAT
    const dist::Shard s = sampler.shard(0);
    workflow::calibrate(*model, {rows(data, s.begin, s.end)});
  } else {
    for (auto& [name, q] : named_quantizers(model->module())) q->disable();
  }
  auto& m = model->module();
  m.train();
  std::vector<at::Tensor> params = m.parameters();
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.05));
  dist::GradientReducerOptions ro;
  ro.bucket_bytes = o.bucket_bytes;
  ro.overlap = o.overlap;
  dist::GradientReducer reducer(params, ro);
  for (int64_t step = 0; step < o.steps; ++step) {
    opt.zero_grad();
    for (int64_t mb = step * o.accum; mb < (step + 1) * o.accum; ++mb) {
      const dist::Shard s = sampler.shard(mb);
      if (mb + 1 == (step + 1) * o.accum) reducer.expect_backward();
      at::Tensor loss = model->run(rows(data, s.begin, s.end)).loss;
      ((s.loss_scale == 1.0 ? loss : loss * s.loss_scale) / static_cast<double>(o.accum)).backward();
    }
    reducer.synchronize();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
  }
  write_state(*model, o.out);
  std::printf("trained %lld steps on %lld processes, %lld buckets\n", static_cast<long long>(o.steps),
              static_cast<long long>(world), static_cast<long long>(reducer.num_buckets()));
  return 0;
}

int calib(const Options& o) {
  auto model = tiny_model(0.0, o.method);
  model->module().eval();
  const int64_t total = o.per_device_batch * dist::world_size() * o.steps;
  const Data data = make_data(total, model->model_config().vocab_size);
  const dist::ShardedSampler sampler(total, o.per_device_batch);
  std::vector<ModelInputs> batches;
  for (int64_t k = 0; k < sampler.num_batches(); ++k) {
    const dist::Shard s = sampler.shard(k);
    batches.push_back(rows(data, s.begin, s.end));
  }
  workflow::CalibrationOptions co;
  co.method = o.method;
  const auto r = workflow::calibrate(*model, batches, co);
  std::vector<std::pair<std::string, at::Tensor>> amax;
  for (auto& [name, q] : named_quantizers(model->module())) {
    if (q->has_amax()) amax.emplace_back(name, q->amax());
  }
  io::save_safetensors(o.out + ".rank" + std::to_string(dist::rank()), amax);
  std::printf("calibrated %zu quantizers with %s\n", r.calibrated.size(), o.method.c_str());
  return 0;
}

int dropout(const Options& o) {
  auto model = tiny_model(o.dropout, "max");
  for (auto& [name, q] : named_quantizers(model->module())) q->disable();
  model->module().train();
  const Data data = make_data(8, model->model_config().vocab_size);
  torch::manual_seed(dist::rank_seed(7));  // each rank its own masks; rank 0 as one process
  const at::Tensor loss = model->run(rows(data, 0, 8)).loss.detach().reshape({1}).to(torch::kDouble);
  const std::vector<at::Tensor> all = dist::all_gather(loss);
  if (dist::is_main()) {
    std::ofstream f(o.out);
    for (const auto& l : all) f << std::hexfloat << l.item<double>() << "\n";
  }
  return 0;
}

int distill(const Options& o) {
  Config c = qdqbert::testing::tiny_config();
  c.initializer_range = 0.05;
  torch::manual_seed(7);
  auto teacher = create_model("base", c), student = create_model("base", c);
  io::load_state_dict(*student, [&] {
    std::map<std::string, at::Tensor> sd;
    for (auto& [k, v] : io::state_dict(teacher->module())) sd[k] = v;
    return sd;
  }());
  for (auto& [n, q] : named_quantizers(teacher->module())) q->disable();
  workflow::calibrate(*student, qt::random_text_batches(2, 4, 12, 99));  // the same batches on every rank: local amax
  for (auto& [n, q] : named_quantizers(student->module())) q->set_num_bits(4);
  const int64_t global = o.per_device_batch * dist::world_size();
  workflow::DistillOptions d;
  d.steps = o.steps;
  d.lr = 1e-3;
  d.eval_every = o.steps / 2;
  const auto r = workflow::distill_qat(*student, *teacher, qt::random_text_batches(4, global, 12, 5),
                                       qt::random_text_batches(5, 4, 12, 6), d);
  write_state(*student, o.out);
  if (dist::is_main()) {
    std::ofstream f(o.out + ".json");
    f << std::hexfloat;
    for (const double l : r.loss) f << "loss " << l << "\n";
    for (const auto& e : r.evals) {
      f << "eval " << e.step << " " << e.fidelity.cosine_mean << " " << e.fidelity.cosine_min << " "
        << e.fidelity.recall_at_k << " " << e.fidelity.max_abs_diff << "\n";
    }
  }
  return 0;
}

int loop(const Options& o) {
  for (int64_t i = 0; i < o.steps; ++i) {
    at::Tensor t = torch::full({1024}, static_cast<float>(i));
    dist::all_reduce(t);
    std::printf("step %lld\n", static_cast<long long>(i));
    std::fflush(stdout);
    if (dist::rank() == o.fail_rank && i == o.fail_at) {
      std::fprintf(stderr, "worker: rank %lld fails on purpose at step %lld\n", static_cast<long long>(o.fail_rank),
                   static_cast<long long>(i));
      return 3;
    }
    if (o.sleep_ms > 0) ::usleep(static_cast<useconds_t>(o.sleep_ms * 1000));
  }
  return 0;
}

// ---- collectives ----

void check(bool ok, const std::string& what) { TORCH_CHECK(ok, "collectives check failed: ", what); }

void check_gathers() {
  const int64_t r = dist::rank(), w = dist::world_size();
  // Rank r sends r + 1 rows of [rows, 2] filled with r.
  const std::vector<at::Tensor> parts = dist::all_gather(torch::full({r + 1, 2}, static_cast<float>(r)));
  check(static_cast<int64_t>(parts.size()) == w, "all_gather returns one tensor per rank");
  for (int64_t k = 0; k < w; ++k) {
    check(parts[static_cast<size_t>(k)].size(0) == k + 1 && parts[static_cast<size_t>(k)].eq(k).all().item<bool>(),
          "all_gather rows of rank " + std::to_string(k));
  }
  // Round robin: 5 batches of {2, 1, 3, 2, 1} rows; each row holds its global index.
  const std::vector<int64_t> batch_rows{2, 1, 3, 2, 1};
  std::vector<int64_t> first{0};
  for (const int64_t n : batch_rows) first.push_back(first.back() + n);
  std::vector<at::Tensor> mine{torch::empty({0}, torch::kLong)};
  for (const int64_t k : dist::round_robin_batches(5)) {
    mine.push_back(torch::arange(first[static_cast<size_t>(k)], first[static_cast<size_t>(k) + 1], torch::kLong));
  }
  const at::Tensor all = dist::all_gather_round_robin(torch::cat(mine), batch_rows);
  check(all.equal(torch::arange(first.back(), torch::kLong)), "all_gather_round_robin puts batches in order");
}

void check_shard_batch() {
  const int64_t r = dist::rank(), w = dist::world_size();
  ModelInputs in;
  in.input_ids = torch::arange(7, torch::kLong).unsqueeze(1).repeat({1, 4});
  in.attention_mask = torch::ones({7, 4}, torch::kLong);
  in.start_positions = torch::arange(7, torch::kLong);
  const dist::BatchShard s = dist::shard_batch(in);
  const int64_t b = r * 7 / w, e = (r + 1) * 7 / w;
  check(s.inputs.input_ids.size(0) == e - b && s.inputs.start_positions.equal(torch::arange(b, e, torch::kLong)),
        "shard_batch rows");
  check(std::abs(s.loss_scale - static_cast<double>((e - b) * w) / 7.0) < 1e-15, "shard_batch loss_scale");
  // The weights of the ranks' mean losses, loss_scale / world, add up to 1 (the global batch's mean).
  check(std::abs(dist::mean_over_ranks(s.loss_scale) - 1.0) < 1e-12, "loss_scale weights add up to 1");
}

void check_reducer() {
  // a is used everywhere, b only on rank 1, c nowhere: a and b are averaged, c keeps no gradient.
  const int64_t r = dist::rank();
  if (dist::world_size() < 2) return;
  at::Tensor a = torch::zeros({3}).requires_grad_(), b = torch::zeros({2}).requires_grad_(),
             c = torch::zeros({2}).requires_grad_();
  dist::GradientReducer reducer({a, b, c});
  reducer.expect_backward();
  at::Tensor loss = (a * static_cast<double>(r + 1)).sum();
  if (r == 1) loss = loss + (b * 4.0).sum();
  loss.backward();
  reducer.synchronize();
  const double w = static_cast<double>(dist::world_size());
  double mean = 0;
  for (int64_t k = 0; k < dist::world_size(); ++k) mean += static_cast<double>(k + 1) / w;
  check(a.grad().defined() && torch::allclose(a.grad(), torch::full({3}, mean)), "reducer averages a");
  check(b.grad().defined() && torch::allclose(b.grad(), torch::full({2}, 4.0 / w)), "reducer averages b");
  check(!c.grad().defined(), "a parameter no rank used keeps no gradient");
}

void check_broadcast_parameters() {
  torch::manual_seed(static_cast<uint64_t>(dist::rank()));
  torch::nn::Linear lin(5, 3);
  dist::broadcast_parameters(*lin);
  const at::Tensor flat = torch::cat({lin->weight.detach().reshape(-1), lin->bias.detach()});
  for (const auto& theirs : dist::all_gather(flat.unsqueeze(0))) {
    check(theirs.squeeze(0).equal(flat), "broadcast_parameters gives rank 0's weights everywhere");
  }
  at::Tensor mx = torch::tensor({static_cast<double>(dist::rank())});
  dist::all_reduce(mx, dist::ReduceOp::kMax);
  at::Tensor mn = torch::tensor({static_cast<double>(dist::rank())});
  dist::all_reduce(mn, dist::ReduceOp::kMin);
  check(mx.item<double>() == static_cast<double>(dist::world_size() - 1) && mn.item<double>() == 0.0,
        "all_reduce max/min");
  dist::barrier();
}

int collectives(const Options&) {
  check_gathers();
  check_shard_batch();
  check_reducer();
  check_broadcast_parameters();
  std::printf("collectives OK on rank %lld of %lld\n", static_cast<long long>(dist::rank()),
              static_cast<long long>(dist::world_size()));
  return 0;
}

int run(const Options& o) {
  dist::init();
  int rc = 2;
  if (o.mode == "train")
    rc = train(o);
  else if (o.mode == "calib")
    rc = calib(o);
  else if (o.mode == "dropout")
    rc = dropout(o);
  else if (o.mode == "distill")
    rc = distill(o);
  else if (o.mode == "loop")
    rc = loop(o);
  else if (o.mode == "collectives")
    rc = collectives(o);
  else if (o.mode == "init") {
    std::printf("joined rank %lld of %lld\n", static_cast<long long>(dist::rank()),
                static_cast<long long>(dist::world_size()));
    dist::barrier();
    rc = 0;
  } else {
    TORCH_CHECK(false, "worker: unknown mode ", o.mode);
  }
  if (rc == 0) dist::shutdown();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(parse(argc, argv));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "worker: error: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: error: %s\n", e.what());
  }
  return 1;
}
