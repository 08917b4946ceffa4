// Data-parallel training and calibration (qdqbert::distributed, on c10d's Gloo process group), on 127.0.0.1:
// ranks are separate processes of tests/distributed_worker.cpp (or squad_qa under tools/launch.sh), each with
// torchrun's variables; the reference is the same program as one process.
//
// float32 bound of the training equivalence (2 ranks x per-device batch B = 4 against 1 process x 2B, dropout
// off, SGD lr 0.05, gradients clipped to norm 1, K = 4 steps). Both runs do the same arithmetic (each row's
// forward and backward are the same; the loss means divide by B or 2B, and halving is exact) except the batch
// sum inside every weight gradient: one process adds n = 2B x 16 = 128 token terms in one float32 sum, the
// ranks add two sums of 64 and the all-reduce adds those two (then divides by 2, exactly). Each order is within
// (n - 1) 2^-24 sum|terms| of the exact sum (Higham), so a gradient element may differ by ~1.5e-5 of the size of
// its terms; with the terms of this model of the order of the clipped gradient (<= 1 per element), one SGD step
// moves a parameter differently by <= lr x 1.5e-5 = 7.6e-7 and 4 steps by ~3e-6 before the small feedback of
// 4 steps: the stated bound is max |theta_ranks - theta_single| <= 3e-6 with the quantizers off. With them on
// (max-calibrated, fixed amax) a weight or activation that lies within that difference of a rounding boundary of
// its fake quantizer can land one quantization step (~amax/127) away in one run only; through the
// straight-through gradient such a flip changes the next update by about lr x step x (its share of one
// gradient sum), of order 1e-7: the bound is 1e-5 there. Measured on this machine: 6e-8 (one float32 ulp at the
// weights' scale) in every case, so both bounds keep a margin of 50x or more. The ranks themselves must hold
// bit-identical parameters: each applies the same averaged gradient.
#include "qdqbert/distributed/distributed.h"

#include "distributed_util.h"

namespace qt = qdqbert::testing;
namespace dist = qdqbert::distributed;
using namespace qdqbert::testing::ranks;

// ---- one process: everything is a no-op, and the environment is checked ----

TEST(DistributedEnv, SingleProcessIsANoOp) {
  EnvGuard guard;
  const auto& env = dist::init();
  EXPECT_EQ(env.world_size, 1);
  EXPECT_FALSE(dist::is_initialized());
  EXPECT_EQ(dist::rank(), 0);
  EXPECT_EQ(dist::world_size(), 1);
  EXPECT_TRUE(dist::is_main());
  EXPECT_EQ(dist::rank_seed(1234), 1234u);
  EXPECT_EQ(dist::calibration_sync(), nullptr);
  at::Tensor t = torch::arange(5, torch::kFloat);
  dist::all_reduce(t);
  EXPECT_TRUE(t.equal(torch::arange(5, torch::kFloat)));
  EXPECT_EQ(dist::mean_over_ranks(2.5), 2.5);
  const auto parts = dist::all_gather(t);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_TRUE(parts[0].is_same(t));
  // The sampler is plain batching; the reducer installs no hook and leaves gradients alone.
  const dist::ShardedSampler s(10, 4);
  ASSERT_EQ(s.num_batches(), 3);
  EXPECT_EQ(s.shard(2).begin, 8);
  EXPECT_EQ(s.shard(2).end, 10);
  EXPECT_EQ(s.shard(2).loss_scale, 1.0);
  at::Tensor w = torch::ones({3}).requires_grad_();
  dist::GradientReducer reducer({w});
  reducer.expect_backward();
  (w * 3).sum().backward();
  reducer.synchronize();
  EXPECT_TRUE(w.grad().equal(torch::full({3}, 3.0f)));
  EXPECT_EQ(reducer.num_buckets(), 0);
  EXPECT_EQ(dist::round_robin_batches(3), (std::vector<int64_t>{0, 1, 2}));
  dist::shutdown();
}

TEST(DistributedEnv, BadEnvironmentIsAClearError) {
  EnvGuard guard;
  auto error_with = [&](const Env& env) {
    guard.set(env);
    return qt::error_message([] { dist::read_env(); });
  };
  const Env base{{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, std::optional<std::string> v) {
    Env e = base;
    e[k] = std::move(v);
    return e;
  };
  EXPECT_EQ(error_with(base), "");
  EXPECT_TRUE(contains(error_with(with("RANK", "2")), "RANK=2 is not below WORLD_SIZE=2"));
  EXPECT_TRUE(contains(error_with(with("RANK", std::nullopt)), "WORLD_SIZE=2 but RANK is not set"));
  EXPECT_TRUE(contains(error_with(with("WORLD_SIZE", "two")), "WORLD_SIZE='two' is not a whole number"));
  EXPECT_TRUE(contains(error_with(with("WORLD_SIZE", "-1")), "WORLD_SIZE='-1' is not a whole number"));
  EXPECT_TRUE(contains(error_with(with("WORLD_SIZE", "0")), "WORLD_SIZE=0 is out of range"));
  EXPECT_TRUE(contains(error_with(with("MASTER_ADDR", std::nullopt)), "WORLD_SIZE=2 needs MASTER_ADDR"));
  EXPECT_TRUE(contains(error_with(with("MASTER_PORT", std::nullopt)), "WORLD_SIZE=2 needs MASTER_PORT"));
  EXPECT_TRUE(contains(error_with(with("MASTER_PORT", "70000")), "MASTER_PORT=70000 is out of range"));
  EXPECT_TRUE(contains(error_with(with("LOCAL_RANK", "x")), "LOCAL_RANK='x' is not a whole number"));
  EXPECT_TRUE(contains(error_with({{"RANK", "1"}}), "RANK=1 is set but WORLD_SIZE is not"));
  guard.set({{"WORLD_SIZE", "1"}, {"RANK", "0"}});
  EXPECT_EQ(dist::read_env().world_size, 1);
  guard.set({{"QDQBERT_DIST_TIMEOUT", "soon"}});
  EXPECT_TRUE(contains(qt::error_message([] { dist::init(); }), "QDQBERT_DIST_TIMEOUT='soon' is not a whole number"));
  guard.set({});
  dist::InitOptions o;
  o.backend = "mpi";
  EXPECT_TRUE(contains(qt::error_message([&] { dist::init(o); }), "unknown backend 'mpi'"));
}

TEST(DistributedEnv, NcclIsRefusedWhereLibTorchHasNoNccl) {
  EnvGuard guard;
  dist::InitOptions o;
  o.backend = "nccl";
  const std::string err = qt::error_message([&] { dist::init(o); });
  if (dist::nccl_available()) {
    EXPECT_EQ(err, "");  // a CUDA LibTorch with NCCL: one process joins nothing
  } else {
    EXPECT_TRUE(contains(err, "backend nccl is not available")) << err;
    EXPECT_TRUE(contains(err, "use --dist-backend gloo")) << err;
  }
  dist::shutdown();
}

// ---- equivalence with one process ----

struct TrainCase {
  std::string name;
  std::vector<std::string> flags;  // extra worker flags
  double bound;                    // max |theta_ranks - theta_single| (see the top of this file)
};

class DistributedTraining : public Distributed, public ::testing::WithParamInterface<TrainCase> {};

TEST_P(DistributedTraining, TwoRanksMatchOneProcessWithTheGlobalBatch) {
  const TrainCase& c = GetParam();
  auto args = [&](int64_t batch, const std::string& out) {
    std::vector<std::string> a{"train", "--out", out, "--per-device-batch", std::to_string(batch), "--steps", "4"};
    a.insert(a.end(), c.flags.begin(), c.flags.end());
    return a;
  };
  expect_all_ok(run_worker(0, args(8, out("single")), dir_));
  const auto runs = run_worker(2, args(4, out("ranks")), dir_);
  expect_all_ok(runs);
  EXPECT_TRUE(contains(runs[0].out, "trained 4 steps on 2 processes")) << describe(runs);
  const auto single = qdqbert::io::load_safetensors(out("single.rank0"));
  const auto r0 = qdqbert::io::load_safetensors(out("ranks.rank0"));
  const auto r1 = qdqbert::io::load_safetensors(out("ranks.rank1"));
  ASSERT_EQ(single.size(), r0.size());
  for (const auto& [k, t] : r0) EXPECT_TRUE(qt::tensors_equal(r1.at(k), t, "rank 1 vs rank 0: " + k));
  std::string worst;
  const double d = max_abs_diff(r0, single, &worst);
  EXPECT_LE(d, c.bound) << "largest difference in " << worst;
  if (std::getenv("QDQBERT_TEST_DIFFS"))
    std::fprintf(stderr, "[diff] %s: %.3g (%s)\n", c.name.c_str(), d, worst.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, DistributedTraining,
                         ::testing::Values(TrainCase{"fp32_overlap", {}, 3e-6},
                                           TrainCase{"fp32_no_overlap", {"--no-overlap"}, 3e-6},
                                           TrainCase{"fp32_accumulation", {"--accum", "2"}, 3e-6},
                                           TrainCase{"fp32_one_bucket", {"--bucket-bytes", "100000000"}, 3e-6},
                                           TrainCase{"qat_overlap", {"--quant"}, 1e-5},
                                           TrainCase{"qat_no_overlap", {"--quant", "--no-overlap"}, 1e-5}),
                         [](const ::testing::TestParamInfo<TrainCase>& i) { return i.param.name; });

TEST_F(Distributed, DropoutDrawsEachRanksOwnMasks) {
  expect_all_ok(run_worker(0, {"dropout", "--out", out("single")}, dir_));
  expect_all_ok(run_worker(2, {"dropout", "--out", out("ranks")}, dir_));
  expect_all_ok(run_worker(2, {"dropout", "--out", out("off"), "--dropout", "0"}, dir_));
  auto losses = [&](const std::string& f) {
    std::vector<double> v;
    std::istringstream in(qt::slurp(out(f)));
    std::string line;
    while (std::getline(in, line)) v.push_back(std::strtod(line.c_str(), nullptr));
    return v;
  };
  const auto single = losses("single"), ranks = losses("ranks"), off = losses("off");
  ASSERT_EQ(single.size(), 1u);
  ASSERT_EQ(ranks.size(), 2u);
  ASSERT_EQ(off.size(), 2u);
  EXPECT_EQ(ranks[0], single[0]) << "rank 0 draws the masks of one process";
  EXPECT_NE(ranks[0], ranks[1]) << "the same batch with the same seed: only the masks can differ";
  EXPECT_EQ(off[0], off[1]) << "without dropout the ranks compute the same loss";
}

// distill_qat (qdqbert-cli qat's loop) on 2 ranks x 4 lines against 1 process x 8 lines: AdamW this time, so the
// parameter bound is empirical (AdamW divides each update by the gradient's running RMS: an element whose
// exact gradient is 0, such as a key bias under softmax, moves by its rounding noise relative to eps, which no
// a-priori bound tames): 1e-5, 100x the 1e-7 measured. The losses differ only by the float32 rounding of a
// mean over 8 rows against two means over 4 (<= 1e-6; measured 9e-8). The evaluation is sharded by batch and
// gathered: before training it is bit for bit the single-process one.
TEST_F(Distributed, DistillationMatchesOneProcess) {
  expect_all_ok(run_worker(0, {"distill", "--out", out("single"), "--per-device-batch", "8", "--steps", "8"}, dir_));
  const auto runs = run_worker(2, {"distill", "--out", out("ranks"), "--per-device-batch", "4", "--steps", "8"}, dir_);
  expect_all_ok(runs);
  auto records = [&](const std::string& f) {
    std::vector<std::vector<double>> v;
    std::istringstream in(qt::slurp(out(f)));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string kind, x;
      ls >> kind;
      std::vector<double> rec{kind == "eval" ? 1.0 : 0.0};
      while (ls >> x) rec.push_back(std::strtod(x.c_str(), nullptr));
      v.push_back(rec);
    }
    return v;
  };
  const auto single = records("single.json"), ranks = records("ranks.json");
  ASSERT_EQ(single.size(), 8u + 3u);
  ASSERT_EQ(ranks.size(), single.size());
  for (size_t i = 0; i < single.size(); ++i) {
    if (single[i][0] == 0.0) {
      EXPECT_NEAR(ranks[i][1], single[i][1], 1e-6) << "loss of step " << i + 1;
    } else if (single[i][1] == 0.0) {
      EXPECT_EQ(ranks[i], single[i]) << "the evaluation before training";
    } else {
      for (size_t k = 1; k < single[i].size(); ++k) EXPECT_NEAR(ranks[i][k], single[i][k], 1e-5) << "evaluation " << i;
    }
  }
  const auto s = qdqbert::io::load_safetensors(out("single.rank0"));
  const auto r0 = qdqbert::io::load_safetensors(out("ranks.rank0")),
             r1 = qdqbert::io::load_safetensors(out("ranks.rank1"));
  for (const auto& [k, t] : r0) EXPECT_TRUE(qt::tensors_equal(r1.at(k), t, "rank 1 vs rank 0: " + k));
  std::string worst;
  EXPECT_LE(max_abs_diff(r0, s, &worst), 1e-5) << worst;
}

class DistributedCalibration : public Distributed, public ::testing::WithParamInterface<std::string> {};

TEST_P(DistributedCalibration, TwoRanksGiveTheAmaxOfOneProcessBitForBit) {
  const std::string method = GetParam();
  auto args = [&](int64_t batch, const std::string& o) {
    return std::vector<std::string>{
        "calib", "--out", o, "--method", method, "--per-device-batch", std::to_string(batch), "--steps", "3"};
  };
  expect_all_ok(run_worker(0, args(6, out("single")), dir_));
  const auto runs = run_worker(2, args(3, out("ranks")), dir_);
  expect_all_ok(runs);
  const auto single = qdqbert::io::load_safetensors(out("single.rank0"));
  ASSERT_GT(single.size(), 20u);
  for (const char* f : {"ranks.rank0", "ranks.rank1"}) {
    const auto got = qdqbert::io::load_safetensors(out(f));
    ASSERT_EQ(got.size(), single.size());
    for (const auto& [k, t] : single) EXPECT_TRUE(qt::tensors_equal(got.at(k), t, std::string(f) + " " + k));
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, DistributedCalibration, ::testing::Values("max", "percentile", "mse", "entropy"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST_F(Distributed, CollectivesOnThreeRanks) {
  const auto runs = run_worker(3, {"collectives"}, dir_);
  expect_all_ok(runs);
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(contains(runs[r].out, "collectives OK on rank " + std::to_string(r) + " of 3")) << describe(runs);
  }
}
