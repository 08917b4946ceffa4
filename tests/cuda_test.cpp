// CUDA fake-quant kernel: bit-identical to the CPU kernel in fp32. Skips cleanly without a GPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

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

TEST(CudaFakeQuant, TensorDispatch) {
#if !QDQBERT_CUDA_DISPATCH
  // Without a CUDA LibTorch the CUDA branch must refuse clearly (if a CUDA tensor could exist at all).
  GTEST_SKIP() << "qdqbert built without CUDA dispatch (LibTorch has no CUDA)";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  at::Tensor x = torch::randn({1 << 20}) * 3;
  for (auto amax : {torch::tensor(2.5f), torch::rand({1 << 20}) * 3}) {
    at::Tensor cpu = qdqbert::ops::fake_tensor_quant(x, amax, 8, false, false);
    at::Tensor gpu = qdqbert::ops::fake_tensor_quant(x.cuda(), amax.cuda(), 8, false, false).cpu();
    EXPECT_TRUE(torch::equal(cpu.view(torch::kInt), gpu.view(torch::kInt)));
  }
#endif
}
