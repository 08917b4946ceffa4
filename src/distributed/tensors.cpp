// Collectives over whole tensors and modules: all_gather of tensors whose first dimension differs between
// ranks, broadcast_parameters, and the calibrators' sync.
#include <torch/torch.h>

#include <algorithm>

#include "group.h"
#include "qdqbert/calib/calibrator.h"
#include "qdqbert/distributed/distributed.h"

namespace qdqbert::distributed {
namespace {

constexpr int64_t kMaxDims = 8;
constexpr int64_t kMetaSize = 2 + kMaxDims;  // dim, dtype, sizes
constexpr int64_t kBucketBytes = int64_t{25} << 20;

std::string shape_text(const int64_t* meta) {
  std::string s = "[";
  for (int64_t d = 0; d < meta[0]; ++d) s += (d ? ", " : "") + std::to_string(meta[2 + d]);
  return s + "] " + std::string(c10::toString(static_cast<at::ScalarType>(meta[1])));
}

// Gloo's all-gather wants equal shapes: each rank's tensor padded to the most rows (at least one).
std::vector<at::Tensor> gather_equal(detail::Group& g, const at::Tensor& operand, const char* what) {
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t k = 0; k < g.env.world_size; ++k) out[0].push_back(at::empty_like(operand));
  std::vector<at::Tensor> in{operand};
  detail::wait(detail::start(what, [&] { return g.pg->allgather(out, in, c10d::AllgatherOptions()); }), what);
  return out[0];
}

uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

// One hash per tensor of name, dtype and shape: what must agree before the module's values are broadcast.
int64_t tensor_signature(const std::string& name, const at::Tensor& t) {
  uint64_t h = fnv(0xcbf29ce484222325ULL, name.data(), name.size());
  const auto type = static_cast<int64_t>(t.scalar_type());
  h = fnv(h, &type, sizeof(type));
  for (const int64_t s : t.sizes()) h = fnv(h, &s, sizeof(s));
  return static_cast<int64_t>(h >> 1);
}

void check_same_tensors(const std::vector<std::pair<std::string, at::Tensor>>& ts, int64_t root) {
  at::Tensor count = at::tensor({static_cast<int64_t>(ts.size())}, at::kLong);
  const int64_t mine = static_cast<int64_t>(ts.size());
  broadcast(count, root);
  const int64_t theirs = count.data_ptr<int64_t>()[0];
  at::Tensor sig = at::empty({std::max<int64_t>(theirs, 1)}, at::kLong);
  for (int64_t i = 0; i < std::min(mine, theirs); ++i)
    sig[i] = tensor_signature(ts[static_cast<size_t>(i)].first, ts[static_cast<size_t>(i)].second);
  at::Tensor local = sig.clone();
  broadcast(sig, root);
  for (int64_t i = 0; i < std::min(mine, theirs); ++i) {
    const auto& [name, t] = ts[static_cast<size_t>(i)];
    TORCH_CHECK_VALUE(sig[i].item<int64_t>() == local[i].item<int64_t>(),
                      "distributed: broadcast_parameters: ", error_prefix(), "tensor ", i, " '", name, "' (", t.sizes(),
                      " ", t.scalar_type(), ") differs from rank ", root, "'s: every rank must build the same model");
  }
  TORCH_CHECK_VALUE(mine == theirs, "distributed: broadcast_parameters: ", error_prefix(), "the module has ", mine,
                    " parameters and buffers, rank ", root, "'s has ", theirs,
                    ": every rank must build the same model");
}

class C10dCalibrationSync : public calib::CalibrationSync {
 public:
  void all_reduce_max(at::Tensor& t) override { all_reduce(t, ReduceOp::kMax); }
  void all_reduce_sum(at::Tensor& t) override { all_reduce(t, ReduceOp::kSum); }
};

}  // namespace

std::vector<at::Tensor> all_gather(const at::Tensor& tensor) {
  detail::Group* g = detail::group();
  if (g == nullptr) return {tensor};
  TORCH_CHECK_VALUE(tensor.defined() && tensor.dim() >= 1 && tensor.dim() <= kMaxDims, "distributed: all_gather ",
                    "takes a tensor of 1 to ", kMaxDims, " dimensions, got ",
                    tensor.defined() ? tensor.sizes() : at::IntArrayRef{});
  at::Tensor meta = at::zeros({kMetaSize}, at::kLong);
  auto* m = meta.data_ptr<int64_t>();
  m[0] = tensor.dim();
  m[1] = static_cast<int64_t>(tensor.scalar_type());
  for (int64_t d = 0; d < tensor.dim(); ++d) m[2 + d] = tensor.size(d);
  detail::CollectiveTensor cm(meta);
  std::vector<at::Tensor> metas = gather_equal(*g, cm.operand, "all_gather (shapes)");
  int64_t most = 1;
  std::vector<int64_t> rows;
  for (int64_t k = 0; k < g->env.world_size; ++k) {
    const at::Tensor theirs_t = metas[static_cast<size_t>(k)].to(at::kCPU);
    const int64_t* theirs = theirs_t.data_ptr<int64_t>();
    bool same = theirs[0] == m[0] && theirs[1] == m[1];
    for (int64_t d = 1; same && d < m[0]; ++d) same = theirs[2 + d] == m[2 + d];
    TORCH_CHECK_VALUE(same, "distributed: all_gather: ", error_prefix(), "rank ", k, " has ", shape_text(theirs),
                      ", this rank ", shape_text(m), " (only the first dimension may differ)");
    rows.push_back(theirs[2]);
    most = std::max(most, theirs[2]);
  }
  std::vector<int64_t> padded_shape = tensor.sizes().vec();
  padded_shape[0] = most;
  at::Tensor padded = at::zeros(padded_shape, tensor.options());
  padded.narrow(0, 0, tensor.size(0)).copy_(tensor);
  detail::CollectiveTensor ct(padded);
  std::vector<at::Tensor> out = gather_equal(*g, ct.operand, "all_gather");
  for (size_t k = 0; k < out.size(); ++k) out[k] = out[k].narrow(0, 0, rows[k]).to(tensor.device());
  return out;
}

void broadcast_parameters(torch::nn::Module& module, int64_t root) {
  if (detail::group() == nullptr) return;
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (p.value().defined()) ts.emplace_back(p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    if (b.value().defined()) ts.emplace_back(b.key(), b.value());
  }
  check_same_tensors(ts, root);
  torch::NoGradGuard no_grad;
  // Flat buckets of consecutive tensors with one dtype and device.
  for (size_t begin = 0; begin < ts.size();) {
    const at::Tensor& first = ts[begin].second;
    size_t end = begin;
    int64_t bytes = 0;
    while (end < ts.size() && ts[end].second.scalar_type() == first.scalar_type() &&
           ts[end].second.device() == first.device() &&
           (end == begin || bytes + ts[end].second.nbytes() <= static_cast<size_t>(kBucketBytes))) {
      bytes += static_cast<int64_t>(ts[end].second.nbytes());
      ++end;
    }
    std::vector<at::Tensor> flat;
    for (size_t i = begin; i < end; ++i) flat.push_back(ts[i].second.reshape(-1));
    at::Tensor bucket = at::cat(flat);
    broadcast(bucket, root);
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      at::Tensor& t = ts[i].second;
      t.copy_(bucket.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
    begin = end;
  }
}

std::shared_ptr<calib::CalibrationSync> calibration_sync() {
  if (detail::group() == nullptr) return nullptr;
  return std::make_shared<C10dCalibrationSync>();
}

}  // namespace qdqbert::distributed
