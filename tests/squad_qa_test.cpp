// examples/squad/squad_qa end to end on tiny synthetic SQuAD (examples/squad/synthetic_squad.py): flag
// combinations refused before any work, --save-steps + --resume-from-checkpoint giving the weights of an
// uninterrupted run, a checkpoint of another run refused without touching anything, --do-predict, shuffled
// calibration sampling, and SQuAD v2 (--version-2-with-negative).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "qdqbert/io/safetensors.h"
#include "test_config.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string squad_qa_binary() { return std::string(QDQBERT_BINARY_DIR) + "/examples/squad_qa"; }

struct QaRun {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

QaRun run_squad_qa(const std::string& args) {
  const std::string cmd = squad_qa_binary() + " " + args + " 2>&1";
  QaRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = "$ squad_qa " + args + "\n" + r.out;
  return r;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Every entry under `dir` (and `dir` itself) with its size, content hash and modification time.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  auto describe = [](const fs::path& p) {
    std::string d = "mtime " + std::to_string(fs::last_write_time(p).time_since_epoch().count());
    if (fs::is_regular_file(p)) {
      const std::string bytes = read_text(p);
      d += " size " + std::to_string(bytes.size()) + " hash " + std::to_string(std::hash<std::string>{}(bytes));
    }
    return d;
  };
  out["."] = describe(dir);
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    out[fs::relative(e.path(), dir).string()] = describe(e.path());
  }
  return out;
}

std::string listing(const std::map<std::string, std::string>& snap) {
  std::string s;
  for (const auto& [k, v] : snap) s += "  " + k + ": " + v + "\n";
  return s;
}

/// Questions in a SQuAD file (synthetic_squad.py may write a few more than asked: whole paragraphs).
size_t question_count(const std::string& path) {
  size_t n = 0;
  const json file = qt::read_json(path);  // keep it alive: the loop iterates a reference into it
  for (const auto& article : file.at("data")) {
    for (const auto& par : article.at("paragraphs")) n += par.at("qas").size();
  }
  return n;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class SquadQa : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(squad_qa_binary())) << squad_qa_binary() << " is not built";
    // The synthetic data comes from python3 (.ci/run installs it): without it the tests fail, never skip.
    ASSERT_EQ(std::system("python3 --version > /dev/null 2>&1"), 0) << "python3 is not available";
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    tmp_ = fs::temp_directory_path() / ("qdqbert_squad_qa_" + std::string(info->name()) + "_" +
                                        std::to_string(::getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
    data_ = (tmp_ / "data").string();
    const std::string gen = "python3 " + std::string(QDQBERT_SOURCE_DIR) + "/examples/squad/synthetic_squad.py " +
                            data_ + " --train 96 --dev 24 > /dev/null";
    ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  }
  void TearDown() override {
    if (!tmp_.empty() && !HasFailure()) fs::remove_all(tmp_);
  }

  std::string out(const std::string& name) const { return (tmp_ / name).string(); }

  /// Model, data and sizes shared by every run (tiny model, seq 64, batch 8, one thread).
  std::string base(int64_t train_batch = 8) const {
    return "--model " + data_ + "/model --max-seq-length 64 --doc-stride 32 --per-device-train-batch-size " +
           std::to_string(train_batch) + " --per-device-eval-batch-size 8 --threads 1 --seed 7";
  }
  std::string train_file() const { return " --train-file " + data_ + "/train.json"; }
  std::string dev_file() const { return data_ + "/dev.json"; }

  /// The training of the resume test: 2 epochs, 2 micro-batches per optimizer step, no quantization.
  std::string training(int64_t train_batch = 8) const {
    return base(train_batch) + train_file() +
           " --do-train --num-train-epochs 2 --gradient-accumulation-steps 2 --learning-rate 1e-3"
           " --warmup-ratio 0.1 --quant-disable";
  }

  fs::path tmp_;
  std::string data_;
};

TEST_F(SquadQa, ImpossibleFlagCombinationsFailBeforeAnyWork) {
  const std::string tf = train_file(), pf = " --predict-file " + dev_file();
  const std::string init = base() + " --init-from-config";
  struct Case {
    std::string args, expected;
  };
  const std::vector<Case> cases = {
      {init + " --do-train" + pf, "--do-train needs --train-file"},
      {init + " --do-calib" + pf, "--do-calib needs --train-file"},
      {init + " --do-eval" + tf, "--do-eval needs --predict-file"},
      {init + " --do-predict" + tf, "--do-predict needs --test-file"},
      {init + " --do-eval" + pf + " --resume-from-checkpoint " + out("nowhere"),
       "--resume-from-checkpoint needs --do-train"},
      {init + " --do-train" + tf + " --resume-from-checkpoint " + out("nowhere"), "--init-from-config"},
      {init + tf + pf, "nothing to do"},
      {init + " --do-train" + tf + " --save-steps=-1", "--save-steps"},
      {init + " --do-train" + tf + " --gradient-accumulation-steps=0", "--gradient-accumulation-steps"},
  };
  // An output dir that does not exist must not be created; one that exists must be left as it is.
  const std::string existing = out("existing");
  fs::create_directories(existing);
  { std::ofstream(existing + "/eval_results.json") << "{\"exact_match\": 1, \"f1\": 2}\n"; }
  const auto before = snapshot(existing);
  int i = 0;
  for (const auto& c : cases) {
    const std::string fresh = out("bad_" + std::to_string(i++));
    for (const std::string& dir : {fresh, existing}) {
      const QaRun r = run_squad_qa(c.args + " --output-dir " + dir);
      EXPECT_NE(r.rc, 0) << r.out;
      EXPECT_TRUE(contains(r.out, "squad_qa: error: ")) << r.out;
      EXPECT_TRUE(contains(r.out, c.expected)) << "expected \"" << c.expected << "\" in\n" << r.out;
      EXPECT_FALSE(contains(r.out, "train:")) << "work started before the flag check:\n" << r.out;
    }
    EXPECT_FALSE(fs::exists(fresh)) << c.args;
  }
  EXPECT_EQ(snapshot(existing), before) << listing(snapshot(existing));
  // "nothing to do" names the flags that would give it something to do.
  const QaRun r = run_squad_qa(init + tf + pf + " --output-dir " + out("bad_nothing"));
  EXPECT_TRUE(contains(r.out, "--do-predict")) << r.out;
  EXPECT_TRUE(contains(r.out, "--save-onnx")) << r.out;
}

TEST_F(SquadQa, ResumeFromCheckpointGivesTheUninterruptedWeights) {
  // A: uninterrupted. B: the same run writing checkpoints. C: B's last checkpoint before the end, resumed.
  const QaRun a = run_squad_qa(training() + " --init-from-config --output-dir " + out("A"));
  ASSERT_EQ(a.rc, 0) << a.out;
  EXPECT_FALSE(fs::exists(out("A/checkpoint-5")));
  const QaRun b = run_squad_qa(training() + " --init-from-config --save-steps 5 --output-dir " + out("B"));
  ASSERT_EQ(b.rc, 0) << b.out;

  std::map<int64_t, fs::path> checkpoints;
  const std::regex name_re("checkpoint-([0-9]+)");
  for (const auto& e : fs::directory_iterator(out("B"))) {
    const std::string name = e.path().filename().string();
    EXPECT_FALSE(contains(name, ".tmp-") || contains(name, ".old-")) << "left behind: " << name;
    std::smatch m;
    if (std::regex_match(name, m, name_re)) checkpoints[std::stoll(m[1].str())] = e.path();
  }
  ASSERT_FALSE(checkpoints.empty()) << b.out;
  const json first_state = qt::read_json((checkpoints.begin()->second / "trainer_state.json").string());
  const int64_t total = first_state.at("total_steps").get<int64_t>();
  const int64_t steps_per_epoch = first_state.at("steps_per_epoch").get<int64_t>();
  ASSERT_GT(total, 5) << first_state.dump(2);
  EXPECT_EQ(total, 2 * steps_per_epoch);
  for (const auto& [step, dir] : checkpoints) {
    EXPECT_EQ(step % 5, 0) << dir;
    for (const char* f : {"config.json", "model.safetensors", "vocab.txt", "optimizer.pt", "trainer_state.json"}) {
      EXPECT_TRUE(fs::is_regular_file(dir / f)) << dir / f;
    }
    const json st = qt::read_json((dir / "trainer_state.json").string());
    EXPECT_EQ(st.at("global_step").get<int64_t>(), step);
    EXPECT_EQ(st.at("epoch_index").get<int64_t>(), step / steps_per_epoch);
    EXPECT_EQ(st.at("batch_in_epoch").get<int64_t>(), (step % steps_per_epoch) * 2);
    EXPECT_EQ(st.at("seed").get<int64_t>(), 7);
    EXPECT_EQ(st.at("fingerprint").at("gradient_accumulation_steps").get<int64_t>(), 2);
    EXPECT_EQ(st.at("fingerprint").at("per_device_train_batch_size").get<int64_t>(), 8);
  }
  // The last checkpoint before the end (in the second epoch when there is one).
  int64_t resume_step = 0;
  for (const auto& [step, dir] : checkpoints) {
    if (step < total) resume_step = step;
  }
  ASSERT_GT(resume_step, 0);
  const std::string ckpt = checkpoints[resume_step].string();

  const QaRun c = run_squad_qa(training() + " --resume-from-checkpoint " + ckpt + " --output-dir " + out("C"));
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_TRUE(contains(c.out, "resumed from " + ckpt + " at step " + std::to_string(resume_step))) << c.out;

  const auto wa = qdqbert::io::load_safetensors(out("A/model.safetensors"));
  const auto wb = qdqbert::io::load_safetensors(out("B/model.safetensors"));
  const auto wc = qdqbert::io::load_safetensors(out("C/model.safetensors"));
  ASSERT_EQ(wa.size(), wc.size());
  ASSERT_EQ(wa.size(), wb.size());
  const auto ckpt_weights = qdqbert::io::load_safetensors(ckpt + "/model.safetensors");
  bool trained_after_checkpoint = false;
  for (const auto& [k, v] : wa) {
    ASSERT_TRUE(wc.count(k)) << k;
    EXPECT_TRUE(qt::tensors_close(wb.at(k), v, 1e-5, 1e-6, "B (with checkpoints) vs A: " + k));
    EXPECT_TRUE(qt::tensors_close(wc.at(k), v, 1e-5, 1e-6, "C (resumed) vs A: " + k));
    if (ckpt_weights.count(k) && !torch::equal(ckpt_weights.at(k), v)) trained_after_checkpoint = true;
  }
  EXPECT_TRUE(trained_after_checkpoint) << "the resumed run did not train past the checkpoint";

  // A checkpoint of a different run is refused, naming the field, before anything is written.
  const auto b_before = snapshot(out("B"));
  const QaRun lr = run_squad_qa(base() + train_file() +
                                " --do-train --num-train-epochs 2 --gradient-accumulation-steps 2 --learning-rate 2e-3"
                                " --warmup-ratio 0.1 --quant-disable --save-steps 5 --resume-from-checkpoint " +
                                ckpt + " --output-dir " + out("B"));
  EXPECT_NE(lr.rc, 0) << lr.out;
  EXPECT_TRUE(contains(lr.out, "squad_qa: error: ")) << lr.out;
  EXPECT_TRUE(contains(lr.out, "learning_rate (--learning-rate)")) << lr.out;
  EXPECT_TRUE(contains(lr.out, ckpt)) << lr.out;
  EXPECT_TRUE(contains(lr.out, "0.002")) << lr.out;
  const QaRun bs = run_squad_qa(training(4) + " --resume-from-checkpoint " + ckpt +
                                " --output-dir " + out("D"));
  EXPECT_NE(bs.rc, 0) << bs.out;
  EXPECT_TRUE(contains(bs.out, "per_device_train_batch_size")) << bs.out;
  EXPECT_FALSE(fs::exists(out("D")));
  // A folder that is not a checkpoint.
  const QaRun notckpt =
      run_squad_qa(training() + " --resume-from-checkpoint " + out("A") + " --output-dir " + out("E"));
  EXPECT_NE(notckpt.rc, 0) << notckpt.out;
  EXPECT_TRUE(contains(notckpt.out, "trainer_state.json")) << notckpt.out;
  EXPECT_FALSE(fs::exists(out("E")));
  EXPECT_EQ(snapshot(out("B")), b_before) << listing(snapshot(out("B")));

  // The trained model loads strictly (every key of the QA head present) and evaluates.
  const QaRun strict = run_squad_qa("--model " + out("A") + " --strict --do-eval --predict-file " + dev_file() +
                                    " --max-seq-length 64 --doc-stride 32 --per-device-eval-batch-size 8 --threads 1"
                                    " --quant-disable --output-dir " +
                                    out("A_eval"));
  ASSERT_EQ(strict.rc, 0) << strict.out;
  EXPECT_TRUE(std::regex_search(strict.out, std::regex("(^|\n)eval: exact_match [0-9.]+ f1 [0-9.]+"))) << strict.out;
}

TEST_F(SquadQa, PredictAndShuffledCalibration) {
  // Default calibration: batches of the eval batch size until calib_num samples (20 -> 3 batches of 8).
  const QaRun r = run_squad_qa(base() + train_file() + " --init-from-config --do-calib --calib-num 20 --do-predict"
                               " --test-file " + dev_file() + " --output-dir " + out("P"));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("(^|\n)calibrated [1-9][0-9]* quantizers with max on 3 batches \\(24 samples, shuffled\\)")))
      << r.out;
  const size_t dev_questions = question_count(dev_file());
  const json preds = qt::read_json(out("P/predict_predictions.json"));
  EXPECT_EQ(preds.size(), dev_questions);
  EXPECT_TRUE(fs::exists(out("P/predict_nbest_predictions.json")));
  const json res = qt::read_json(out("P/predict_results.json"));  // dev.json has answers
  EXPECT_TRUE(res.contains("exact_match") && res.contains("f1")) << res.dump();
  EXPECT_TRUE(fs::exists(out("P/model.safetensors")));  // --do-calib saves the calibrated model

  // An explicit --num-calib-batch wins; --do-predict falls back to --predict-file.
  const QaRun n = run_squad_qa(base() + train_file() + " --init-from-config --do-calib --num-calib-batch 2"
                               " --do-predict --predict-file " + dev_file() + " --output-dir " + out("Q"));
  ASSERT_EQ(n.rc, 0) << n.out;
  EXPECT_TRUE(contains(n.out, " on 2 batches (16 samples, shuffled)")) << n.out;
  EXPECT_EQ(qt::read_json(out("Q/predict_predictions.json")).size(), dev_questions);
}

TEST_F(SquadQa, Version2WithNegative) {
  // dev.json with every third question made unanswerable.
  json v2 = qt::read_json(dev_file());
  v2["version"] = "v2.0";
  int i = 0, impossible = 0;
  for (auto& article : v2["data"]) {
    for (auto& par : article["paragraphs"]) {
      for (auto& qa : par["qas"]) {
        const bool imp = i++ % 3 == 0;
        qa["is_impossible"] = imp;
        if (imp) {
          qa["answers"] = json::array();
          ++impossible;
        }
      }
    }
  }
  const std::string v2_file = out("dev_v2.json");
  { std::ofstream(v2_file) << v2.dump(); }

  const QaRun r = run_squad_qa(base() + " --init-from-config --version-2-with-negative --null-score-diff-threshold 0.0"
                               " --do-eval --predict-file " + v2_file + " --do-predict --test-file " + v2_file +
                               " --output-dir " + out("V2"));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("(^|\n)eval: exact_match [0-9.]+ f1 [0-9.]+"))) << r.out;
  const json res = qt::read_json(out("V2/eval_results.json"));
  for (const char* k : {"exact_match", "f1", "exact", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                        "NoAns_exact", "NoAns_f1", "NoAns_total", "best_exact", "best_f1"}) {
    EXPECT_TRUE(res.contains(k)) << k << " missing in " << res.dump();
  }
  const auto questions = static_cast<int64_t>(question_count(dev_file()));
  EXPECT_EQ(res.at("total").get<int64_t>(), questions);
  EXPECT_EQ(res.at("NoAns_total").get<int64_t>(), impossible);
  EXPECT_DOUBLE_EQ(res.at("exact_match").get<double>(), res.at("exact").get<double>());
  EXPECT_EQ(static_cast<int64_t>(qt::read_json(out("V2/null_odds.json")).size()), questions);
  EXPECT_TRUE(qt::read_json(out("V2/predict_results.json")).contains("NoAns_f1"));
  EXPECT_EQ(static_cast<int64_t>(qt::read_json(out("V2/predict_predictions.json")).size()), questions);

  // v2 data evaluated as v1.1 is refused before any work, pointing at the flag.
  const QaRun v1 = run_squad_qa(base() + " --init-from-config --do-eval --predict-file " + v2_file +
                                " --output-dir " + out("V1"));
  EXPECT_NE(v1.rc, 0) << v1.out;
  EXPECT_TRUE(contains(v1.out, "--version-2-with-negative")) << v1.out;
  EXPECT_FALSE(fs::exists(out("V1")));
}

}  // namespace
