// fake_tensor_quant / tensor_quant: parity with the reference fixtures (bit for bit) and edge cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qdqbert/ops/fake_quant.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using qdqbert::ops::fake_tensor_quant;
using qdqbert::ops::tensor_quant;

class FakeQuantFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(FakeQuantFixture, MatchesReferenceBitForBit) {
  const std::string dir = "quant/" + GetParam();
  const auto c = qt::read_json(qt::data_path(dir + "/case.json"));
  auto in = qdqbert::io::load_safetensors(qt::data_path(dir + "/inputs.safetensors"));
  auto ex = qdqbert::io::load_safetensors(qt::data_path(dir + "/expected.safetensors"));
  const int64_t bits = c["num_bits"];
  const bool uns = c["unsigned"], narrow = c["narrow_range"];

  at::Tensor x = in["x"].clone().requires_grad_(true);
  at::Tensor y = fake_tensor_quant(x, in["amax"], bits, uns, narrow);
  EXPECT_TRUE(qt::tensors_equal(y, ex["fake_quant"], "fake_quant"));
  y.backward(in["grad_output"]);
  EXPECT_TRUE(qt::tensors_equal(x.grad(), ex["grad_input"], "grad_input"));

  at::Tensor x2 = in["x"].clone().requires_grad_(true);
  auto [q, scale] = tensor_quant(x2, in["amax"], bits, uns, narrow);
  EXPECT_TRUE(qt::tensors_equal(q, ex["tensor_quant_outputs"], "tensor_quant outputs"));
  EXPECT_TRUE(qt::tensors_equal(scale, ex["tensor_quant_scale"], "tensor_quant scale"));
  q.backward(in["grad_output"]);
  EXPECT_TRUE(qt::tensors_equal(x2.grad(), ex["tensor_quant_grad_input"], "tensor_quant grad_input"));

  // Without autograd the same numbers come from the direct path.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(in["x"], in["amax"], bits, uns, narrow), ex["fake_quant"],
                                "fake_quant (no grad)"));
}

INSTANTIATE_TEST_SUITE_P(Reference, FakeQuantFixture, ::testing::ValuesIn(qt::case_names("quant", "fq_")),
                         [](const auto& info) { return info.param; });

TEST(FakeQuant, Bounds) {
  EXPECT_EQ(qdqbert::ops::max_bound(8, false), 127);
  EXPECT_EQ(qdqbert::ops::max_bound(8, true), 255);
  EXPECT_EQ(qdqbert::ops::max_bound(4, false), 7);
  EXPECT_EQ(qdqbert::ops::min_bound(8, false, false), -128);
  EXPECT_EQ(qdqbert::ops::min_bound(8, false, true), -127);
  EXPECT_EQ(qdqbert::ops::min_bound(8, true, true), 0);
}

TEST(FakeQuant, TiesRoundHalfToEvenAndSignedZero) {
  // amax = 127 -> scale exactly 1.
  at::Tensor x = torch::tensor({-2.5f, -1.5f, -0.5f, -0.3f, 0.5f, 1.5f, 2.5f, 126.5f, 200.f, -200.f});
  at::Tensor y = fake_tensor_quant(x, torch::tensor(127.f), 8, false, false);
  at::Tensor expect = torch::tensor({-2.f, -2.f, -0.f, -0.f, 0.f, 2.f, 2.f, 126.f, 127.f, -128.f});
  EXPECT_TRUE(qt::tensors_equal(y, expect, "ties"));
  EXPECT_TRUE(std::signbit(y[3].item<float>())) << "round(-0.3) must stay -0.0 as torch.round does";
  at::Tensor yn = fake_tensor_quant(x, torch::tensor(127.f), 8, false, true);
  EXPECT_EQ(yn[9].item<float>(), -127.f);
}

TEST(FakeQuant, MatchesCompositeFormulaOnLargeTensors) {
  torch::manual_seed(0);
  at::Tensor x = torch::randn({37, 129, 65}) * 3;
  for (auto amax : {torch::tensor(2.5f), torch::rand({37, 1, 1}) * 4, torch::rand({1, 1, 65}) * 4,
                    torch::rand({37, 1, 65}) * 4, torch::rand({129, 1}) * 4}) {
    for (bool narrow : {false, true}) {
      at::Tensor scale = 127.f / amax;
      at::Tensor ref = at::clamp(at::round(x * scale), narrow ? -127 : -128, 127) / scale;
      EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(x, amax, 8, false, narrow), ref,
                                    "amax shape " + c10::str(amax.sizes())));
    }
  }
}

TEST(FakeQuant, ZeroAndTinyAmaxGiveZeros) {
  at::Tensor x = torch::randn({4, 5});
  at::Tensor amax = torch::tensor({0.f, 1e-9f, 1.f / (1 << 24), 1.f}).reshape({4, 1});
  at::Tensor y = fake_tensor_quant(x, amax, 8, false, false);
  EXPECT_TRUE(y.slice(0, 0, 3).eq(0).all().item<bool>());
  EXPECT_FALSE(y.slice(0, 3).isnan().any().item<bool>());
  auto [q, scale] = tensor_quant(x, amax, 8, false, false);
  EXPECT_EQ(scale[0][0].item<float>(), 1.f) << "scale reported as 1 where amax <= 2^-24";
  EXPECT_EQ(scale[3][0].item<float>(), 127.f);
}

TEST(FakeQuant, BadInputsAreClearErrors) {
  at::Tensor x = torch::randn({3, 4});
  EXPECT_THROW(
      {
        try {
          fake_tensor_quant(x, torch::tensor(-1.f));
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("negative values in amax"), std::string::npos) << e.what();
          throw;
        }
      },
      c10::Error);
  EXPECT_THROW(fake_tensor_quant(x, torch::tensor(NAN)), c10::Error);
  EXPECT_THROW(fake_tensor_quant(x, torch::ones({5})), c10::Error);      // does not broadcast
  EXPECT_THROW(fake_tensor_quant(x, torch::ones({2, 3, 4})), c10::Error);  // too many dims
  EXPECT_THROW(fake_tensor_quant(x, torch::tensor(1.f), 8, /*unsigned=*/true), c10::Error);
  EXPECT_THROW(fake_tensor_quant(x, torch::tensor(1.f), 40), c10::Error);
  EXPECT_THROW(fake_tensor_quant(x.to(at::kInt), torch::tensor(1.f)), c10::Error);
  EXPECT_THROW(fake_tensor_quant(x, at::Tensor()), c10::Error);
}

TEST(FakeQuant, HalfAndBFloat16ComputeInFloat32) {
  torch::manual_seed(1);
  at::Tensor x = torch::randn({64}) * 2;
  for (auto dt : {at::kHalf, at::kBFloat16}) {
    at::Tensor xh = x.to(dt);
    at::Tensor y = fake_tensor_quant(xh, torch::tensor(3.f), 8, false, false);
    EXPECT_EQ(y.scalar_type(), dt);
    at::Tensor ref = fake_tensor_quant(xh.to(at::kFloat), torch::tensor(3.f), 8, false, false).to(dt);
    EXPECT_TRUE(qt::tensors_equal(y, ref, "low precision"));
  }
}

TEST(FakeQuant, DoubleUsesTheCompositeFormula) {
  at::Tensor x = torch::randn({10}, at::kDouble);
  at::Tensor y = fake_tensor_quant(x, torch::tensor(1.5f), 8, false, false);
  EXPECT_EQ(y.scalar_type(), at::kDouble);
  at::Tensor s = (127.f / torch::tensor(1.5f)).to(at::kDouble);
  EXPECT_TRUE(qt::tensors_equal(y, at::clamp(at::round(x * s), -128, 127) / s, "double"));
}

TEST(FakeQuant, StridedInputsMatchContiguous) {
  torch::manual_seed(4);
  at::Tensor base = torch::randn({2, 5, 3, 4}) * 2;
  const at::Tensor amax = torch::tensor(1.7f);
  // Dense permuted views are quantized in memory order and keep their strides.
  for (const at::Tensor& v : {base.permute({0, 2, 1, 3}), base.transpose(-1, -2), base.permute({3, 1, 0, 2})}) {
    at::Tensor y = fake_tensor_quant(v, amax);
    EXPECT_TRUE(qt::tensors_equal(y, fake_tensor_quant(v.contiguous(), amax), "permuted view"));
    EXPECT_EQ(y.strides(), v.strides());
  }
  // Views with holes, and per-channel amax on a permuted view, go through a contiguous copy.
  at::Tensor holes = base.slice(1, 0, 5, 2);
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(holes, amax), fake_tensor_quant(holes.contiguous(), amax), "holes"));
  at::Tensor per_channel = torch::rand({1, 1, 5, 1}) + 0.5;
  at::Tensor pv = base.permute({0, 2, 1, 3});
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(pv, per_channel), fake_tensor_quant(pv.contiguous(), per_channel),
                                "per-channel permuted"));
}

TEST(FakeQuant, PreparedAmaxIsBitIdentical) {
  using qdqbert::ops::prepare_amax;
  torch::manual_seed(3);
  at::Tensor x = torch::randn({4, 6, 8}) * 3;
  struct Case {
    at::Tensor amax;
    int64_t bits;
    bool is_unsigned, narrow;
  };
  const std::vector<Case> cases = {{torch::tensor(2.5f), 8, false, true},
                                   {torch::tensor(2.5, at::kDouble), 8, false, false},
                                   {torch::rand({1, 1, 8}) * 4, 8, false, false},
                                   {torch::rand({4, 1, 1}) * 4, 4, false, true},
                                   {torch::tensor({0.f, 1e-9f, 1.f, 2.f, 3.f, 4.f}).reshape({6, 1}), 8, false, false}};
  for (const auto& c : cases) {
    const auto p = prepare_amax(c.amax, x.device(), c.bits, c.is_unsigned, c.narrow);
    EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(x, p),
                                  fake_tensor_quant(x, c.amax, c.bits, c.is_unsigned, c.narrow), "prepared"))
        << c.amax.sizes();
  }
  const auto u = prepare_amax(torch::tensor(2.f), x.device(), 8, /*unsigned=*/true, false);
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(x.abs(), u),
                                fake_tensor_quant(x.abs(), torch::tensor(2.f), 8, true, false), "unsigned"));
  EXPECT_NE(qt::error_message([&] { fake_tensor_quant(x, u); }).find("negative values encountered"), std::string::npos);
  const auto half = prepare_amax(torch::tensor(2.f), x.device());
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(x.to(at::kHalf), half),
                                fake_tensor_quant(x.to(at::kHalf), torch::tensor(2.f)), "half"));
  EXPECT_TRUE(qt::tensors_equal(fake_tensor_quant(x.to(at::kDouble), half),
                                fake_tensor_quant(x.to(at::kDouble), torch::tensor(2.f)), "double"));
  // The amax is validated once, when prepared; the input on every call.
  EXPECT_NE(qt::error_message([&] { prepare_amax(torch::tensor(NAN), x.device()); }).find("NaN"), std::string::npos);
  EXPECT_NE(qt::error_message([&] { prepare_amax(torch::tensor(-1.f), x.device()); }).find("negative values in amax"),
            std::string::npos);
  const auto per_row = prepare_amax(torch::ones({5, 1}), x.device());
  EXPECT_NE(qt::error_message([&] { fake_tensor_quant(x, per_row); }).find("does not broadcast"), std::string::npos);
  EXPECT_NE(
      qt::error_message([&] { fake_tensor_quant(x, qdqbert::ops::PreparedAmax{}); }).find("PreparedAmax is empty"),
      std::string::npos);
  EXPECT_NE(qt::error_message([&] { fake_tensor_quant(x.to(at::kInt), half); }).find("must be float"),
            std::string::npos);
  // Differentiable like the unprepared op.
  at::Tensor g = torch::tensor({-3.f, -1.f, 0.f, 1.f, 3.f}).requires_grad_(true);
  fake_tensor_quant(g, prepare_amax(torch::tensor(2.f), g.device())).sum().backward();
  EXPECT_TRUE(qt::tensors_equal(g.grad(), torch::tensor({0.f, 1.f, 1.f, 1.f, 0.f}), "prepared ste"));
}

// Bit for bit, signed zeros included (float32 compared as its int32 bit patterns).
static ::testing::AssertionResult same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << a.sizes() << " vs " << b.sizes();
  const at::Tensor ai = a.contiguous().view(at::kInt), bi = b.contiguous().view(at::kInt);
  if (torch::equal(ai, bi)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << (ai != bi).sum().item<int64_t>() << " elements differ";
}

// The residual add's fused kernel against the two quantizations and the add it replaces.
TEST(FakeQuant, FusedQuantizeAddIsBitIdenticalToTheUnfusedPath) {
  using qdqbert::ops::fake_quant_add;
  using qdqbert::ops::prepare_amax;
  torch::manual_seed(11);
  // Large enough for several parallel chunks and a tail that is not a multiple of the vector width.
  at::Tensor a = torch::randn({3, 129, 385}) * 4, b = torch::randn({3, 129, 385}) * 40;
  a.index_put_({0, 0, torch::indexing::Slice(0, 4)}, torch::tensor({0.f, -0.f, 1e30f, -1e30f}));
  struct Case {
    float amax_a, amax_b;
    int64_t bits_a, bits_b;
    bool narrow_a, narrow_b;
  };
  const std::vector<Case> cases = {{2.5f, 190.f, 8, 8, true, true},  // outliers clipped on both sides
                                   {7.f, 3.f, 8, 4, false, true},     // different widths and ranges
                                   {0.f, 1e-9f, 8, 8, true, false},   // amax <= 2^-24: zeros
                                   {1e-3f, 1e6f, 16, 2, true, false}};
  for (const auto& c : cases) {
    const auto pa = prepare_amax(torch::tensor(c.amax_a), a.device(), c.bits_a, false, c.narrow_a);
    const auto pb = prepare_amax(torch::tensor(c.amax_b), b.device(), c.bits_b, false, c.narrow_b);
    const at::Tensor unfused = fake_tensor_quant(a, pa) + fake_tensor_quant(b, pb);
    EXPECT_TRUE(same_bits(fake_quant_add(a, pa, b, pb), unfused)) << c.amax_a << " " << c.amax_b;
    // A dense permuted view (one memory order for both) is quantized in place of its order.
    const at::Tensor at = a.transpose(1, 2), bt = b.transpose(1, 2);
    EXPECT_TRUE(same_bits(fake_quant_add(at, pa, bt, pb), unfused.transpose(1, 2)));
    // Different memory orders, a per-channel amax, or double: the unfused path, same numbers.
    EXPECT_TRUE(same_bits(fake_quant_add(at, pa, bt.contiguous(), pb), unfused.transpose(1, 2)));
  }
  const auto pa = prepare_amax(torch::tensor(3.f), a.device());
  const auto per_channel = prepare_amax(torch::rand({385}) * 5 + 1, b.device());
  EXPECT_TRUE(same_bits(fake_quant_add(a, pa, b, per_channel), fake_tensor_quant(a, pa) + fake_tensor_quant(b, per_channel)));
  // Inputs that require grad take the differentiable path: the straight-through gradient reaches both.
  at::Tensor ga = a.clone().requires_grad_(true), gb = b.clone().requires_grad_(true);
  const auto pb = prepare_amax(torch::tensor(50.f), b.device());
  const at::Tensor y = fake_quant_add(ga, pa, gb, pb);
  EXPECT_TRUE(same_bits(y.detach(), fake_tensor_quant(a, pa) + fake_tensor_quant(b, pb)));
  y.sum().backward();
  EXPECT_TRUE(same_bits(ga.grad(), (a.abs() <= 3.f).to(at::kFloat)));
  EXPECT_TRUE(same_bits(gb.grad(), (b.abs() <= 50.f).to(at::kFloat)));
  // Bad input is the unfused path's error.
  EXPECT_NE(qt::error_message([&] { fake_quant_add(a, pa, b.narrow(2, 0, 10), pb); }).find("size"), std::string::npos);
}

TEST(FakeQuant, SameQuantizationComparesEveryParameter) {
  using qdqbert::ops::prepare_amax;
  using qdqbert::ops::same_quantization;
  const c10::Device cpu(c10::kCPU);
  const auto p = prepare_amax(torch::tensor(2.5f), cpu);
  EXPECT_TRUE(same_quantization(p, prepare_amax(torch::tensor(2.5, at::kDouble), cpu)));
  EXPECT_FALSE(same_quantization(p, prepare_amax(torch::tensor(2.5000002f), cpu)));
  EXPECT_FALSE(same_quantization(p, prepare_amax(torch::tensor(2.5f), cpu, 7)));
  EXPECT_FALSE(same_quantization(p, prepare_amax(torch::tensor(2.5f), cpu, 8, true)));
  EXPECT_FALSE(same_quantization(p, prepare_amax(torch::tensor(2.5f), cpu, 8, false, false)));
  EXPECT_FALSE(same_quantization(p, prepare_amax(torch::full({1, 4}, 2.5f), cpu)));
  const auto rows = prepare_amax(torch::tensor({1.f, 2.f}).reshape({2, 1}), cpu);
  EXPECT_TRUE(same_quantization(rows, prepare_amax(torch::tensor({1.f, 2.f}).reshape({2, 1}), cpu)));
  EXPECT_FALSE(same_quantization(rows, prepare_amax(torch::tensor({1.f, 3.f}).reshape({2, 1}), cpu)));
}

TEST(FakeQuant, GradientIsClippedStraightThrough) {
  at::Tensor x = torch::tensor({-3.f, -2.f, -1.f, 0.f, 1.f, 2.f, 3.f}).requires_grad_(true);
  fake_tensor_quant(x, torch::tensor(2.f)).sum().backward();
  EXPECT_TRUE(qt::tensors_equal(x.grad(), torch::tensor({0.f, 1.f, 1.f, 1.f, 1.f, 1.f, 0.f}), "ste"));
}

// The learned-step-size op: forward bit-identical to fake_tensor_quant, x's gradient the same
// straight-through one, and amax's gradient the derivative of the composite formula
// clamp(round(x * b / a), lo, hi) * a / b with round passed straight through, computed by autograd in double.
TEST(FakeQuant, LearnedAmaxGradientIsTheDerivativeOfTheOutput) {
  torch::manual_seed(11);
  for (const bool narrow : {true, false}) {
    for (const bool is_unsigned : {false, true}) {
      for (const int64_t bits : {4, 8}) {
        at::Tensor x0 = torch::randn({4, 257}) * 3;
        if (is_unsigned) x0 = x0.abs();
        const float a0 = 2.5f;
        const std::string what = "bits " + std::to_string(bits) + (narrow ? " narrow" : "") + (is_unsigned ? " unsigned" : "");
        at::Tensor x = x0.clone().requires_grad_(true);
        at::Tensor a = torch::tensor(a0).requires_grad_(true);
        at::Tensor w = torch::randn({4, 257});  // a non-uniform upstream gradient
        at::Tensor y = qdqbert::ops::fake_tensor_quant_learned(x, a, bits, is_unsigned, narrow, /*grad_scale=*/0.5);
        EXPECT_TRUE(qt::tensors_equal(y, fake_tensor_quant(x0, torch::tensor(a0), bits, is_unsigned, narrow), what + " forward"));
        (y * w).sum().backward();
        at::Tensor xs = x0.clone().requires_grad_(true);
        fake_tensor_quant(xs, torch::tensor(a0), bits, is_unsigned, narrow).mul(w).sum().backward();
        EXPECT_TRUE(qt::tensors_equal(x.grad(), xs.grad(), what + " x gradient"));

        const double hi = qdqbert::ops::max_bound(bits, is_unsigned);
        const double lo = qdqbert::ops::min_bound(bits, is_unsigned, narrow);
        at::Tensor ad = torch::tensor(static_cast<double>(a0), torch::kDouble).requires_grad_(true);
        at::Tensor u = x0.to(torch::kDouble) * hi / ad;
        at::Tensor r = u + (torch::round(u) - u).detach();
        (torch::clamp(r, lo, hi) * ad / hi * w.to(torch::kDouble)).sum().backward();
        const double expected = 0.5 * ad.grad().item<double>();
        EXPECT_NEAR(a.grad().item<double>(), expected, 1e-5 * (1 + std::abs(expected))) << what;
      }
    }
  }
}

TEST(FakeQuant, LearnedAmaxTradesClippingAgainstRounding) {
  // Values far inside a wide range: the gradient of the squared error asks for a smaller range (finer
  // steps); values far outside a narrow range ask for a larger one.
  at::Tensor x = torch::linspace(-1, 1, 1001);
  auto grad_of_error = [&](float amax) {
    at::Tensor a = torch::tensor(amax).requires_grad_(true);
    (qdqbert::ops::fake_tensor_quant_learned(x, a, 4, false, true) - x).pow(2).sum().backward();
    return a.grad().item<double>();
  };
  EXPECT_GT(grad_of_error(50.f), 0) << "too wide: shrink";
  EXPECT_LT(grad_of_error(0.2f), 0) << "too narrow: grow";
  // Errors: a per-channel amax, an undefined one.
  EXPECT_NE(qt::error_message([&] { qdqbert::ops::fake_tensor_quant_learned(x, torch::ones({2}), 8); }).find("per tensor"),
            std::string::npos);
  EXPECT_NE(qt::error_message([&] { qdqbert::ops::fake_tensor_quant_learned(x, at::Tensor(), 8); }).find("undefined"),
            std::string::npos);
  // Zero amax: zeros out, no gradient for the range.
  at::Tensor z = torch::tensor(0.f).requires_grad_(true);
  at::Tensor xz = x.clone().requires_grad_(true);
  EXPECT_EQ(qdqbert::ops::fake_tensor_quant_learned(xz, z, 8).abs().sum().item<float>(), 0.f);
  qdqbert::ops::fake_tensor_quant_learned(xz, z, 8).sum().backward();
  EXPECT_EQ(z.grad().item<float>(), 0.f);
}

// The fused CPU backward against the composite formula where(|x| <= amax, grad, 0): per-tensor and
// per-channel amax, a permuted (non-contiguous) input as the attention heads give, a non-contiguous
// upstream gradient, and half precision (the composite path).
TEST(FakeQuant, FusedStraightThroughBackwardMatchesTheComposite) {
  torch::manual_seed(5);
  auto check = [](const at::Tensor& x0, const at::Tensor& amax, const at::Tensor& w, const std::string& what) {
    at::Tensor x = x0.detach().clone().requires_grad_(true);
    at::Tensor xv = x0.dim() == 4 ? x.permute({0, 2, 1, 3}) : x;  // a view, as the attention heads are
    fake_tensor_quant(xv, amax).mul(w).sum().backward();
    at::Tensor ref = at::where(xv.detach().abs() <= amax.to(xv.scalar_type()), w.to(xv.scalar_type()),
                               at::zeros({}, xv.options()));
    if (x0.dim() == 4) ref = ref.permute({0, 2, 1, 3});
    EXPECT_TRUE(qt::tensors_equal(x.grad(), ref, what));
  };
  check(torch::randn({2, 6, 3, 8}) * 2, torch::tensor(1.5f), torch::randn({2, 3, 6, 8}), "per-tensor, permuted view");
  check(torch::randn({5, 40}) * 2, torch::rand({5, 1}) + 0.5, torch::randn({5, 40}), "per-row amax");
  check(torch::randn({40, 5}) * 2, torch::rand({5}) + 0.5, torch::randn({5, 40}).t(), "per-column amax, strided grad");
  check((torch::randn({3, 50}) * 2).to(torch::kHalf), torch::tensor(1.0f), torch::randn({3, 50}).to(torch::kHalf), "half");
  // The learned-step-size backward on a permuted view: the same x gradient.
  at::Tensor x = (torch::randn({2, 6, 3, 8}) * 2).requires_grad_(true);
  at::Tensor a = torch::tensor(1.5f).requires_grad_(true);
  at::Tensor w = torch::randn({2, 3, 6, 8});
  qdqbert::ops::fake_tensor_quant_learned(x.permute({0, 2, 1, 3}), a, 8, false, false).mul(w).sum().backward();
  at::Tensor ref = at::where(x.detach().permute({0, 2, 1, 3}).abs() <= 1.5f, w, at::zeros({})).permute({0, 2, 1, 3});
  EXPECT_TRUE(qt::tensors_equal(x.grad(), ref, "learned, permuted view"));
}

TEST(FakeQuant, AmaxAlongAxisAndReduceAmax) {
  at::Tensor a = torch::tensor({1.f, 2.f, 3.f});
  EXPECT_EQ(qdqbert::ops::amax_along_axis(a, 0, 3).sizes(), (std::vector<int64_t>{3, 1, 1}));
  EXPECT_EQ(qdqbert::ops::amax_along_axis(a, -1, 3).sizes(), (std::vector<int64_t>{1, 1, 3}));
  at::Tensor x = torch::randn({3, 4, 5});
  at::Tensor x2 = x * 0;
  x2.index_put_({1, 2, 3}, -7.f);
  EXPECT_EQ(qdqbert::ops::reduce_amax_keep(x2, {}).item<float>(), 7.f);
  EXPECT_EQ(qdqbert::ops::reduce_amax_keep(x2, {1}).sizes(), (std::vector<int64_t>{1, 4, 1}));
  EXPECT_EQ(qdqbert::ops::reduce_amax_keep(x2, {0, 2}).sizes(), (std::vector<int64_t>{3, 1, 5}));
  // Per-channel along an axis given with a negative index.
  at::Tensor x3 = torch::randn({2, 4, 3});
  at::Tensor y = fake_tensor_quant(x3, qdqbert::ops::amax_along_axis(a, -1, 3), 8, false, false);
  EXPECT_TRUE(qt::tensors_equal(y.select(2, 1), fake_tensor_quant(x3.select(2, 1), a[1], 8, false, false), "axis -1"));
}

TEST(FakeQuant, ReduceAmaxKeepNegativeAxesMatchNoDim) {
  // The keep-axes form reproduces the reference callers: a negative axis matches no dimension.
  at::Tensor x = torch::randn({3, 4, 5});
  at::Tensor r = qdqbert::ops::reduce_amax_keep(x, {-1});
  EXPECT_EQ(r.dim(), 0);
  EXPECT_TRUE(qt::tensors_equal(r, x.abs().max(), "keep {-1}"));
  EXPECT_TRUE(qt::tensors_equal(qdqbert::ops::reduce_amax_keep(x, {0}), x.abs().amax({1, 2}, true), "keep {0}"));
  EXPECT_TRUE(qt::tensors_equal(qdqbert::ops::reduce_amax_keep(x, {0, 1, 2}), x.abs(), "keep all"));
}

// Python `quant_utils.reduce_amax(input, axis, keepdims)`: `axis` lists the dims to REDUCE.
TEST(FakeQuant, ReduceAmaxPythonSemantics) {
  using qdqbert::ops::reduce_amax;
  using Shape = std::vector<int64_t>;
  torch::manual_seed(0);
  at::Tensor x = torch::randn({3, 4, 5});
  x.index_put_({1, 2, 3}, -7.f);
  at::Tensor ax = x.abs();
  // axis=None: every dim, 0-d whatever keepdims says.
  EXPECT_EQ(reduce_amax(x).dim(), 0);
  EXPECT_EQ(reduce_amax(x).item<float>(), 7.f);
  EXPECT_EQ(reduce_amax(x, std::nullopt, false).dim(), 0);
  // One axis, positive and negative.
  EXPECT_EQ(reduce_amax(x, Shape{1}).sizes(), (Shape{3, 1, 5}));
  EXPECT_TRUE(qt::tensors_equal(reduce_amax(x, Shape{1}), ax.amax({1}, true), "axis 1"));
  EXPECT_TRUE(qt::tensors_equal(reduce_amax(x, Shape{-1}), ax.amax({2}, true), "axis -1"));
  EXPECT_TRUE(qt::tensors_equal(reduce_amax(x, Shape{-3}), ax.amax({0}, true), "axis -3"));
  // Several axes, mixed signs; keepdims false drops them.
  EXPECT_EQ(reduce_amax(x, Shape{0, -1}).sizes(), (Shape{1, 4, 1}));
  EXPECT_TRUE(qt::tensors_equal(reduce_amax(x, Shape{0, -1}, false), ax.amax({0, 2}, false), "axes 0,-1 no keepdims"));
  EXPECT_EQ(reduce_amax(x, Shape{1}, false).sizes(), (Shape{3, 5}));
  // All axes: a one-element result is squeezed to 0-d even with keepdims.
  for (bool keep : {true, false}) {
    at::Tensor all = reduce_amax(x, Shape{0, 1, 2}, keep);
    EXPECT_EQ(all.dim(), 0) << keep;
    EXPECT_EQ(all.item<float>(), 7.f) << keep;
  }
  // No axes: |x| unchanged.
  EXPECT_TRUE(qt::tensors_equal(reduce_amax(x, Shape{}), ax, "no axes"));
  // The reference's squeeze_() also drops size-1 dims that were not reduced when keepdims is false.
  at::Tensor y = torch::randn({1, 4, 5});
  EXPECT_EQ(reduce_amax(y, Shape{2}, false).sizes(), (Shape{4}));
  EXPECT_EQ(reduce_amax(y, Shape{2}, true).sizes(), (Shape{1, 4, 1}));
  // No gradient flows.
  at::Tensor g = torch::randn({2, 3}).requires_grad_(true);
  EXPECT_FALSE(reduce_amax(g, Shape{1}).requires_grad());
  // Errors name the offending value.
  for (int64_t bad : {3, -4}) {
    try {
      reduce_amax(x, Shape{bad});
      ADD_FAILURE() << "axis " << bad << " accepted";
    } catch (const c10::IndexError& e) {
      EXPECT_NE(std::string(e.what()).find("axis " + std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  try {
    reduce_amax(x, Shape{0, 1, 2, 0});
    ADD_FAILURE() << "four axes of a 3-d tensor accepted";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("more axes"), std::string::npos) << e.what();
  }
}

TEST(FakeQuant, TorchNativeModeIsFullRange) {
  at::Tensor x = torch::linspace(-3, 3, 61);
  at::Tensor y = qdqbert::ops::fake_quant_torch_native(x, torch::tensor(2.f), 8, false);
  const double s = 2.0 / 127.0;
  EXPECT_TRUE(qt::tensors_close(y, at::fake_quantize_per_tensor_affine(x, s, 0, -128, 127), 0, 0, "native"));
  EXPECT_NEAR(y.min().item<float>(), -128 * s, 1e-6);
  at::Tensor w = torch::randn({4, 6});
  at::Tensor amax = w.abs().amax({1}, true);
  at::Tensor yc = qdqbert::ops::fake_quant_torch_native(w, amax, 8, false);
  at::Tensor ref = at::fake_quantize_per_channel_affine(w, amax.squeeze() / 127.f, torch::zeros({4}, at::kInt), 0,
                                                        -128, 127);
  EXPECT_TRUE(qt::tensors_equal(yc, ref, "native per channel"));
  EXPECT_THROW(qdqbert::ops::fake_quant_torch_native(torch::randn({2, 3, 4}), torch::ones({2, 3, 1}), 8, false),
               c10::Error);
}
