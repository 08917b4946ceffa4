// Checkpoint loading: peak RSS that io::from_pretrained adds, against the size of the weight files, and
// its wall time, each case loaded in a fresh child process (this one holds the models it writes).
// Cases: all-MiniLM-L6-v2 (the real safetensors file), and a bert-base-sized QDQBertModel (random
// weights, hidden 768, 12 layers, vocab 30522) written as model.safetensors, as 4 safetensors shards with
// an index, as pytorch_model.bin (Python's torch.save, through bench/safetensors_to_bin.py: this row needs
// /usr/bin/python3 with Debian's python3-torch) and as fp16 safetensors (loaded into an fp32 model, so
// that model alone is twice the file). Warm page cache: every file was just written or read.
// usage: bench_load [MINILM_DIR|none] [THREADS] [BASELINE]
//   MINILM_DIR: the folder tools/fetch-minilm.sh fills. BASELINE: a bench_load built from another commit;
//   its loads alternate with ours on the same files and print beneath ours (before/after in one run).
// The child: bench_load --load-only DIR THREADS prints "ms peak_added_kib reset_ok".
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peak_rss.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/safetensors.h"

using namespace qdqbert;
namespace fs = std::filesystem;

namespace {

// The child: resets the peak (clear_refs 5, Linux >= 4.0) so that VmHWM afterwards is the peak of the
// load alone, then prints "ms added_kib reset_ok".
int load_only(const std::string& dir, int threads) {
  at::set_num_threads(threads);
  const int64_t before = qdqbert::testing::status_kib("VmRSS");
  const bool reset = qdqbert::testing::reset_peak_rss();
  const auto t0 = std::chrono::steady_clock::now();
  auto model = io::from_pretrained(dir);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const int64_t peak = qdqbert::testing::status_kib("VmHWM");
  std::printf("%.1f %lld %d\n", ms, static_cast<long long>(peak - before), reset ? 1 : 0);
  return 0;
}

struct Measured {
  std::vector<double> ms;
  double added_mib = 0;
  bool ok = true, reset = true;
  double median_ms() const {
    std::vector<double> t = ms;
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

// One load of `dir` in a fresh process of `binary` (this one, or a baseline built from another commit).
void load_in_child(const std::string& binary, const std::string& dir, int threads, Measured& m) {
  FILE* p = popen((binary + " --load-only " + dir + " " + std::to_string(threads)).c_str(), "r");
  double ms = 0;
  long long kib = 0;
  int reset = 0;
  const bool read = p && std::fscanf(p, "%lf %lld %d", &ms, &kib, &reset) == 3;
  const int rc = p ? pclose(p) : -1;
  if (!read || rc != 0) {
    m.ok = false;
    return;
  }
  m.ms.push_back(ms);
  m.added_mib = std::max(m.added_mib, kib / 1024.0);
  m.reset = m.reset && reset;
}

uint64_t weight_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos) {
      if (name.find(".index.json") == std::string::npos) n += fs::file_size(e.path());
    }
  }
  return n;
}

// config.json of `from` into a fresh folder `to`.
void fresh_folder(const std::string& from, const std::string& to) {
  fs::remove_all(to);
  fs::create_directories(to);
  fs::copy_file(fs::path(from) / "config.json", fs::path(to) / "config.json");
}

// `tensors` as `shards` safetensors files of about equal size and model.safetensors.index.json.
void write_sharded(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& dir, int shards) {
  int64_t total = 0;
  for (const auto& [k, t] : tensors) total += t.numel() * t.element_size();
  nlohmann::json map = nlohmann::json::object();
  std::vector<std::pair<std::string, at::Tensor>> part;
  int64_t in_part = 0;
  int index = 1;
  auto flush = [&] {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", index++, shards);
    for (const auto& [k, t] : part) map[k] = name;
    io::save_safetensors((fs::path(dir) / name).string(), part, {{"format", "pt"}});
    part.clear();
    in_part = 0;
  };
  for (const auto& [k, t] : tensors) {
    part.emplace_back(k, t);
    in_part += t.numel() * t.element_size();
    if (in_part * shards >= total && index < shards) flush();
  }
  if (!part.empty()) flush();
  std::ofstream(fs::path(dir) / "model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", total}}}, {"weight_map", map}}.dump(2);
}

// pytorch_model.bin written by Python's torch.save (bench/safetensors_to_bin.py, Debian's python3-torch).
bool write_bin(const std::string& safetensors, const std::string& path) {
  const std::string script = (fs::path(__FILE__).parent_path() / "safetensors_to_bin.py").string();
  return std::system(("/usr/bin/python3 " + script + " " + safetensors + " " + path).c_str()) == 0;
}

struct Case {
  std::string name, dir;
};

// The bert-base folders (safetensors, shards, .bin, fp16) under `root`.
std::vector<Case> write_bert_base(const std::string& root) {
  torch::manual_seed(0);
  auto model = create_model("base", Config{});
  const std::string st = root + "/safetensors";
  io::save_pretrained(*model, st);
  std::vector<std::pair<std::string, at::Tensor>> tensors = io::state_dict(model->module());
  std::vector<Case> cases = {{"bert-base, model.safetensors", st}};
  fresh_folder(st, root + "/sharded");
  write_sharded(tensors, root + "/sharded", 4);
  cases.push_back({"bert-base, 4 safetensors shards", root + "/sharded"});
  fresh_folder(st, root + "/bin");
  if (write_bin(st + "/model.safetensors", root + "/bin/pytorch_model.bin")) {
    cases.push_back({"bert-base, pytorch_model.bin", root + "/bin"});
  } else {
    std::printf("(pytorch_model.bin skipped: it is written by /usr/bin/python3 with python3-torch)\n");
  }
  fresh_folder(st, root + "/fp16");
  for (auto& [k, t] : tensors) {
    if (t.is_floating_point()) t = t.to(torch::kHalf);
  }
  io::save_safetensors(root + "/fp16/model.safetensors", tensors, {{"format", "pt"}});
  cases.push_back({"bert-base, fp16 safetensors", root + "/fp16"});
  return cases;
}

void print_row(const std::string& name, double file_mib, const Measured& m) {
  if (!m.ok) {
    std::printf("%-38s %9.1f %9s\n", name.c_str(), file_mib, "(failed)");
    return;
  }
  std::printf("%-38s %9.1f %9.0f %9.1f %7.2fx%s\n", name.c_str(), file_mib, m.median_ms(), m.added_mib,
              m.added_mib / file_mib, m.reset ? "" : " (peak not reset: an upper bound)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 3 && std::string(argv[1]) == "--load-only") return load_only(argv[2], std::atoi(argv[3]));
  const std::string minilm = argc > 1 ? argv[1] : "none";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string baseline = argc > 3 ? argv[3] : "";
  const std::string root = (fs::temp_directory_path() / ("qdqbert_bench_load_" + std::to_string(::getpid()))).string();
  std::vector<Case> cases;
  if (minilm != "none" && fs::exists(fs::path(minilm) / "config.json")) {
    cases.push_back({"all-MiniLM-L6-v2, model.safetensors", minilm});
  } else {
    std::printf("(all-MiniLM-L6-v2 skipped: pass the folder tools/fetch-minilm.sh DIR fills)\n");
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& c : write_bert_base(root)) cases.push_back(c);
  }
  ::sync();  // the files just written go to disk now, not while a load is timed
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::printf(
      "from_pretrained in a fresh process, %d LibTorch threads, warm page cache; load ms: median of 3, "
      "peak RSS added (MiB): max of 3%s\n",
      threads, baseline.empty() ? "" : "; baseline runs alternate with ours");
  std::printf("%-38s %9s %9s %9s %8s\n", "checkpoint", "file MiB", "load ms", "peak MiB", "ratio");
  for (const auto& c : cases) {
    const double mib = weight_bytes(c.dir) / (1024.0 * 1024.0);
    Measured ours, base;
    for (int run = 0; run < 3; ++run) {
      load_in_child(self, c.dir, threads, ours);
      if (!baseline.empty()) load_in_child(baseline, c.dir, threads, base);
    }
    print_row(c.name, mib, ours);
    if (!baseline.empty()) print_row("  baseline (" + fs::path(baseline).filename().string() + ")", mib, base);
  }
  fs::remove_all(root);
  return 0;
}
