#pragma once
// Internal: replace or remove a registered buffer in place. LibTorch keeps `buffers_` private and
// offers no way to swap a registered (possibly undefined) buffer; every Cloneable specialization is a
// friend of Module, so this one specialization is the narrow door. Used for `_amax`, which Python
// registers lazily and we register up front as an undefined tensor (docs/architecture.md, "Register
// everything in reset()").
#include <torch/nn/cloneable.h>

namespace qdqbert::nn::detail {
struct BufferAccessTag;
}

namespace torch::nn {
template <>
class Cloneable<qdqbert::nn::detail::BufferAccessTag> {
 public:
  static void set(Module& m, const std::string& name, const at::Tensor& value) {
    TORCH_INTERNAL_ASSERT(m.buffers_.contains(name), "buffer '", name, "' was never registered");
    m.buffers_[name] = value;
  }
};
}  // namespace torch::nn

namespace qdqbert::nn::detail {
/// Points the registered buffer `name` of `m` at `value` (undefined = absent from the state dict).
inline void set_buffer(torch::nn::Module& m, const std::string& name, const at::Tensor& value) {
  torch::nn::Cloneable<BufferAccessTag>::set(m, name, value);
}
}  // namespace qdqbert::nn::detail
