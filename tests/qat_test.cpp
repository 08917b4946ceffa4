// Distillation QAT and what it reports: embedding fidelity (cosine, recall@k), GEMM int8 share, learned
// ranges frozen into amax, the distill_qat loop on a tiny model, staged output folders and the SVG charts.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "model_util.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/report/svg_chart.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/distill.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
namespace fs = std::filesystem;
using namespace qdqbert;

namespace {

workflow::Embeddings rows(const at::Tensor& e) {
  workflow::Embeddings r;
  r.sentence_embedding = torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(1));
  return r;
}

// A tiny FP32 teacher and its max-calibrated QDQ student (same weights).
std::pair<std::shared_ptr<TaskModel>, std::shared_ptr<TaskModel>> teacher_and_student(int64_t bits = 8,
                                                                                      uint64_t seed = 7) {
  Config c = qt::tiny_config();
  c.initializer_range = 0.05;
  torch::manual_seed(seed);
  auto teacher = create_model("base", c);
  auto student = create_model("base", c);
  io::load_state_dict(*student, [&] {
    std::map<std::string, at::Tensor> s;
    for (auto& [k, v] : io::state_dict(teacher->module())) s[k] = v;
    return s;
  }());
  for (auto& [n, q] : named_quantizers(teacher->module())) q->disable();
  workflow::calibrate(*student, qt::random_text_batches(4, 8, 12, 99));
  for (auto& [n, q] : named_quantizers(student->module())) q->set_num_bits(bits);
  teacher->module().eval();
  student->module().eval();
  return {teacher, student};
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(Fidelity, IdenticalEmbeddingsAreFaithful) {
  torch::manual_seed(1);
  auto e = rows(torch::randn({20, 8}));
  auto f = workflow::compare_embeddings(e, e, 10);
  EXPECT_NEAR(f.cosine_mean, 1, 1e-6);
  EXPECT_NEAR(f.cosine_p5, 1, 1e-6);
  EXPECT_EQ(f.k, 10);
  EXPECT_DOUBLE_EQ(f.recall_at_k, 1);
  EXPECT_DOUBLE_EQ(f.top1_unchanged, 1);
}

TEST(Fidelity, RecallCountsSharedNeighbours) {
  // Four points between the axes; the candidate swaps the directions of points 1 and 3.
  at::Tensor x = torch::tensor({{1.0, 0.0}, {0.9, 0.1}, {0.5, 0.5}, {0.0, 1.0}});
  at::Tensor y = torch::tensor({{1.0, 0.0}, {0.0, 1.0}, {0.5, 0.5}, {0.9, 0.1}});
  auto f = workflow::compare_embeddings(rows(x), rows(y), 1);
  // Reference nearest: 0->1, 1->0, 2->1, 3->2. Candidate (rows as given): 0->3, 1->2, 2->3, 3->0.
  EXPECT_EQ(f.k, 1);
  EXPECT_DOUBLE_EQ(f.top1_unchanged, 0.0);
  EXPECT_DOUBLE_EQ(f.recall_at_k, 0.0);
  auto g = workflow::compare_embeddings(rows(x), rows(y), 3);  // k = n - 1: every other point is a neighbour
  EXPECT_EQ(g.k, 3);
  EXPECT_DOUBLE_EQ(g.recall_at_k, 1.0);
  EXPECT_LT(g.cosine_min, 0.2);  // rows 1 and 3 moved to the other axis
  // k is capped at n - 1 and the shapes must agree.
  EXPECT_EQ(workflow::compare_embeddings(rows(x), rows(y), 50).k, 3);
  EXPECT_NE(qt::error_message([&] { workflow::compare_embeddings(rows(x), rows(x.slice(0, 0, 3))); }).find("shape"),
            std::string::npos);
}

TEST(Fidelity, GemmInt8ShareFollowsTheQuantizers) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  const std::vector<int64_t> lengths = {10, 6};
  auto f = workflow::gemm_flops(*m, lengths);
  // Per layer: q, k, v, attention output (H x H), intermediate and output (H x I): 2 T in out each, T = 16;
  // two matmuls of 2 L^2 H each, summed over the sentences (L^2 = 100 + 36).
  const double H = 32, I = 37, T = 16, L2 = 136;
  const double per_layer = 2 * T * (4 * H * H + 2 * H * I) + 2 * 2 * L2 * H;
  EXPECT_DOUBLE_EQ(f.total, 2 * per_layer);
  EXPECT_DOUBLE_EQ(f.int8_share(), 1.0);
  for (auto& [n, q] : named_quantizers(m->module())) {
    if (n == "encoder.layer.1.attention.self.matmul_v_input_quantizer") q->disable();
    if (n == "encoder.layer.0.intermediate.dense._weight_quantizer") q->disable();
    if (n.find("add_") != std::string::npos) q->disable();  // residual adds carry no GEMM work
  }
  f = workflow::gemm_flops(*m, lengths);
  EXPECT_DOUBLE_EQ(f.total - f.int8, 2 * L2 * H + 2 * T * H * I);
}

TEST(LearnAmax, StartsFromTheCalibratedAmaxAndFreezesTheLearnedOne) {
  nn::TensorQuantizer q(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  q->set_amax(2.0);
  torch::manual_seed(3);
  at::Tensor x = torch::randn({64}) * 3;
  // Inside the range the outputs are the calibrated ones. (Below -amax they differ by design, as in the
  // toolkit: the Clip bounds the input to [-amax, amax], so the -128 level is never reached.)
  const at::Tensor inside = x.clamp(-2, 2);
  const at::Tensor before = q->forward(inside);
  q->start_learning_amax();
  ASSERT_TRUE(q->learn_amax());
  EXPECT_TRUE(qt::tensors_equal(q->forward(inside), before, "learning starts from the calibrated output"));
  EXPECT_EQ(q->parameters().size(), 2u);
  // Clipped values give the range a gradient.
  at::Tensor xs = x.clone().requires_grad_(true);
  q->forward(xs).sum().backward();
  EXPECT_TRUE(q->clip->clip_value_max.grad().defined());
  {
    torch::NoGradGuard ng;
    q->clip->clip_value_max.fill_(3.0);
    q->clip->clip_value_min.fill_(-2.5);
  }
  q->freeze_learned_amax();
  EXPECT_FALSE(q->learn_amax());
  EXPECT_FLOAT_EQ(q->amax().item<float>(), 3.0f);
  EXPECT_TRUE(q->named_parameters().is_empty());
  EXPECT_EQ(q->named_children().size(), 0u);
  nn::TensorQuantizer fixed(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  fixed->set_amax(3.0);
  EXPECT_TRUE(qt::tensors_equal(q->forward(x), fixed->forward(x), "frozen = a static amax of max(-min, max)"));
  // Errors: no amax, per-channel amax, freezing a quantizer that does not learn.
  nn::TensorQuantizer dynamic(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  EXPECT_NE(qt::error_message([&] { dynamic->start_learning_amax(); }).find("calibrated"), std::string::npos);
  nn::TensorQuantizer rows(nn::TensorQuantizerOptions().quant_desc(nn::quant_desc_8bit_linear_weight_per_row()));
  rows->set_amax(torch::ones({4, 1}), true);
  EXPECT_NE(qt::error_message([&] { rows->start_learning_amax(); }).find("per-tensor"), std::string::npos);
  EXPECT_NE(qt::error_message([&] { fixed->freeze_learned_amax(); }).find("does not learn"), std::string::npos);
}

TEST(LearnAmax, LearnedStepSizeStartsFromTheCalibratedOutputAndFreezesExpLogAmax) {
  nn::TensorQuantizer q(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  q->set_amax(2.0);
  torch::manual_seed(3);
  at::Tensor x = torch::randn({64}) * 3;
  const at::Tensor before = q->forward(x);
  q->start_learning_amax(nn::RangeLearning::kLsq);
  EXPECT_TRUE(q->learns_range());
  EXPECT_FALSE(q->learn_amax());  // not the toolkit's Clip learner: no clip in forward or export
  ASSERT_EQ(q->named_parameters().size(), 1u);
  EXPECT_EQ(q->named_parameters().begin()->key(), "learned_range.log_amax");
  EXPECT_TRUE(nn::is_range_parameter("bert.encoder.layer.0.output.add_local_input_quantizer.learned_range.log_amax"));
  EXPECT_TRUE(nn::is_range_parameter("x._input_quantizer.clip.clip_value_max"));
  EXPECT_FALSE(nn::is_range_parameter("bert.encoder.layer.0.output.dense.weight"));
  // Unlike the Clip learner, the whole output is the calibrated one, below -amax included.
  EXPECT_TRUE(qt::tensors_equal(q->forward(x), before, "learning starts from the calibrated output"));
  at::Tensor xs = x.clone().requires_grad_(true);
  q->forward(xs).pow(2).sum().backward();
  EXPECT_TRUE(q->learned_range->log_amax.grad().defined());
  EXPECT_NE(q->learned_range->log_amax.grad().item<float>(), 0.f);
  {
    torch::NoGradGuard ng;
    q->learned_range->log_amax.fill_(std::log(3.0));
  }
  EXPECT_NEAR(q->effective_amax(x).item<double>(), 3.0, 1e-6);
  q->freeze_learned_amax();
  EXPECT_FALSE(q->learns_range());
  EXPECT_NEAR(q->amax().item<double>(), 3.0, 1e-6);
  EXPECT_TRUE(q->named_parameters().is_empty());
  EXPECT_EQ(q->named_children().size(), 0u);
  nn::TensorQuantizer fixed(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  fixed->set_amax(q->amax().item<double>());
  EXPECT_TRUE(qt::tensors_equal(q->forward(x), fixed->forward(x), "frozen = a static amax of exp(log_amax)"));
  EXPECT_NE(qt::error_message([] { nn::parse_range_learning("pact"); }).find("clip or lsq"), std::string::npos);
  nn::TensorQuantizer twice(nn::TensorQuantizerOptions().quant_desc(nn::QuantDescriptor()));
  twice->set_amax(1.0);
  twice->start_learning_amax(nn::RangeLearning::kLsq);
  EXPECT_NE(qt::error_message([&] { twice->start_learning_amax(); }).find("already"), std::string::npos);
}

TEST(Distill, TrainingBringsTheStudentCloserToTheTeacher) {
  // 4-bit, so that the tiny model's PTQ start is clearly off.
  auto models = teacher_and_student(4);
  auto teacher = models.first, student = models.second;
  const auto train = qt::random_text_batches(6, 8, 12, 5), eval = qt::random_text_batches(3, 8, 12, 6);
  workflow::DistillOptions o;
  o.steps = 24;
  o.lr = 1e-3;
  o.eval_every = 12;
  int64_t calls = 0, evals = 0;
  o.progress = [&](const workflow::DistillProgress& p) {
    ++calls;
    evals += p.eval != nullptr;
    EXPECT_EQ(p.total, 24);
    EXPECT_GE(p.lr, 0);  // linear warmup from 0, as the HF schedule
  };
  auto r = workflow::distill_qat(*student, *teacher, train, eval, o);
  EXPECT_EQ(calls, 24);
  EXPECT_EQ(evals, 2);
  ASSERT_EQ(r.evals.size(), 3u);  // step 0, 12, 24
  EXPECT_EQ(r.evals[1].step, 12);
  EXPECT_EQ(r.loss.size(), 24u);
  EXPECT_EQ(r.train_sentences, 48);
  EXPECT_EQ(r.eval_sentences, 24);
  // The start is the PTQ model; training must close a clear part of the gap to FP32.
  const double gap_before = 1 - r.before().cosine_mean, gap_after = 1 - r.after().cosine_mean;
  EXPECT_GT(gap_before, 1e-4);
  EXPECT_LT(gap_after, 0.7 * gap_before) << "cosine mean " << r.before().cosine_mean << " -> " << r.after().cosine_mean;
  if (std::getenv("QDQBERT_TEST_DIFFS")) std::printf("distill tiny: gap %.3g -> %.3g\n", gap_before, gap_after);
  // Deterministic for a seed: a second run from the same start gives the same losses bit for bit.
  auto again = teacher_and_student(4);
  o.progress = nullptr;
  auto r2 = workflow::distill_qat(*again.second, *again.first, train, eval, o);
  EXPECT_EQ(r2.loss, r.loss);
}

class DistillRanges : public ::testing::TestWithParam<nn::RangeLearning> {};

TEST_P(DistillRanges, LearnedRangesAreFrozenIntoAmaxAndSaveLikeCalibratedOnes) {
  auto models = teacher_and_student();
  auto teacher = models.first, student = models.second;
  std::map<std::string, double> before;
  for (auto& [n, q] : named_quantizers(student->module())) before[n] = q->amax().max().item<double>();
  workflow::DistillOptions o;
  o.steps = 10;
  o.lr = 1e-3;
  o.amax_lr = 0.05;
  o.learn_amax = true;
  o.range_learning = GetParam();
  o.loss = workflow::DistillLoss::kCosineHidden;
  auto r = workflow::distill_qat(*student, *teacher, qt::random_text_batches(4, 8, 12, 5),
                                 qt::random_text_batches(2, 8, 12, 6), o);
  EXPECT_GT(r.learned_amax_quantizers, 0);
  int64_t moved = 0;
  for (auto& [n, q] : named_quantizers(student->module())) {
    EXPECT_FALSE(q->learns_range()) << n;
    moved += q->amax().max().item<double>() != before[n];
  }
  EXPECT_GT(moved, 0) << "no learned range moved";
  for (const auto& p : student->module().named_parameters()) EXPECT_FALSE(nn::is_range_parameter(p.key())) << p.key();
  // The checkpoint reloads with the learned amax as a plain static amax.
  const fs::path dir = fs::temp_directory_path() / ("qdqbert_distill_" + std::to_string(::getpid()));
  io::save_pretrained(*student, dir.string());
  io::PretrainedOptions po;
  po.strict = true;
  auto back = io::from_pretrained(dir.string(), po);
  back->module().eval();
  auto in = qt::random_text_batches(1, 4, 12, 8)[0];
  EXPECT_TRUE(qt::tensors_equal(back->run(in).last_hidden_state, student->run(in).last_hidden_state, "reloaded"));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(ClipAndLsq, DistillRanges,
                         ::testing::Values(nn::RangeLearning::kClip, nn::RangeLearning::kLsq),
                         [](const auto& info) { return nn::to_string(info.param); });

TEST(Distill, BadInputsAreNamed) {
  auto models = teacher_and_student();
  auto teacher = models.first, student = models.second;
  const auto train = qt::random_text_batches(2, 4, 8, 5), eval = qt::random_text_batches(1, 4, 8, 6);
  workflow::DistillOptions o;
  o.steps = 1;
  o.lr = -1;
  EXPECT_NE(qt::error_message([&] { workflow::distill_qat(*student, *teacher, train, eval, o); }).find("learning rate"),
            std::string::npos);
  o.lr = 1e-3;
  EXPECT_NE(qt::error_message([&] { workflow::distill_qat(*student, *teacher, {}, eval, o); }).find("no training"),
            std::string::npos);
  Config wide = qt::tiny_config();
  wide.hidden_size = 64;
  auto other = create_model("base", wide);
  EXPECT_NE(qt::error_message([&] { workflow::distill_qat(*student, *other, train, eval, o); }).find("hidden_size"),
            std::string::npos);
  auto uncalibrated = create_model("base", qt::tiny_config());
  const std::string e = qt::error_message([&] { workflow::distill_qat(*uncalibrated, *teacher, train, eval, o); });
  EXPECT_NE(e.find("no amax"), std::string::npos) << e;
  EXPECT_NE(qt::error_message([] { workflow::parse_distill_loss("l1"); }).find("cosine+hidden"), std::string::npos);
}

TEST(StagedDirectory, AppearsWholeOrNotAtAll) {
  const fs::path base = fs::temp_directory_path() / ("qdqbert_staged_" + std::to_string(::getpid()));
  fs::remove_all(base);
  {
    io::StagedDirectory d((base / "out").string(), false);
    io::write_file_atomic(d.path() + "/a.txt", "a");
    EXPECT_FALSE(fs::exists(base / "out"));
  }  // no commit: nothing appears, the staging folder is gone
  EXPECT_FALSE(fs::exists(base / "out"));
  EXPECT_TRUE(fs::is_empty(base));
  // A killed run's staging folder (its process gone) is cleaned up by the next run; a live one is kept.
  fs::create_directories(base / ".out.tmp-999999999");
  fs::create_directories(base / (".out.tmp-" + std::to_string(::getppid())));
  { io::StagedDirectory d((base / "out").string(), false); }
  EXPECT_FALSE(fs::exists(base / ".out.tmp-999999999"));
  EXPECT_TRUE(fs::exists(base / (".out.tmp-" + std::to_string(::getppid()))));
  fs::remove_all(base / (".out.tmp-" + std::to_string(::getppid())));
  {
    io::StagedDirectory d((base / "out").string(), false);
    io::write_file_atomic(d.path() + "/a.txt", "first");
    d.commit();
  }
  EXPECT_EQ(slurp(base / "out/a.txt"), "first");
  EXPECT_NE(qt::error_message([&] { io::StagedDirectory((base / "out").string(), false); }).find("already exists"),
            std::string::npos);
  {
    io::StagedDirectory d((base / "out").string(), true);
    io::write_file_atomic(d.path() + "/b.txt", "second");
    d.commit();
  }
  EXPECT_FALSE(fs::exists(base / "out/a.txt"));
  EXPECT_EQ(slurp(base / "out/b.txt"), "second");
  io::write_file_atomic((base / "file").string(), "x");
  EXPECT_NE(qt::error_message([&] { io::StagedDirectory((base / "file/sub").string(), false); }).find("cannot"),
            std::string::npos);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(base)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"file", "out"}));
  fs::remove_all(base);
}

TEST(SvgChart, TicksAndNumbers) {
  const auto u = report::nice_ticks(0, 1, 5);
  ASSERT_EQ(u.size(), 6u);
  for (size_t i = 0; i < u.size(); ++i) EXPECT_NEAR(u[i], 0.2 * static_cast<double>(i), 1e-12);
  const auto t = report::nice_ticks(0.81, 0.995, 6);
  ASSERT_GE(t.size(), 3u);
  EXPECT_GE(t.front(), 0.81);
  EXPECT_LE(t.back(), 0.995 + 1e-12);
  EXPECT_EQ(report::short_number(25000), "25k");
  EXPECT_EQ(report::short_number(1e6), "1M");
  EXPECT_EQ(report::short_number(0.5), "0.5");
  EXPECT_EQ(report::short_number(2e-5), "2e-05");
  EXPECT_EQ(report::escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
}

// Every <text> of a chart starts inside the canvas and, at the estimated advance, ends inside it.
void expect_text_inside(const std::string& svg, double width) {
  const std::regex text("<text x='([-0-9.]+)' y='[-0-9.]+' text-anchor='(start|middle|end)'[^>]*>([^<]*)</text>");
  int n = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), text); it != std::sregex_iterator(); ++it, ++n) {
    const double x = std::stod((*it)[1]);
    const std::string anchor = (*it)[2], s = (*it)[3];
    double chars = 0;
    for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
    const double w = chars * 11 * 0.58;
    const double left = anchor == "start" ? x : anchor == "middle" ? x - w / 2 : x - w;
    EXPECT_GE(left, -0.5) << s;
    EXPECT_LE(left + w, width + 0.5) << s;
  }
  EXPECT_GT(n, 5);
}

TEST(SvgChart, LabelsStayOnTheCanvasAndEveryChartHasAxesAndALegend) {
  report::HistogramChart h;
  h.title = "Where each calibrator puts amax";
  h.x_label = "|x|";
  report::HistogramPanel p;
  p.title = std::string(300, 'q');  // far too long: shortened
  for (int i = 0; i <= 64; ++i) p.edges.push_back(i * 0.5);
  for (int i = 0; i < 64; ++i) p.counts.push_back(i < 8 ? 1e6 : i == 63 ? 3 : 0);
  p.markers = {{"max", report::palette()[0], 32.0},
               {"percentile 99.999", report::palette()[1], 31.9},
               {"entropy", report::palette()[2], 4.0}};
  h.panels = {p};
  const std::string svg = report::render(h);
  expect_text_inside(svg, h.width);
  EXPECT_NE(svg.find("\xE2\x80\xA6"), std::string::npos) << "the long title is shortened";
  EXPECT_NE(svg.find("percentile 99.999 31.9"), std::string::npos) << "markers are listed with their values";
  EXPECT_NE(svg.find("count (log)"), std::string::npos);
  report::BarChart b;
  b.title = "Cost";
  b.value.label = "1 - cosine";
  b.bars = {{"layer 0 residual adds", 0.049, "", ""}, {"a", 1e-6, "", ""}};
  b.legend = {{"residual adds", report::palette()[0]}};
  expect_text_inside(report::render(b), b.width);
  report::LineChart l;
  l.title = "Loss";
  l.x.label = "step";
  l.y.label = "loss";
  l.y.log = true;
  l.y2.label = "cosine";
  report::Series s1{"loss", report::palette()[0], {1, 2, 3}, {0.1, 0.05, 0.01}, false, false};
  report::Series s2{"cosine p5", report::palette()[1], {0, 3}, {0.8, 0.95}, true, true};
  l.series = {s1, s2};
  const std::string line = report::render(l);
  expect_text_inside(line, l.width);
  EXPECT_NE(line.find("cosine p5 (right axis)"), std::string::npos);
  // rsvg-convert (librsvg2-bin, installed by .ci/run) renders each chart.
  const fs::path dir = fs::temp_directory_path() / ("qdqbert_svg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int i = 0;
  for (const std::string& doc : {svg, report::render(b), line}) {
    const fs::path f = dir / ("c" + std::to_string(i++) + ".svg");
    io::write_file_atomic(f.string(), doc);
    const std::string cmd = "rsvg-convert -o " + (dir / "out.png").string() + " " + f.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_GT(fs::file_size(dir / "out.png"), 1000u);
  }
  fs::remove_all(dir);
}
