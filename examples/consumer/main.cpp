// Uses the installed package: a per-tensor TensorQuantizer calibrated with max, then applied.
#include <qdqbert/nn/tensor_quantizer.h>
#include <qdqbert/ops/fake_quant.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  using namespace qdqbert::nn;
  TensorQuantizer q;
  q->disable_quant();
  q->enable_calib();
  at::Tensor x = torch::linspace(-2.0, 2.0, 9);
  q->forward(x);
  q->load_calib_amax();
  q->disable_calib();
  q->enable_quant();
  at::Tensor y = q->forward(x * 1.5);
  std::ostringstream os;
  q->pretty_print(os);
  std::printf("%s\n", os.str().c_str());
  std::printf("amax=%.4f max|y|=%.4f\n", q->amax().item<float>(), y.abs().max().item<float>());
  // Values beyond amax saturate: -3 -> -128 * 2/127, 3 -> 2.
  const bool ok = std::abs(y.max().item<float>() - 2.f) < 1e-6f;
  std::printf("%s\n", ok ? "consumer OK" : "consumer FAILED");
  return ok ? 0 : 1;
}
