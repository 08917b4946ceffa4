// CUDA: the fake-quant kernel bit-identical to the CPU kernel in fp32 (raw launch, tensor dispatch over
// every layout, dtype and bit width, the straight-through gradient), and every reference model fixture run
// on the GPU (forward, calibration, gradients, SGD steps) at the bounds its case.json states. Skips cleanly
// without a GPU or without a CUDA LibTorch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model_checks.h"
#include "qdqbert/build_config.h"
#include "qdqbert/ops/fake_quant.h"
#include "test_util.h"

#if QDQBERT_TESTS_HAVE_CUDA_KERNELS
#include "ops/cpu/fake_quant_kernel.h"
#include "ops/cuda/fake_quant_kernel.h"
#endif

namespace qt = qdqbert::testing;

TEST(CudaFakeQuant, RawKernelMatchesCpuBitForBit) {
#if !QDQBERT_TESTS_HAVE_CUDA_KERNELS
  GTEST_SKIP() << "nvcc was not found at configure time: CUDA kernels not built";
#else
  if (qdqbert::ops::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  for (int64_t bits : {4, 8, 16}) {
    at::Tensor x = torch::randn({33, 17, 129}) * 5;
    at::Tensor amax = torch::rand({33, 1, 129}) * 4;
    amax.index_put_({0}, 0.f);
    at::Tensor scale = (qdqbert::ops::max_bound(bits, false) / amax).masked_fill(amax <= 1.f / (1 << 24), 0);
    at::Tensor div = scale.masked_fill(scale == 0, 1).contiguous();
    scale = scale.contiguous();
    at::Tensor ref = qdqbert::ops::fake_tensor_quant(x, amax, bits, false, false);
    at::Tensor out = torch::empty_like(x);
    qdqbert::ops::detail::QuantLaunch p;
    p.x = x.data_ptr<float>();
    p.out = out.data_ptr<float>();
    p.scale = scale.data_ptr<float>();
    p.divisor = div.data_ptr<float>();
    p.min_bound = static_cast<float>(qdqbert::ops::min_bound(bits, false, false));
    p.max_bound = static_cast<float>(qdqbert::ops::max_bound(bits, false));
    p.layout.numel = x.numel();
    p.layout.inner = 129;
    p.layout.inner_varies = true;
    p.layout.ndim_outer = 2;
    p.layout.outer_sizes[0] = 33;
    p.layout.outer_sizes[1] = 17;
    p.layout.outer_strides[0] = 129;
    p.layout.outer_strides[1] = 0;
    ASSERT_EQ(qdqbert::ops::cuda::quantize_host(p, scale.numel(), 0), "");
    EXPECT_TRUE(torch::equal(out.view(torch::kInt), ref.view(torch::kInt))) << "bits " << bits;
  }
#endif
}

// Skips the calling test unless CUDA tensors can be dispatched to the kernels and a GPU is there.
#if QDQBERT_CUDA_DISPATCH
#define QDQBERT_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"
#else
#define QDQBERT_REQUIRE_CUDA() GTEST_SKIP() << "qdqbert built without CUDA dispatch (LibTorch has no CUDA)"
#endif

namespace {

// Bit-for-bit: the float32 bit patterns agree (an exact 0 and -0 differ here on purpose: the kernels'
// copysign makes the sign part of the contract).
::testing::AssertionResult same_bits(const at::Tensor& gpu, const at::Tensor& cpu, const std::string& what) {
  at::Tensor g = gpu.detach().cpu().to(torch::kFloat).contiguous(), c = cpu.detach().to(torch::kFloat).contiguous();
  if (g.sizes() != c.sizes()) return ::testing::AssertionFailure() << what << ": shape " << g.sizes() << " vs " << c.sizes();
  at::Tensor diff = g.view(torch::kInt) != c.view(torch::kInt);
  if (diff.any().item<bool>()) {
    const int64_t i = diff.reshape(-1).nonzero()[0][0].item<int64_t>();
    return ::testing::AssertionFailure() << what << ": " << diff.sum().item<int64_t>() << " of " << g.numel()
                                         << " elements differ; first at " << i << ": " << g.reshape(-1)[i].item<float>()
                                         << " vs CPU " << c.reshape(-1)[i].item<float>();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(CudaFakeQuant, TensorDispatch) {
  QDQBERT_REQUIRE_CUDA();
  torch::manual_seed(0);
  at::Tensor x = torch::randn({1 << 20}) * 3;
  for (auto amax : {torch::tensor(2.5f), torch::rand({1 << 20}) * 3}) {
    at::Tensor cpu = qdqbert::ops::fake_tensor_quant(x, amax, 8, false, false);
    at::Tensor gpu = qdqbert::ops::fake_tensor_quant(x.cuda(), amax.cuda(), 8, false, false);
    EXPECT_EQ(gpu.device().type(), torch::kCUDA);
    EXPECT_TRUE(same_bits(gpu, cpu, "elementwise amax"));
  }
}

// Every layout the dispatcher distinguishes (per tensor, per row, per last-dim column, a dense permuted
// view quantized in memory order, a strided slice), every output dtype, bit widths 4/8/16, signed and
// unsigned, narrow and full range, and amax entries at 0 (scale 0): the same bits as the CPU kernel.
TEST(CudaFakeQuant, EveryLayoutDtypeAndRangeMatchesCpu) {
  QDQBERT_REQUIRE_CUDA();
  torch::manual_seed(1);
  const at::Tensor base = torch::randn({2, 48, 96}) * 4;
  struct Layout {
    const char* name;
    at::Tensor x, amax;
  };
  at::Tensor rows = torch::rand({2, 48, 1}) * 5;
  rows.index_put_({0, 3}, 0.f);
  at::Tensor cols = torch::rand({96}) * 5;
  cols.index_put_({7}, 0.f);
  const std::vector<Layout> layouts = {
      {"per tensor", base, torch::tensor(3.5f)},
      {"per row", base, rows},
      {"per column", base, cols},
      {"permuted view", base.permute({0, 2, 1}), torch::tensor(2.f)},
      {"strided slice", base.slice(2, 0, 96, 3), torch::tensor(2.f)},
      {"per column of a transposed view", base.transpose(1, 2), torch::rand({48}) * 4},
  };
  for (const auto& l : layouts) {
    for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16, torch::kDouble}) {
      for (int64_t bits : {4, 8, 16}) {
        for (bool is_unsigned : {false, true}) {
          for (bool narrow : {false, true}) {
            at::Tensor x = is_unsigned ? l.x.abs().to(dtype) : l.x.to(dtype);
            const std::string what = std::string(l.name) + " " + std::string(c10::toString(dtype)) + " bits " +
                                     std::to_string(bits) + (is_unsigned ? " unsigned" : " signed") +
                                     (narrow ? " narrow" : " full");
            at::Tensor cpu = qdqbert::ops::fake_tensor_quant(x, l.amax, bits, is_unsigned, narrow);
            at::Tensor gpu = qdqbert::ops::fake_tensor_quant(x.cuda(), l.amax.cuda(), bits, is_unsigned, narrow);
            ASSERT_EQ(gpu.scalar_type(), dtype) << what;
            EXPECT_TRUE(same_bits(gpu, cpu, what));
          }
        }
      }
    }
  }
  // tensor_quant's integer outputs and scale, and a prepared amax, take the same path.
  auto [q_cpu, s_cpu] = qdqbert::ops::tensor_quant(base, rows, 8, false, false);
  auto [q_gpu, s_gpu] = qdqbert::ops::tensor_quant(base.cuda(), rows.cuda(), 8, false, false);
  EXPECT_TRUE(same_bits(q_gpu, q_cpu, "tensor_quant outputs"));
  EXPECT_TRUE(same_bits(s_gpu, s_cpu, "tensor_quant scale"));
  const auto prepared = qdqbert::ops::prepare_amax(rows, torch::Device(torch::kCUDA, 0), 8, false, false);
  EXPECT_TRUE(same_bits(qdqbert::ops::fake_tensor_quant(base.cuda(), prepared),
                        qdqbert::ops::fake_tensor_quant(base, rows, 8, false, false), "prepared amax"));
  // The prepared amax lives on one device: a CPU input is refused by name.
  EXPECT_NE(qt::error_message([&] { qdqbert::ops::fake_tensor_quant(base, prepared); }).find("prepared amax is on"),
            std::string::npos);
}

// The straight-through estimator on the GPU: gradient passes where |x| <= amax, zero elsewhere, as on
// the CPU, per tensor and per row; the elements exactly at +-amax pass.
TEST(CudaFakeQuant, StraightThroughGradientMatchesCpu) {
  QDQBERT_REQUIRE_CUDA();
  torch::manual_seed(2);
  at::Tensor x = torch::randn({64, 130}) * 3;
  at::Tensor rows = torch::rand({64, 1}) * 4;
  x.index_put_({0, 0}, rows[0][0]);
  x.index_put_({1, 0}, -rows[1][0]);
  at::Tensor upstream = torch::randn({64, 130});
  for (const at::Tensor& amax : {torch::tensor(2.f), rows}) {
    at::Tensor xc = x.clone().requires_grad_(true);
    at::Tensor xg = x.cuda().requires_grad_(true);
    (qdqbert::ops::fake_tensor_quant(xc, amax, 8, false, true) * upstream).sum().backward();
    (qdqbert::ops::fake_tensor_quant(xg, amax.cuda(), 8, false, true) * upstream.cuda()).sum().backward();
    ASSERT_TRUE(xg.grad().defined());
    EXPECT_TRUE(same_bits(xg.grad(), xc.grad(), "gradient, amax of shape " + c10::str(amax.sizes())));
  }
}

// Every reference model fixture on the GPU, at the same bounds as the CPU runs (model_test.cpp): the
// quantizer buffers, the cached weights and every tensor a forward creates follow the module's device.
class CudaModelFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModelFixture, ForwardMatchesReference) {
  QDQBERT_REQUIRE_CUDA();
  qt::check_forward(GetParam(), torch::Device(torch::kCUDA, 0));
}

TEST_P(CudaModelFixture, CalibrationReproducesAmax) {
  QDQBERT_REQUIRE_CUDA();
  qt::check_calibration(GetParam(), torch::Device(torch::kCUDA, 0));
}

INSTANTIATE_TEST_SUITE_P(Reference, CudaModelFixture, ::testing::ValuesIn(qt::case_names("model", "")),
                         [](const auto& info) { return info.param; });

class CudaTrainFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTrainFixture, GradientsMatchReference) {
  QDQBERT_REQUIRE_CUDA();
  qt::check_training(GetParam(), torch::Device(torch::kCUDA, 0));
}

INSTANTIATE_TEST_SUITE_P(Reference, CudaTrainFixture, ::testing::ValuesIn(qt::case_names("model", "train_")),
                         [](const auto& info) { return info.param; });
