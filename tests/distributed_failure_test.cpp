// Data-parallel runs that go wrong: a killed or stopped rank, a wrong WORLD_SIZE, a port in use, an unreachable
// master, a RANK used twice: each is a clear error within the stated timeout, never a hang. Plus torchrun's own
// store, tools/launch.sh, and squad_qa under tools/launch.sh (sharded evaluation and calibration equal to one
// process's).
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "distributed_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert::testing::ranks;

TEST_F(Distributed, KilledRankMakesTheOthersFailAtOnce) {
  const int port = free_port();
  const Proc r0 = spawn(worker_argv(kLongLoop), rank_env(0, 2, port, 30), out("r0"));
  const Proc r1 = spawn(worker_argv(kLongLoop), rank_env(1, 2, port, 30), out("r1"));
  ASSERT_TRUE(wait_for_output(r1, "step 20", 60)) << qt::slurp(r1.log);
  ::kill(r1.pid, SIGKILL);
  const auto killed = Clock::now();
  const Ended e0 = wait_for(r0, 30, killed);  // the stated bound is the 30 s timeout; a closed peer is seen at once
  const Ended e1 = wait_for(r1, 10);
  ASSERT_TRUE(e0.exited) << "rank 0 still running 30 s after rank 1 was killed:\n" << e0.out;
  EXPECT_NE(e0.rc, 0) << e0.out;
  EXPECT_LT(e0.seconds, 10.0) << e0.out;
  EXPECT_TRUE(contains(e0.out, "worker: error: distributed: rank 0 of 2: all_reduce failed")) << e0.out;
  EXPECT_EQ(e1.signal, SIGKILL);
}

TEST_F(Distributed, StoppedRankMakesTheOthersFailAfterTheTimeout) {
  const int port = free_port();
  const Proc r0 = spawn(worker_argv(kLongLoop), rank_env(0, 2, port, 3), out("r0"));
  const Proc r1 = spawn(worker_argv(kLongLoop), rank_env(1, 2, port, 3), out("r1"));
  ASSERT_TRUE(wait_for_output(r1, "step 20", 60)) << qt::slurp(r1.log);
  ::kill(r1.pid, SIGSTOP);  // alive, connections open, but silent
  const auto stopped = Clock::now();
  const Ended e0 = wait_for(r0, 30, stopped);
  ::kill(r1.pid, SIGKILL);
  wait_for(r1, 10);
  ASSERT_TRUE(e0.exited) << "rank 0 hung behind a stopped rank 1:\n" << e0.out;
  EXPECT_NE(e0.rc, 0);
  EXPECT_GE(e0.seconds, 2.0) << e0.out;   // it waited for the 3 s timeout ...
  EXPECT_LT(e0.seconds, 15.0) << e0.out;  // ... and not much longer
  EXPECT_TRUE(contains(e0.out,
                       "distributed: rank 0 of 2: all_reduce failed (another rank exited, or did not "
                       "answer within the 3 s timeout)"))
      << e0.out;
}

TEST_F(Distributed, WrongWorldSizeIsAClearError) {
  const int port = free_port();
  // Two processes told WORLD_SIZE=3: rank 2 never comes.
  std::vector<Proc> procs;
  for (int r = 0; r < 2; ++r)
    procs.push_back(spawn(worker_argv({"init"}), rank_env(r, 3, port, 3), out("w" + std::to_string(r))));
  for (const auto& p : procs) {
    const Ended e = wait_for(p, 30);
    ASSERT_TRUE(e.exited) << e.out;
    EXPECT_NE(e.rc, 0) << e.out;
    EXPECT_LT(e.seconds, 15.0) << e.out;
  }
  const std::string o0 = qt::slurp(procs[0].log);
  EXPECT_TRUE(contains(o0,
                       "distributed: WORLD_SIZE=3 but rank(s) 2 did not join within 3 s (joined: 0, 1); is "
                       "WORLD_SIZE the number of processes launched?"))
      << o0;
  // Two processes that disagree on WORLD_SIZE.
  const int port2 = free_port();
  const Proc a = spawn(worker_argv({"init"}), rank_env(0, 2, port2, 3), out("a"));
  Env e1 = rank_env(1, 3, port2, 3);
  const Proc b = spawn(worker_argv({"init"}), e1, out("b"));
  const Ended ea = wait_for(a, 30), eb = wait_for(b, 30);
  EXPECT_NE(ea.rc, 0);
  EXPECT_NE(eb.rc, 0);
  EXPECT_TRUE(
      contains(ea.out, "the processes disagree on WORLD_SIZE: rank 1 has WORLD_SIZE=3, rank 0 has WORLD_SIZE=2"))
      << ea.out;
}

TEST_F(Distributed, PortInUseIsAClearError) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  const Ended e = wait_for(spawn(worker_argv({"init"}), rank_env(0, 2, port, 5), out("r0")), 30);
  ::close(fd);
  EXPECT_NE(e.rc, 0) << e.out;
  EXPECT_TRUE(contains(e.out, "distributed: rank 0 cannot host the rendezvous at MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                  std::to_string(port) + " (is MASTER_PORT " + std::to_string(port) +
                                  " already in use?)"))
      << e.out;
}

TEST_F(Distributed, UnreachableMasterIsAClearError) {
  const int port = free_port();  // nobody listens there
  const Ended e = wait_for(spawn(worker_argv({"init"}), rank_env(1, 2, port, 2), out("r1")), 30);
  ASSERT_TRUE(e.exited);
  EXPECT_NE(e.rc, 0) << e.out;
  EXPECT_LT(e.seconds, 15.0) << e.out;
  EXPECT_TRUE(contains(e.out, "distributed: rank 1 cannot reach the master at MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                  std::to_string(port) + " within 2 s"))
      << e.out;
}

TEST_F(Distributed, RankUsedTwiceIsAClearError) {
  const int port = free_port();
  std::vector<Proc> procs;
  for (const int r : {0, 1, 1}) {
    procs.push_back(spawn(worker_argv({"init"}), rank_env(r, 3, port, 3), out("p" + std::to_string(procs.size()))));
  }
  std::string all;
  for (const auto& p : procs) {
    const Ended e = wait_for(p, 30);
    EXPECT_TRUE(e.exited && e.rc != 0) << e.out;
    all += e.out;
  }
  EXPECT_TRUE(contains(all, "distributed: RANK=1 is used by more than one process (WORLD_SIZE=3")) << all;
}

TEST_F(Distributed, JoinsTheStoreOfTorchrunsAgent) {
  // torchrun's agent hosts the TCPStore at MASTER_PORT itself (TORCHELASTIC_USE_AGENT_STORE=True): rank 0 must
  // join it instead of hosting one, and a restarted attempt (TORCHELASTIC_RESTART_COUNT) reuses it.
  const int port = free_port();
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = true;
  so.waitWorkers = false;
  so.timeout = std::chrono::seconds(30);
  const auto agent_store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  for (const char* attempt : {"0", "1"}) {
    std::vector<Proc> procs;
    for (int r = 0; r < 2; ++r) {
      Env env = rank_env(r, 2, port, 20);
      env["TORCHELASTIC_USE_AGENT_STORE"] = "True";
      env["TORCHELASTIC_RESTART_COUNT"] = attempt;
      procs.push_back(spawn(worker_argv({"collectives"}), env, out(std::string("a") + attempt + std::to_string(r))));
    }
    for (const auto& p : procs) {
      const Ended e = wait_for(p, 60);
      EXPECT_EQ(e.rc, 0) << "attempt " << attempt << ":\n" << e.out;
    }
  }
}

// ---- tools/launch.sh ----

TEST_F(Distributed, LauncherStopsTheRunWhenARankFails) {
  std::vector<std::string> argv{"/bin/bash", launcher(), "--nproc", "2", "--", worker()};
  argv.insert(argv.end(), kLongLoop.begin(), kLongLoop.end());
  for (const char* a : {"--fail-rank", "1", "--fail-at", "10"}) argv.push_back(a);
  const Ended e = wait_for(spawn(argv, {{"QDQBERT_DIST_TIMEOUT", "30"}}, out("launch")), 60);
  ASSERT_TRUE(e.exited) << e.out;
  EXPECT_NE(e.rc, 0) << e.out;
  EXPECT_LT(e.seconds, 20.0) << e.out;
  EXPECT_TRUE(contains(e.out, "worker: rank 1 fails on purpose at step 10")) << e.out;
  const Ended ok =
      wait_for(spawn({"/bin/bash", launcher(), "--nproc", "3", "--", worker(), "collectives"}, {}, out("ok")), 60);
  EXPECT_EQ(ok.rc, 0) << ok.out;
  const Ended usage = wait_for(spawn({"/bin/bash", launcher(), "--nproc", "0", "--", "true"}, {}, out("usage")), 10);
  EXPECT_EQ(usage.rc, 2) << usage.out;
  EXPECT_TRUE(contains(usage.out, "--nproc must be a whole number >= 1, got '0'")) << usage.out;
}

// ---- squad_qa under tools/launch.sh: sharded evaluation and calibration equal one process's ----

TEST_F(Distributed, SquadQaEvaluationAndCalibrationMatchOneProcess) {
  const std::string squad_qa = std::string(QDQBERT_BINARY_DIR) + "/examples/squad_qa";
  ASSERT_TRUE(fs::exists(squad_qa)) << squad_qa << " is not built";
  const std::string data = out("data");
  ASSERT_EQ(std::system(("python3 " + std::string(QDQBERT_SOURCE_DIR) + "/examples/squad/synthetic_squad.py " + data +
                         " --train 64 --dev 24 > /dev/null")
                            .c_str()),
            0);
  auto run = [&](int nproc, const std::vector<std::string>& flags, const std::string& name) {
    std::vector<std::string> argv;
    if (nproc > 1) argv = {"/bin/bash", launcher(), "--nproc", std::to_string(nproc), "--"};
    const std::vector<std::string> common{squad_qa,           "--model", data + "/model", "--init-from-config",
                                          "--max-seq-length", "64",      "--doc-stride",  "32",
                                          "--threads",        "1",       "--seed",        "7",
                                          "--output-dir",     out(name)};
    argv.insert(argv.end(), common.begin(), common.end());
    argv.insert(argv.end(), flags.begin(), flags.end());
    return wait_for(spawn(argv, {{"QDQBERT_DIST_TIMEOUT", "60"}}, out(name + ".log")), 300);
  };
  // Evaluation: the same per-device batch; batch k on rank k mod 2, logits gathered in order.
  const std::vector<std::string> eval{"--do-eval", "--predict-file", data + "/dev.json", "--per-device-eval-batch-size",
                                      "4"};
  const Ended e1 = run(1, eval, "eval1"), e2 = run(2, eval, "eval2");
  ASSERT_EQ(e1.rc, 0) << e1.out;
  ASSERT_EQ(e2.rc, 0) << e2.out;
  EXPECT_EQ(qt::slurp(out("eval1/logits.json")), qt::slurp(out("eval2/logits.json")));
  EXPECT_EQ(qt::slurp(out("eval1/predictions.json")), qt::slurp(out("eval2/predictions.json")));
  const auto r1 = qt::read_json(out("eval1/eval_results.json")), r2 = qt::read_json(out("eval2/eval_results.json"));
  EXPECT_EQ(r1.at("exact_match"), r2.at("exact_match"));
  EXPECT_EQ(r1.at("f1"), r2.at("f1"));
  size_t lines = 0;
  for (size_t p = e2.out.find("eval: exact_match"); p != std::string::npos;
       p = e2.out.find("eval: exact_match", p + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << "only rank 0 prints:\n" << e2.out;
  // Calibration: global batches of 2 x 4 features on two ranks = batches of 8 in one process; histograms merged.
  const std::vector<std::string> calib{"--train-file", data + "/train.json", "--do-calib", "--calibrator",
                                       "percentile",   "--calib-num",        "24"};
  auto with_batch = [&](std::vector<std::string> f, const char* b) {
    f.push_back("--per-device-eval-batch-size");
    f.push_back(b);
    return f;
  };
  const Ended c1 = run(1, with_batch(calib, "8"), "calib1"), c2 = run(2, with_batch(calib, "4"), "calib2");
  ASSERT_EQ(c1.rc, 0) << c1.out;
  ASSERT_EQ(c2.rc, 0) << c2.out;
  EXPECT_TRUE(contains(c2.out, "on 3 batches (24 samples, shuffled)")) << c2.out;
  EXPECT_TRUE(contains(c2.out, "across 2 processes")) << c2.out;
  EXPECT_EQ(qt::slurp(out("calib1/model.safetensors")), qt::slurp(out("calib2/model.safetensors")));
}

// ---- qdqbert-cli qat under tools/launch.sh ----

TEST_F(Distributed, QatUnderTheLauncherMatchesOneProcess) {
  const std::string squad_qa = std::string(QDQBERT_BINARY_DIR) + "/examples/squad_qa";
  ASSERT_TRUE(fs::exists(squad_qa) && fs::exists(qt::cli_binary())) << "squad_qa or qdqbert-cli is not built";
  const std::string data = out("data");
  // A calibrated tiny checkpoint with its vocabulary (squad_qa --do-calib), and text in that vocabulary.
  const std::string gen = "python3 " + std::string(QDQBERT_SOURCE_DIR) + "/examples/squad/synthetic_squad.py " + data +
                          " --train 64 --dev 8 > /dev/null && python3 -c \"import json, sys; d = json.load("
                          "open(sys.argv[1])); s = [x.strip() + '.' for a in d['data'] for p in a['paragraphs'] for "
                          "x in p['context'].split('.') if x.strip()]; open(sys.argv[2], 'w').write('\\n'.join(s[:64]) "
                          "+ '\\n'); open(sys.argv[3], 'w').write('\\n'.join(s[64:88]) + '\\n')\" " +
                          data + "/train.json " + out("train.txt") + " " + out("eval.txt");
  ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  const Ended c = wait_for(spawn({squad_qa, "--model", data + "/model", "--init-from-config", "--train-file",
                                  data + "/train.json", "--do-calib", "--max-seq-length", "64", "--doc-stride", "32",
                                  "--threads", "1", "--output-dir", out("calibrated")},
                                 {}, out("calib.log")),
                           120);
  ASSERT_EQ(c.rc, 0) << c.out;
  auto qat = [&](int nproc, const char* batch, const std::string& name) {
    std::vector<std::string> argv;
    if (nproc > 1) argv = {"/bin/bash", launcher(), "--nproc", std::to_string(nproc), "--"};
    const std::vector<std::string> args{qt::cli_binary(), "qat",
                                        "--model",        out("calibrated"),
                                        "--teacher",      out("calibrated"),
                                        "--train-text",   out("train.txt"),
                                        "--eval-text",    out("eval.txt"),
                                        "--steps",        "6",
                                        "--lr",           "1e-3",
                                        "--max-length",   "32",
                                        "--threads",      "1",
                                        "--batch-size",   batch,
                                        "--output",       out(name)};
    argv.insert(argv.end(), args.begin(), args.end());
    return wait_for(spawn(argv, {{"QDQBERT_DIST_TIMEOUT", "60"}}, out(name + ".log")), 300);
  };
  const Ended one = qat(1, "8", "one"), two = qat(2, "4", "two");
  ASSERT_EQ(one.rc, 0) << one.out;
  ASSERT_EQ(two.rc, 0) << two.out;
  size_t wrote = 0;
  for (size_t p = two.out.find("wrote "); p != std::string::npos; p = two.out.find("wrote ", p + 1)) ++wrote;
  EXPECT_EQ(wrote, 1u) << "only rank 0 writes and prints:\n" << two.out;
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().find(".two.tmp"), std::string::npos) << "left behind: " << e.path();
  }
  const auto r1 = qt::read_json(out("one/report.json")), r2 = qt::read_json(out("two/report.json"));
  EXPECT_EQ(r2.at("train_batches"), r1.at("train_batches"));
  EXPECT_EQ(r2.at("evals").at(0), r1.at("evals").at(0)) << "the sharded evaluation before training";
  ASSERT_EQ(r2.at("loss").size(), r1.at("loss").size());
  for (size_t i = 0; i < r1.at("loss").size(); ++i) {
    EXPECT_NEAR(r2.at("loss")[i].get<double>(), r1.at("loss")[i].get<double>(), 1e-6) << "step " << i + 1;
  }
  const auto& a1 = r1.at("evals").back();
  const auto& a2 = r2.at("evals").back();
  EXPECT_NEAR(a2.at("cosine_mean").get<double>(), a1.at("cosine_mean").get<double>(), 1e-5);
}
