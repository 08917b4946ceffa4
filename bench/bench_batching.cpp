// What batches of like length buy, in the two places qdqbert makes them from plain text:
// - `qat --batching length`: one epoch of distillation QAT (workflow::distill_qat, the recipe of
//   docs/qat-minilm: cosine+hidden loss, LSQ ranges) over the same shuffled lines, once in batches of the
//   shuffled lines as they come (`--batching shuffled`) and once in batches of like length (each run of
//   workflow::kLengthGroupBatches batches' worth sorted by token count, as qat does). Both start from the
//   same max-calibrated student.
// - `embed --batching length`: workflow::embed of the same lines with that student, in batches of
//   consecutive lines (`--batching input`) and in batches of like length (the whole text sorted by token
//   count, the rows written back in the order of the text).
// The two kinds alternate in order over the rounds, so drift in the machine's load hits both alike; medians.
// Prints the padded / real token ratio of each batching, the times, and the ratios.
//
// usage: bench_batching MODEL_DIR TEXT_FILE [THREADS=2] [LINES=1024] [ROUNDS=2] [BATCH=32]
//   MODEL_DIR: an FP32 BERT checkpoint with its tokenizer (tools/fetch-minilm.sh build/minilm)
//   TEXT_FILE: UTF-8 text, one line per input (tools/make-study-text.sh DIR: DIR/calib.txt)
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model_bench.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/tokenization/tokenizer.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/distill.h"
#include "qdqbert/workflow/embed.h"
#include "qdqbert/workflow/quant_trainer.h"

using namespace qdqbert;

namespace {

constexpr int64_t kMaxLength = 128;

double padded_over_real(const std::vector<ModelInputs>& batches) {
  double padded = 0, real = 0;
  for (const auto& b : batches) {
    padded += static_cast<double>(b.attention_mask.numel());
    real += b.attention_mask.sum().item<double>();
  }
  return padded / real;
}

// Seconds per step of one epoch over `batches`, from a fresh copy of the calibrated student.
double seconds_per_step(const std::string& student_dir, TaskModel& teacher, const std::vector<ModelInputs>& batches,
                        const std::vector<ModelInputs>& eval) {
  auto student = bench::from_pretrained_qdq(student_dir, "base");
  workflow::DistillOptions o;
  o.epochs = 1;
  o.lr = 1e-4;
  o.amax_lr = 3e-2;
  o.learn_amax = true;
  o.range_learning = nn::RangeLearning::kLsq;
  o.loss = workflow::DistillLoss::kCosineHidden;
  const auto r = workflow::distill_qat(*student, teacher, batches, eval, o);
  return r.seconds_per_step;
}

// Seconds for workflow::embed of `lines`, in batches of consecutive lines or of like length.
double embed_seconds(TaskModel& model, const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                     int64_t batch, bool length_sorted) {
  workflow::EmbedOptions o;
  o.max_length = kMaxLength;
  o.batch_size = batch;
  o.length_sorted = length_sorted;
  const auto start = std::chrono::steady_clock::now();
  workflow::embed(model, tok, lines, o);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs measure(length) for both kinds `rounds` times, alternating which goes first; prints each time.
void alternate(int rounds, const char* what, const char* other, const char* unit, std::vector<double>& t_other,
               std::vector<double>& t_length, const std::function<double(bool)>& measure) {
  for (int r = 0; r < rounds; ++r) {
    const bool length_first = r % 2 == 1;
    for (int k = 0; k < 2; ++k) {
      const bool length = (k == 0) == length_first;
      const double s = measure(length);
      (length ? t_length : t_other).push_back(s);
      std::printf("%s round %d %-8s %.3f %s\n", what, r + 1, length ? "length" : other, s, unit);
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR TEXT_FILE [THREADS=2] [LINES=1024] [ROUNDS=2] [BATCH=32]\n", argv[0]);
    return 2;
  }
  const std::string model_dir = argv[1], text = argv[2];
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int64_t lines_wanted = argc > 4 ? std::atoll(argv[4]) : 1024;
  const int rounds = argc > 5 ? std::atoi(argv[5]) : 2;
  const int64_t batch = argc > 6 ? std::atoll(argv[6]) : 32;
  if (threads < 1 || lines_wanted < batch || rounds < 1 || batch < 1) {
    std::fprintf(stderr, "%s: THREADS, ROUNDS and BATCH must be >= 1 and LINES >= BATCH\n", argv[0]);
    return 2;
  }
  at::set_num_threads(threads);
  try {
    const auto tok = tokenization::load_tokenizer(model_dir);
    std::vector<std::string> all = workflow::read_text_lines(text), lines;
    std::mt19937_64 rng(42);
    for (int64_t i : workflow::permutation(static_cast<int64_t>(all.size()), rng)) {
      if (static_cast<int64_t>(lines.size()) == lines_wanted) break;
      lines.push_back(all[static_cast<size_t>(i)]);
    }
    const auto shuffled = workflow::encode_batches(*tok, lines, kMaxLength, batch);
    const auto grouped = workflow::encode_batches(
        *tok, workflow::sort_by_token_count(*tok, lines, kMaxLength, workflow::kLengthGroupBatches * batch),
        kMaxLength, batch);
    const double pad_shuffled = padded_over_real(shuffled), pad_length = padded_over_real(grouped);
    const auto eval = workflow::encode_batches(*tok, {lines.begin(), lines.begin() + batch}, kMaxLength, batch);

    // The student: max-calibrated on the first shuffled batches, saved once so that every run starts alike.
    const std::string student_dir = (std::filesystem::temp_directory_path() /
                                     ("qdqbert_bench_batching_" + std::to_string(::getpid())))
                                        .string();
    {
      auto student = bench::from_pretrained_qdq(model_dir, "base");
      workflow::CalibrationOptions co;
      workflow::calibrate(*student, {shuffled.begin(), shuffled.begin() + std::min<size_t>(4, shuffled.size())}, co);
      io::save_pretrained(*student, student_dir);
    }
    auto teacher = bench::from_pretrained_qdq(model_dir, "base");
    bench::set_quantizers(*teacher, false);
    for (auto& p : teacher->module().parameters()) p.set_requires_grad(false);

    std::printf("%zu lines of %s, batch %lld, %d threads: %zu batches each\n", lines.size(), text.c_str(),
                static_cast<long long>(batch), threads, shuffled.size());
    std::printf("padded / real tokens: shuffled %.3f, length %.3f\n", pad_shuffled, pad_length);
    std::vector<double> t_shuffled, t_length;
    alternate(rounds, "qat", "shuffled", "s/step", t_shuffled, t_length, [&](bool length) {
      return seconds_per_step(student_dir, *teacher, length ? grouped : shuffled, eval);
    });
    const double a = bench::median(t_shuffled), b = bench::median(t_length);
    std::printf("\n| qat batching | padded / real tokens | s/step (median of %d) |\n|---|---|---|\n", rounds);
    std::printf("| shuffled (as they come) | %.3f | %.3f |\n| length (qat's default) | %.3f | %.3f |\n",
                pad_shuffled, a, pad_length, b);
    std::printf("length is %.2fx as fast per step\n\n", a / b);
    std::fflush(stdout);

    // embed: the consecutive lines are the shuffled batches above; embed's own sorts the whole text.
    const double pad_sorted =
        padded_over_real(workflow::encode_batches(*tok, workflow::sort_by_token_count(*tok, lines, kMaxLength),
                                                  kMaxLength, batch));
    auto embedder = bench::from_pretrained_qdq(student_dir, "base");
    std::vector<double> e_input, e_length;
    alternate(rounds, "embed", "input", "s", e_input, e_length,
              [&](bool length) { return embed_seconds(*embedder, *tok, lines, batch, length); });
    std::filesystem::remove_all(student_dir);
    const double c = bench::median(e_input), d = bench::median(e_length);
    std::printf("\n| embed batching | padded / real tokens | s for %zu lines (median of %d) |\n|---|---|---|\n",
                lines.size(), rounds);
    std::printf("| embed input (consecutive lines) | %.3f | %.3f |\n| embed length (embed's default) | %.3f | %.3f |\n",
                pad_shuffled, c, pad_sorted, d);
    std::printf("embed: length is %.2fx as fast\n", c / d);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
