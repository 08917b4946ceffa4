// Bucketed gradient averaging, overlapped with backward through gradient hooks (gradient_reducer.h).
//
// A tensor hook on a leaf parameter runs once per backward with the gradient that AccumulateGrad is about to
// add to .grad; the hook copies .grad + that gradient (the value .grad will hold, computed the same way) into
// the parameter's slot of its bucket. synchronize() later overwrites .grad with the bucket's average.
#include "qdqbert/distributed/gradient_reducer.h"

#include <torch/torch.h>

#include <chrono>
#include <mutex>

#include "group.h"
#include "qdqbert/distributed/distributed.h"

namespace qdqbert::distributed {

struct GradientReducer::Impl {
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;
    at::Tensor flat;
    int64_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };

  std::vector<at::Tensor> params;
  std::vector<unsigned> hooks;
  std::vector<size_t> bucket_of, slot_of;
  std::vector<char> ready;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  bool armed = false;
  GradientReducerStats stats;
  std::mutex mu;

  at::Tensor slot(size_t i) {
    const Bucket& b = buckets[bucket_of[i]];
    const at::Tensor& p = params[i];
    return b.flat.narrow(0, b.offsets[slot_of[i]], p.numel()).view(p.sizes());
  }

  void build(int64_t bucket_bytes) {
    // Reverse registration order: backward reaches the last layers first.
    bucket_of.assign(params.size(), 0);
    slot_of.assign(params.size(), 0);
    int64_t bytes = 0;
    for (size_t n = params.size(); n-- > 0;) {
      const at::Tensor& p = params[n];
      const auto pb = static_cast<int64_t>(p.numel() * p.element_size());
      const bool fits = !buckets.empty() && bytes + pb <= bucket_bytes &&
                        buckets.back().flat.scalar_type() == p.scalar_type() &&
                        buckets.back().flat.device() == p.device();
      if (!fits) {
        buckets.emplace_back();
        buckets.back().flat = at::empty({0}, p.options());
        bytes = 0;
      }
      Bucket& b = buckets.back();
      bucket_of[n] = buckets.size() - 1;
      slot_of[n] = b.params.size();
      b.offsets.push_back(bytes / p.element_size());
      b.params.push_back(n);
      bytes += pb;
    }
    for (Bucket& b : buckets) {
      int64_t numel = 0;
      for (size_t i : b.params) numel += params[i].numel();
      b.flat = at::zeros({numel}, b.flat.options());
      b.pending = static_cast<int64_t>(b.params.size());
    }
    ready.assign(params.size(), 0);
  }

  // Buckets start strictly in index order on every rank: the ranks' collectives then match.
  void launch_ready_buckets() {
    detail::Group* g = detail::group();
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      Bucket& b = buckets[next_launch++];
      std::vector<at::Tensor> v{b.flat};
      b.work = detail::start("gradient all_reduce", [&] { return g->pg->allreduce(v, c10d::AllreduceOptions()); });
      ++stats.all_reduces;
      stats.bytes += static_cast<int64_t>(b.flat.nbytes());
    }
  }

  void on_gradient(size_t i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    TORCH_CHECK(!ready[i], "GradientReducer: ", error_prefix(), "parameter ", i, " got two gradients in one step; ",
                "call expect_backward() before the last backward() only");
    torch::NoGradGuard no_grad;
    const at::Tensor& old = params[i].grad();
    slot(i).copy_(old.defined() ? old + grad : grad);
    ready[i] = 1;
    --buckets[bucket_of[i]].pending;
    launch_ready_buckets();
  }

  void synchronize() {
    std::lock_guard<std::mutex> lock(mu);
    torch::NoGradGuard no_grad;
    for (size_t k = next_launch; k < buckets.size(); ++k) {
      for (size_t i : buckets[k].params) {
        if (ready[i]) continue;
        const at::Tensor& gr = params[i].grad();
        if (gr.defined()) {
          slot(i).copy_(gr);
        } else {
          slot(i).zero_();
        }
        ready[i] = 1;
        --buckets[k].pending;
      }
    }
    launch_ready_buckets();
    // Which parameters have a gradient on some rank (the others keep none, as in one process).
    at::Tensor has = at::empty({static_cast<int64_t>(params.size())}, at::kByte);
    auto* h = has.data_ptr<uint8_t>();
    for (size_t i = 0; i < params.size(); ++i) h[i] = params[i].grad().defined() ? 1 : 0;
    const auto world = static_cast<double>(world_size());
    for (Bucket& b : buckets) {
      detail::wait(b.work, "gradient all_reduce");
      b.work.reset();
      b.flat.div_(world);
    }
    all_reduce(has, ReduceOp::kMax);
    h = has.data_ptr<uint8_t>();
    for (size_t i = 0; i < params.size(); ++i) {
      if (h[i] == 0) continue;
      at::Tensor& p = params[i];
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slot(i));
      } else {
        p.mutable_grad() = slot(i).clone();
      }
    }
    for (Bucket& b : buckets) b.pending = static_cast<int64_t>(b.params.size());
    ready.assign(params.size(), 0);
    next_launch = 0;
    armed = false;
    ++stats.steps;
  }
};

GradientReducer::GradientReducer(const std::vector<at::Tensor>& parameters, GradientReducerOptions options)
    : impl_(std::make_shared<Impl>()) {
  TORCH_CHECK_VALUE(options.bucket_bytes > 0, "GradientReducer: bucket_bytes must be > 0, got ", options.bucket_bytes);
  if (world_size() == 1) return;
  for (const auto& p : parameters) {
    if (p.defined() && p.requires_grad()) impl_->params.push_back(p);
  }
  impl_->build(options.bucket_bytes);
  if (!options.overlap) return;
  std::weak_ptr<Impl> weak = impl_;
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    impl_->hooks.push_back(impl_->params[i].register_hook([weak, i](const at::Tensor& grad) {
      if (auto impl = weak.lock()) impl->on_gradient(i, grad);
    }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < impl_->hooks.size(); ++i) impl_->params[i].remove_hook(impl_->hooks[i]);
}

void GradientReducer::expect_backward() {
  if (impl_->params.empty()) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->armed = !impl_->hooks.empty();
}

void GradientReducer::synchronize() {
  if (world_size() == 1 || impl_->buckets.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  impl_->synchronize();
  impl_->stats.synchronize_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

const GradientReducerStats& GradientReducer::stats() const { return impl_->stats; }

void all_reduce_gradients(const std::vector<at::Tensor>& parameters, int64_t bucket_bytes) {
  if (world_size() == 1) return;
  GradientReducerOptions o;
  o.bucket_bytes = bucket_bytes;
  o.overlap = false;
  GradientReducer(parameters, o).synchronize();
}

}  // namespace qdqbert::distributed
