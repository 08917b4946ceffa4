// Data-parallel QAT on this machine: steps/s of one process with 2 threads against 2 processes with 1 thread
// each (c10d Gloo over 127.0.0.1, with tools/launch.sh's environment), the same global batch, in one run;
// the share of a step spent in the gradient all-reduce; the all-reduce bandwidth and latency measured on the
// same ranks; and an extrapolation to N machines from them.
//
//   bench_distributed [--steps 8] [--batch 16] [--seq 64] [--bucket-mib 4]
//
// The model: QDQBertForQuestionAnswering with every quantizer on (max-calibrated), hidden 256, 4 layers,
// intermediate 1024, vocabulary 8192 (5.4M parameters, ~21 MiB of float32 gradients): compute-bound, small
// enough for a 2-core machine. AdamW, gradient clipping, dropout off, 4 MiB buckets (--bucket-mib): the
// default 25 MiB would hold this whole model in one bucket, which leaves nothing to overlap with backward.
// Run it without the launch variables: it starts its own ranks (itself, with --role).
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "qdqbert/distributed/distributed.h"
#include "qdqbert/distributed/gradient_reducer.h"
#include "qdqbert/distributed/sharding.h"
#include "qdqbert/workflow/calibrate.h"

using namespace qdqbert;
namespace dist = qdqbert::distributed;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string role, out, self;
  int64_t steps = 8, batch = 16, seq = 64, threads = 2, bucket_mib = 4;
  bool overlap = true;
};

using Results = std::map<std::string, double>;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

ModelInputs make_batch(int64_t rows, int64_t seq, int64_t vocab, int64_t first_row) {
  torch::manual_seed(static_cast<uint64_t>(1000 + first_row));
  ModelInputs in;
  in.input_ids = torch::randint(1, vocab, {rows, seq}, torch::kLong);
  in.attention_mask = torch::ones({rows, seq}, torch::kLong);
  in.token_type_ids = torch::zeros({rows, seq}, torch::kLong);
  in.start_positions = torch::randint(0, seq, {rows}, torch::kLong);
  in.end_positions = torch::randint(0, seq, {rows}, torch::kLong);
  return in;
}

std::shared_ptr<TaskModel> bench_model() {
  Config c;
  c.vocab_size = 8192;
  c.hidden_size = 256;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.intermediate_size = 1024;
  c.hidden_dropout_prob = 0;
  c.attention_probs_dropout_prob = 0;
  torch::manual_seed(0);
  return create_model("question-answering", c);
}

// The training loop of this process (a rank, or the single process): seconds per step and per synchronize().
Results train(const Args& a) {
  auto model = bench_model();
  dist::broadcast_parameters(model->module());
  const int64_t vocab = model->model_config().vocab_size;
  const dist::Shard part = dist::split_rows(a.batch, dist::rank(), dist::world_size());
  workflow::calibrate(*model, {make_batch(part.size(), a.seq, vocab, part.begin)});
  auto& m = model->module();
  m.train();
  const auto params = m.parameters();
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-5));
  dist::GradientReducerOptions ro;
  ro.overlap = a.overlap;
  ro.bucket_bytes = a.bucket_mib << 20;
  dist::GradientReducer reducer(params, ro);
  constexpr int64_t kWarmup = 2;
  double step_s = 0, sync_before = 0;
  for (int64_t step = 0; step < kWarmup + a.steps; ++step) {
    const ModelInputs in = make_batch(part.size(), a.seq, vocab, step * a.batch + part.begin);
    if (step == kWarmup) sync_before = reducer.stats().synchronize_seconds;
    const auto t0 = Clock::now();
    opt.zero_grad();
    reducer.expect_backward();
    model->run(in).loss.backward();
    reducer.synchronize();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
    if (step >= kWarmup) step_s += since(t0);
  }
  int64_t grad_bytes = 0;
  for (const auto& p : params) grad_bytes += p.numel() * p.element_size();
  const auto steps = static_cast<double>(a.steps);
  return {{"step_s", step_s / steps},
          {"sync_s", (reducer.stats().synchronize_seconds - sync_before) / steps},
          {"buckets", static_cast<double>(reducer.num_buckets())},
          {"batch", static_cast<double>(a.batch)},
          {"params", static_cast<double>(grad_bytes / 4)},
          {"grad_bytes", static_cast<double>(grad_bytes)}};
}

// All-reduce of the gradients' size (bandwidth) and of one float (latency), on the ranks of this run.
void measure_all_reduce(Results& r) {
  if (dist::world_size() < 2) return;
  at::Tensor big = torch::ones({static_cast<int64_t>(r["grad_bytes"]) / 4});
  at::Tensor tiny = torch::ones({1});
  dist::all_reduce(big);  // warm-up
  dist::barrier();
  auto t0 = Clock::now();
  constexpr int kBig = 5, kTiny = 200;
  for (int i = 0; i < kBig; ++i) dist::all_reduce(big);
  r["allreduce_s"] = since(t0) / kBig;
  dist::barrier();
  t0 = Clock::now();
  for (int i = 0; i < kTiny; ++i) dist::all_reduce(tiny);
  r["latency_s"] = since(t0) / kTiny;
}

int role(const Args& a) {
  at::set_num_threads(static_cast<int>(a.threads));
  dist::init();
  Results r = train(a);
  measure_all_reduce(r);
  if (dist::is_main()) {
    std::ofstream f(a.out);
    for (const auto& [k, v] : r) f << k << " " << v << "\n";
  }
  dist::shutdown();
  return 0;
}

// ---- the driver ----

Results read_results(const std::string& path) {
  Results r;
  std::ifstream f(path);
  std::string k;
  double v = 0;
  while (f >> k >> v) r[k] = v;
  return r;
}

// A TCP port free now on 127.0.0.1 (the kernel's choice for port 0), as tools/launch.sh picks one.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  TORCH_CHECK(port > 0, "bench_distributed: no free TCP port on 127.0.0.1");
  return port;
}

// Runs this program's training role as `world` processes (1: without the launch variables).
Results run_ranks(const Args& a, int world, int64_t threads, bool overlap, const std::string& out) {
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (world > 1) {
        ::setenv("RANK", std::to_string(r).c_str(), 1);
        ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
        ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
        ::setenv("MASTER_ADDR", "127.0.0.1", 1);
        ::setenv("MASTER_PORT", port.c_str(), 1);
      } else {
        for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
      }
      const std::vector<std::string> args{a.self,
                                          "--role",
                                          "train",
                                          "--out",
                                          out,
                                          "--threads",
                                          std::to_string(threads),
                                          "--steps",
                                          std::to_string(a.steps),
                                          "--batch",
                                          std::to_string(a.batch),
                                          "--seq",
                                          std::to_string(a.seq),
                                          "--bucket-mib",
                                          std::to_string(a.bucket_mib),
                                          overlap ? "--overlap" : "--no-overlap"};
      std::vector<char*> argv;
      for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  for (const pid_t p : pids) {
    int status = 0;
    ::waitpid(p, &status, 0);
    TORCH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench_distributed: a rank failed");
  }
  return read_results(out);
}

// T_c, one machine's compute per step of its batch: the faster of this run's two ways to compute a global batch
// here (1 process x 2 threads, or 2 processes x 1 thread less the all-reduce), so that a 2-thread run slowed
// by other load on the machine does not flatter the scaling.
void print_extrapolation(const Results& one, const Results& two, const Results& two_seq) {
  const double tc = std::min(one.at("step_s"), two_seq.at("step_s") - two.at("allreduce_s"));
  const double g = two.at("grad_bytes");
  const double bus_bw = g / two.at("allreduce_s");  // 2 ranks: a ring all-reduce moves G bytes per rank
  const double alpha = two.at("latency_s") / 2;     // 2 ranks: 2 ring steps
  std::printf(
      "\nExtrapolation to N machines like this one, each computing its own batch of %lld in T_c = %.3f s (weak\n"
      "scaling), with a ring all-reduce t(N) = 2(N-1)/N * G / B + 2(N-1) * a of G = %.1f MiB per step, not\n"
      "overlapped (a lower bound on the speed-up; overlap hides up to the backward time):\n",
      static_cast<long long>(one.at("batch")), tc, g / (1 << 20));
  struct Net {
    const char* name;
    double bw, alpha;
  };
  const Net nets[] = {
      {"measured 127.0.0.1", bus_bw, alpha}, {"10 Gbit/s Ethernet", 1.25e9, 50e-6}, {"100 Gbit/s", 12.5e9, 10e-6}};
  std::printf("%-22s %-16s", "network (B, a)", "");
  for (int n : {2, 4, 8, 16, 64}) std::printf("  N=%-10d", n);
  std::printf("\n");
  for (const Net& net : nets) {
    std::printf("%-22s %5.2f GB/s %3.0f us", net.name, net.bw / 1e9, net.alpha * 1e6);
    for (int n : {2, 4, 8, 16, 64}) {
      const double t = 2.0 * (n - 1) / n * g / net.bw + 2.0 * (n - 1) * net.alpha;
      std::printf("  %5.2fx (%2.0f%%)", n * tc / (tc + t), 100 * t / (tc + t));
    }
    std::printf("\n");
  }
  std::printf("(speed-up in samples/s over one machine, and the all-reduce share of a step)\n");
}

int driver(const Args& a) {
  const std::string tmp = "/tmp/bench_distributed_" + std::to_string(::getpid());
  std::printf("data-parallel QAT step: global batch %lld x seq %lld, %lld steps after 2 warm-up steps\n",
              static_cast<long long>(a.batch), static_cast<long long>(a.seq), static_cast<long long>(a.steps));
  const Results one = run_ranks(a, 1, 2, true, tmp + "_1x2");
  const Results two = run_ranks(a, 2, 1, true, tmp + "_2x1");
  const Results two_seq = run_ranks(a, 2, 1, false, tmp + "_2x1_seq");
  std::printf("model: %.2fM parameters, %.1f MiB of gradients in %.0f bucket(s)\n\n", one.at("params") / 1e6,
              one.at("grad_bytes") / (1 << 20), two.at("buckets"));
  std::printf("%-44s %9s %9s %9s %24s\n", "", "s/step", "steps/s", "vs 1x2", "synchronize() per step");
  auto row = [&](const char* name, const Results& r, bool sync) {
    std::printf("%-44s %9.3f %9.2f %8.2fx", name, r.at("step_s"), 1 / r.at("step_s"),
                one.at("step_s") / r.at("step_s"));
    if (sync) std::printf(" %13.3f s (%4.1f%%)", r.at("sync_s"), 100 * r.at("sync_s") / r.at("step_s"));
    std::printf("\n");
  };
  row("1 process x 2 threads", one, false);
  row("2 processes x 1 thread, all-reduce overlapped", two, true);
  row("2 processes x 1 thread, all-reduce after backward", two_seq, true);
  std::printf(
      "\nall-reduce of %.1f MiB between the 2 processes: %.1f ms (%.2f GB/s) = %.1f%% of a 2-process step "
      "(all-reduce after backward); of one float: %.0f us\n",
      two.at("grad_bytes") / (1 << 20), two.at("allreduce_s") * 1e3, two.at("grad_bytes") / two.at("allreduce_s") / 1e9,
      100 * two.at("allreduce_s") / two_seq.at("step_s"), two.at("latency_s") * 1e6);
  std::printf(
      "synchronize() time also holds waiting for the slower rank; the all-reduce alone is the share above.\n"
      "On one 2-core machine data parallelism cannot win: both layouts use the same 2 cores, and the\n"
      "all-reduce is extra work on them. It pays off across machines (or GPUs), as extrapolated below.\n");
  print_extrapolation(one, two, two_seq);
  for (const char* s : {"_1x2", "_2x1", "_2x1_seq"}) std::remove((tmp + s).c_str());
  return 0;
}

Args parse(int argc, char** argv) {
  Args a;
  a.self = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] {
      TORCH_CHECK(i + 1 < argc, "bench_distributed: ", k, " needs a value");
      return std::string(argv[++i]);
    };
    if (k == "--role")
      a.role = next();
    else if (k == "--out")
      a.out = next();
    else if (k == "--steps")
      a.steps = std::stoll(next());
    else if (k == "--batch")
      a.batch = std::stoll(next());
    else if (k == "--seq")
      a.seq = std::stoll(next());
    else if (k == "--threads")
      a.threads = std::stoll(next());
    else if (k == "--bucket-mib")
      a.bucket_mib = std::stoll(next());
    else if (k == "--overlap")
      a.overlap = true;
    else if (k == "--no-overlap")
      a.overlap = false;
    else
      TORCH_CHECK(false, "bench_distributed: unknown argument ", k, " (--steps N --batch N --seq N --bucket-mib N)");
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    return a.role == "train" ? role(a) : driver(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distributed: error: %s\n", e.what());
    return 1;
  }
}
