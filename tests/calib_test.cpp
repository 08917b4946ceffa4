// MaxCalibrator / HistogramCalibrator parity with the max_* and hist_* fixtures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "qdqbert/calib/calibrator.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert::calib;

static std::vector<int64_t> axis_of(const nlohmann::json& a) {
  if (a.is_null()) return {};
  if (a.is_number_integer()) return {a.get<int64_t>()};
  return a.get<std::vector<int64_t>>();
}

class MaxCalibFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MaxCalibFixture, MatchesReference) {
  const std::string dir = "quant/" + GetParam();
  const auto c = qt::read_json(qt::data_path(dir + "/case.json"))["calibrator"];
  auto in = qdqbert::io::load_safetensors(qt::data_path(dir + "/inputs.safetensors"));
  auto ex = qdqbert::io::load_safetensors(qt::data_path(dir + "/expected.safetensors"));
  MaxCalibrator cal(c["num_bits"], axis_of(c["axis"]), c["unsigned"], c["track_amax"]);
  EXPECT_FALSE(cal.compute_amax().defined());
  for (int k = 0; in.count("batch" + std::to_string(k)); ++k) cal.collect(in["batch" + std::to_string(k)]);
  EXPECT_TRUE(qt::tensors_equal(cal.compute_amax(), ex["amax"], "amax"));
  for (size_t k = 0; k < cal.amaxs().size(); ++k) {
    EXPECT_TRUE(qt::tensors_equal(cal.amaxs()[k], ex.at("amaxs_" + std::to_string(k)), "amaxs"));
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, MaxCalibFixture, ::testing::ValuesIn(qt::case_names("quant", "max_")),
                         [](const auto& info) { return info.param; });

class HistCalibFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(HistCalibFixture, MatchesReference) {
  const std::string dir = "quant/" + GetParam();
  const auto c = qt::read_json(qt::data_path(dir + "/case.json"));
  const auto& cc = c["calibrator"];
  auto in = qdqbert::io::load_safetensors(qt::data_path(dir + "/inputs.safetensors"));
  auto ex = qdqbert::io::load_safetensors(qt::data_path(dir + "/expected.safetensors"));
  HistogramCalibrator cal(cc["num_bits"], {}, cc["unsigned"], cc["num_bins"], cc["skip_zeros"]);
  for (int k = 0; in.count("batch" + std::to_string(k)); ++k) {
    cal.collect(in["batch" + std::to_string(k)]);
    EXPECT_EQ(static_cast<int64_t>(cal.hist().size()), ex.at("after_batch" + std::to_string(k) + "_nbins").item<int64_t>())
        << "bins after batch " << k;
  }
  at::Tensor hist = torch::tensor(cal.hist(), at::kLong);
  at::Tensor edges = torch::tensor(cal.bin_edges(), at::kDouble);
  EXPECT_TRUE(qt::tensors_equal(hist, ex["calib_hist"], "calib_hist"));
  EXPECT_TRUE(qt::tensors_equal(edges, ex["calib_bin_edges"], "calib_bin_edges"));
  const double rtol = c["rtol"];
  for (const auto& m : c["methods"]) {
    const std::string key = m["key"];
    if (key == "demo_*") continue;
    ComputeAmaxOptions o;
    const auto& kw = m["kwargs"];
    if (kw.contains("percentile")) o.percentile = kw["percentile"];
    if (kw.contains("start_bin")) o.start_bin = kw["start_bin"];
    if (kw.contains("stride")) o.stride = kw["stride"];
    auto fresh = cal.clone();  // the reference uses a fresh deep copy per method
    EXPECT_TRUE(qt::tensors_close(fresh->compute_amax(m["method"], o), ex.at(key), rtol, 0.0, key));
  }
  if (ex.count("demo_entropy_first")) {
    auto demo = cal.clone();
    ComputeAmaxOptions o;
    o.start_bin = std::min<int64_t>(128, static_cast<int64_t>(cal.hist().size()) / 2);
    EXPECT_TRUE(qt::tensors_close(demo->compute_amax("entropy", o), ex["demo_entropy_first"], rtol, 0, "demo entropy"));
    auto* h = dynamic_cast<HistogramCalibrator*>(demo.get());
    EXPECT_TRUE(qt::tensors_equal(torch::tensor(h->hist(), at::kLong), ex["calib_hist_after_entropy"],
                                  "histogram after entropy (hist[0] overwritten in place)"));
    ComputeAmaxOptions p;
    p.percentile = 99.0;
    EXPECT_TRUE(qt::tensors_close(demo->compute_amax("percentile", p), ex["demo_percentile99_after_entropy"], rtol, 0,
                                  "percentile after entropy"));
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, HistCalibFixture, ::testing::ValuesIn(qt::case_names("quant", "hist_")),
                         [](const auto& info) { return info.param; });

TEST(HistogramCalibrator, EntropyCanPreserveTheHistogram) {
  torch::manual_seed(0);
  HistogramCalibrator cal;
  cal.collect(torch::randn({4096}));
  const auto before = cal.hist();
  cal.entropy_preserves_histogram = true;
  cal.compute_amax("entropy");
  EXPECT_EQ(cal.hist(), before);
}

TEST(HistogramCalibrator, EntropyAndMseAreFastOn2048Bins) {
  torch::manual_seed(0);
  HistogramCalibrator cal;
  cal.collect(torch::randn({1 << 18}));
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor e = cal.compute_amax("entropy");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(e.item<float>(), 0.f);
  // Functional bound only (the reference's NumPy loops take seconds); timings live in bench/.
  EXPECT_LT(secs, 5.0);
}

TEST(Calibrators, BadInputs) {
  EXPECT_THROW(HistogramCalibrator(8, {0}), c10::Error);
  HistogramCalibrator h;
  EXPECT_FALSE(h.compute_amax("percentile").defined());
  h.collect(torch::randn({100}));
  EXPECT_THROW(h.compute_amax("kl"), c10::Error);
  ComputeAmaxOptions o;
  o.percentile = 101;
  EXPECT_THROW(h.compute_amax("percentile", o), c10::Error);
  EXPECT_THROW(h.collect(torch::tensor({1.f, INFINITY})), c10::Error);
  MaxCalibrator m(8, {0});
  m.collect(torch::randn({3, 4}));
  EXPECT_THROW(m.collect(torch::randn({5, 4})), c10::Error);
}
