// MaxCalibrator and HistogramCalibrator, reproducing pytorch-quantization 2.1.2 (NumPy histogram
// path) exactly; see tests/data/README.md §4.7–4.8 for the rules this file follows.
#include "qdqbert/calib/calibrator.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "qdqbert/ops/fake_quant.h"

namespace qdqbert::calib {

// ----------------------------------------------------------------------------------------------
// MaxCalibrator
// ----------------------------------------------------------------------------------------------
void MaxCalibrator::collect(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.defined(), "MaxCalibrator::collect: undefined tensor");
  at::NoGradGuard no_grad;
  at::Tensor x = x_in.detach().to(at::kFloat);
  // Reference: reduce over every dim i with `i not in axis` (negative axes match nothing).
  at::Tensor local = x.numel() == 0 ? at::Tensor() : ops::reduce_amax_keep(x, axis_);
  TORCH_CHECK_VALUE(local.defined(), "MaxCalibrator::collect: empty tensor of shape ", x_in.sizes());
  if (!calib_amax_.defined()) {
    calib_amax_ = local;
  } else {
    TORCH_CHECK_VALUE(local.sizes() == calib_amax_.sizes(), "MaxCalibrator::collect: amax shape changed from ",
                      calib_amax_.sizes(), " to ", local.sizes(), " (input shape ", x_in.sizes(), ")");
    // In place, as the reference does: the first tracked amax aliases the running max.
    calib_amax_.copy_(at::max(calib_amax_, local.to(calib_amax_.device())));
  }
  if (track_amax_) amaxs_.push_back(local);
}

void MaxCalibrator::reset() {
  calib_amax_ = at::Tensor();
  amaxs_.clear();
}

at::Tensor MaxCalibrator::compute_amax(const std::string& method, const ComputeAmaxOptions&) {
  TORCH_CHECK_VALUE(method.empty() || method == "max", "MaxCalibrator::compute_amax: unknown method '", method,
                    "' (MaxCalibrator only computes 'max')");
  return calib_amax_;
}

namespace {

// Every process must agree on whether it has data and on its size (a number of amax values or bins) before
// the merge's collective, whose shapes must match: one all-reduce of {has, -has, size, -size} gives the
// maximum and minimum of each.
void check_same_everywhere(CalibrationSync& sync, const char* who, bool has_data, int64_t size, const char* unit) {
  at::Tensor t = at::tensor({int64_t{has_data}, -int64_t{has_data}, size, -size}, at::kLong);
  sync.all_reduce_max(t);
  const auto* v = t.data_ptr<int64_t>();
  TORCH_CHECK(v[0] == -v[1], who, ": some processes collected data and others did not; every process must run ",
              "the same number of calibration batches");
  TORCH_CHECK(v[2] == -v[3], who, ": the processes collected different shapes (", -v[3], " to ", v[2], " ", unit,
              "); they must calibrate the same model with the same number of calibration batches");
}

}  // namespace

void MaxCalibrator::merge_across_processes() {
  if (!sync_) return;
  check_same_everywhere(*sync_, "MaxCalibrator::merge_across_processes", has_data(),
                        has_data() ? calib_amax_.numel() : 0, "amax values");
  if (!has_data()) return;
  at::NoGradGuard no_grad;
  at::Tensor t = calib_amax_.to(at::kCPU).contiguous().clone();
  sync_->all_reduce_max(t);
  calib_amax_.copy_(t);  // in place: amaxs()[0] aliases it, as in the reference
}

std::unique_ptr<Calibrator> MaxCalibrator::clone() const {
  auto c = std::make_unique<MaxCalibrator>(num_bits_, axis_, unsigned_, track_amax_);
  if (calib_amax_.defined()) c->calib_amax_ = calib_amax_.clone();
  for (const auto& a : amaxs_) c->amaxs_.push_back(a.clone());
  if (!c->amaxs_.empty()) c->amaxs_[0] = c->calib_amax_;  // keep the reference's aliasing
  return c;
}

// ----------------------------------------------------------------------------------------------
// HistogramCalibrator
// ----------------------------------------------------------------------------------------------
HistogramCalibrator::HistogramCalibrator(int64_t num_bits, std::vector<int64_t> axis, bool is_unsigned,
                                         int64_t num_bins, bool skip_zeros)
    : Calibrator(num_bits, std::move(axis), is_unsigned), num_bins_(num_bins), skip_zeros_(skip_zeros) {
  TORCH_CHECK_VALUE(axis_.empty(), "HistogramCalibrator: histogram collection only supports per-tensor scaling "
                                   "(axis must be None)");
  TORCH_CHECK_VALUE(num_bins_ >= 1, "HistogramCalibrator: num_bins must be >= 1, got ", num_bins_);
}

namespace {

// Index of the bin holding v: (number of edges <= v) - 1, the last edge belonging to the last bin;
// -1 when v lies outside [edges.front(), edges.back()] (NumPy drops such values).
inline int64_t bin_of(const std::vector<double>& edges, double v) {
  if (!(v >= edges.front()) || v > edges.back()) return -1;
  const int64_t n = static_cast<int64_t>(edges.size()) - 1;
  const int64_t k = std::upper_bound(edges.begin(), edges.end(), v) - edges.begin() - 1;
  return std::min(k, n - 1);
}

// Several processes: the first range is [min, max] over every process's values ([0, 1] when none has any,
// as for one process); min comes out of the same max-reduction as -min (negation is exact).
void agree_on_first_range(CalibrationSync& sync, bool has_values, float& lo, float& hi) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor t = at::tensor({has_values ? -lo : -inf, has_values ? hi : -inf}, at::kFloat);
  sync.all_reduce_max(t);
  const auto* v = t.data_ptr<float>();
  if (v[1] == -inf) {
    lo = 0.f;
    hi = 1.f;
  } else {
    lo = -v[0];
    hi = v[1];
  }
}

float agree_on_max(CalibrationSync& sync, float xmax) {
  at::Tensor t = at::tensor({xmax}, at::kFloat);
  sync.all_reduce_max(t);
  return t.data_ptr<float>()[0];
}

}  // namespace

void HistogramCalibrator::collect(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.defined(), "HistogramCalibrator::collect: undefined tensor");
  at::NoGradGuard no_grad;
  at::Tensor x = x_in.detach().to(at::kCPU, at::kFloat).abs().contiguous().view(-1);
  if (skip_zeros_) x = x.masked_select(x != 0);
  TORCH_CHECK_VALUE(x.numel() == 0 || at::isfinite(x).all().item<bool>(),
                    "HistogramCalibrator::collect: the tensor holds inf or NaN values (shape ", x_in.sizes(),
                    "); a histogram range cannot be built from them");
  const float* data = x.data_ptr<float>();
  const int64_t n = x.numel();

  if (hist_.empty()) {
    // First batch: num_bins equal bins over [min, max] (NumPy linspace in float64, stored as float32).
    float lo = 0.f, hi = 1.f;
    if (n > 0) {
      lo = *std::min_element(data, data + n);
      hi = *std::max_element(data, data + n);
    }
    if (sync_) agree_on_first_range(*sync_, n > 0, lo, hi);
    double first = lo, last = hi;
    if (first == last) {
      first -= 0.5;
      last += 0.5;
    }
    const double step = (last - first) / static_cast<double>(num_bins_);
    edges_.assign(num_bins_ + 1, 0.0);
    for (int64_t k = 0; k < num_bins_; ++k) {
      edges_[k] = static_cast<float>(static_cast<double>(k) * step + first);
    }
    edges_[num_bins_] = static_cast<float>(last);
    edges_are_f32_ = true;
    hist_.assign(num_bins_, 0);
  } else if (n > 0 || sync_) {
    float xmax = n > 0 ? *std::max_element(data, data + n) : -std::numeric_limits<float>::infinity();
    if (sync_) xmax = agree_on_max(*sync_, xmax);
    if (xmax > edges_.back()) {
      // NumPy: width = e[1] - e[0]; arange(e[-1] + width, max + width, width), float64 result. While
      // the edges are still float32 those three operands are float32 arithmetic.
      // NumPy: width = e[1] - e[0]; arange(e[-1] + width, max + width, width). While the edges are still
      // float32 those scalars are float32 arithmetic (the length too); arange fills in float64 with
      // buffer[i] = fma(i, delta, start), delta = (start + width) - start, as NumPy's compiled loop does.
      double start, next, len;
      if (edges_are_f32_) {
        const float w = static_cast<float>(edges_[1]) - static_cast<float>(edges_[0]);
        const float s = static_cast<float>(edges_.back()) + w;
        const float stop = xmax + w;
        start = s;
        next = static_cast<float>(s + w);
        len = std::ceil(static_cast<double>(static_cast<float>((stop - s) / w)));
      } else {
        const double w = edges_[1] - edges_[0];
        start = edges_.back() + w;
        next = start + w;
        len = std::ceil(((static_cast<double>(xmax) + w) - start) / w);
      }
      const double delta = next - start;
      for (int64_t i = 0; i < static_cast<int64_t>(len); ++i) {
        edges_.push_back(i == 0 ? start : i == 1 ? next : std::fma(static_cast<double>(i), delta, start));
      }
      edges_are_f32_ = false;
      hist_.resize(edges_.size() - 1, 0);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = bin_of(edges_, data[i]);
    if (k >= 0) ++hist_[k];
  }
}

void HistogramCalibrator::reset() {
  hist_.clear();
  edges_.clear();
  edges_are_f32_ = true;
}

at::Tensor HistogramCalibrator::compute_amax(const std::string& method, const ComputeAmaxOptions& o) {
  if (hist_.empty()) return at::Tensor();
  float amax = 0.f;
  if (method == "percentile") {
    amax = compute_amax_percentile(hist_, edges_, o.percentile);
  } else if (method == "mse") {
    amax = compute_amax_mse(hist_, edges_, num_bits_, unsigned_, o.stride, o.start_bin);
  } else if (method == "entropy") {
    if (entropy_preserves_histogram) {
      std::vector<int64_t> copy = hist_;
      amax = compute_amax_entropy(copy, edges_, num_bits_, unsigned_, o.stride, o.start_bin);
    } else {
      amax = compute_amax_entropy(hist_, edges_, num_bits_, unsigned_, o.stride, o.start_bin);
    }
  } else {
    TORCH_CHECK_VALUE(false, "HistogramCalibrator::compute_amax: unknown calibration method '", method,
                      "' (expected percentile, mse or entropy)");
  }
  return at::scalar_tensor(amax, at::kFloat);
}

void HistogramCalibrator::merge_across_processes() {
  if (!sync_) return;
  const int64_t bins = static_cast<int64_t>(hist_.size());
  check_same_everywhere(*sync_, "HistogramCalibrator::merge_across_processes", has_data(), bins, "bins");
  if (!has_data()) return;
  // The edges were built from shared numbers by the same code everywhere; check the outer two anyway.
  at::Tensor e = at::tensor({edges_.front(), -edges_.front(), edges_.back(), -edges_.back()}, at::kDouble);
  sync_->all_reduce_max(e);
  const auto* ev = e.data_ptr<double>();
  TORCH_CHECK(ev[0] == -ev[1] && ev[2] == -ev[3], "HistogramCalibrator::merge_across_processes: the processes ",
              "hold different bin edges ([", -ev[1], ", ", -ev[3], "] to [", ev[0], ", ", ev[2], "]): collect() ",
              "must be called equally often everywhere, with the sync set from the first call");
  at::Tensor counts = at::empty({bins}, at::kLong);
  std::copy(hist_.begin(), hist_.end(), counts.data_ptr<int64_t>());
  sync_->all_reduce_sum(counts);
  const auto* c = counts.data_ptr<int64_t>();
  std::copy(c, c + bins, hist_.begin());
}

std::unique_ptr<Calibrator> HistogramCalibrator::clone() const {
  auto c = std::make_unique<HistogramCalibrator>(num_bits_, axis_, unsigned_, num_bins_, skip_zeros_);
  c->hist_ = hist_;
  c->edges_ = edges_;
  c->edges_are_f32_ = edges_are_f32_;
  c->entropy_preserves_histogram = entropy_preserves_histogram;
  return c;
}

// ----------------------------------------------------------------------------------------------
// compute_amax methods
// ----------------------------------------------------------------------------------------------
float compute_amax_percentile(const std::vector<int64_t>& hist, const std::vector<double>& edges,
                              double percentile) {
  TORCH_CHECK_VALUE(percentile >= 0.0 && percentile <= 100.0,
                    "compute_amax percentile: percentile must be in [0, 100], got ", percentile);
  TORCH_CHECK_VALUE(!hist.empty() && edges.size() == hist.size() + 1, "compute_amax percentile: empty histogram");
  int64_t total = 0;
  for (auto c : hist) total += c;
  TORCH_CHECK_VALUE(total > 0, "compute_amax percentile: the histogram holds no values");
  const double target = percentile / 100.0;
  double cdf = 0.0;
  size_t idx = hist.size();
  for (size_t i = 0; i < hist.size(); ++i) {
    cdf += static_cast<double>(hist[i]) / static_cast<double>(total);
    if (cdf >= target) {
      idx = i;
      break;
    }
  }
  return static_cast<float>(edges[idx]);
}

float compute_amax_mse(const std::vector<int64_t>& hist, const std::vector<double>& edges, int64_t num_bits,
                       bool is_unsigned, int64_t stride, int64_t start_bin) {
  TORCH_CHECK_VALUE(stride >= 1, "compute_amax mse: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(start_bin >= 0, "compute_amax mse: start_bin must be >= 0, got ", start_bin);
  const int64_t nb = static_cast<int64_t>(hist.size());
  TORCH_CHECK_VALUE(start_bin < nb, "compute_amax mse: start_bin ", start_bin, " is past the last of ", nb,
                    " bins: no candidate amax");
  at::NoGradGuard no_grad;
  // float32 counts and edges, centers = (e[1:] + e[:-1]) / 2, all float32 torch math like the reference.
  at::Tensor counts = at::empty({nb}, at::kFloat);
  at::Tensor e = at::empty({nb + 1}, at::kFloat);
  for (int64_t i = 0; i < nb; ++i) counts[i] = static_cast<float>(hist[i]);
  auto ea = e.accessor<float, 1>();
  for (int64_t i = 0; i <= nb; ++i) ea[i] = static_cast<float>(edges[i]);
  at::Tensor centers = (e.slice(0, 1) + e.slice(0, 0, nb)) / 2;
  auto ca = centers.accessor<float, 1>();
  float best = std::numeric_limits<float>::infinity();
  int64_t best_i = -1;
  bool best_is_nan = false;
  for (int64_t i = start_bin; i < nb; i += stride) {
    at::Tensor q = ops::fake_tensor_quant(centers, centers[i], num_bits, is_unsigned, /*narrow_range=*/true);
    const float mse = ((q - centers).pow(2) * counts).mean().item<float>();
    // np.argmin: the first NaN wins; otherwise the first minimum.
    if (best_is_nan) continue;
    if (std::isnan(mse)) {
      best_is_nan = true;
      best_i = i;
    } else if (best_i < 0 || mse < best) {
      best = mse;
      best_i = i;
    }
  }
  return ca[best_i];
}

namespace {

// NumPy's pairwise summation (numpy/core/src/umath/loops_utils.h.src) for float64, so that sums — and
// the argmin decisions that depend on them — match np.sum bit for bit.
double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double res = 0.;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// scipy.special.rel_entr
inline double rel_entr(double x, double y) {
  if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::quiet_NaN();
  if (x > 0 && y > 0) return x * std::log(x / y);
  if (x == 0 && y >= 0) return 0.0;
  return std::numeric_limits<double>::infinity();
}

}  // namespace

float compute_amax_entropy(std::vector<int64_t>& bins, const std::vector<double>& edges, int64_t num_bits,
                           bool is_unsigned, int64_t stride, int64_t start_bin) {
  TORCH_CHECK_VALUE(stride >= 1, "compute_amax entropy: stride must be >= 1, got ", stride);
  const int64_t stop = static_cast<int64_t>(bins.size());
  TORCH_CHECK_VALUE(stop >= 2, "compute_amax entropy: needs at least 2 bins, got ", stop);
  TORCH_CHECK_VALUE(start_bin >= 1 && start_bin <= stop, "compute_amax entropy: start_bin ", start_bin,
                    " must be in [1, ", stop, "] (the number of bins)");
  bins[0] = bins[1];  // the reference modifies its histogram in place
  const int64_t nq = int64_t{1} << (num_bits - 1 + (is_unsigned ? 1 : 0));

  // suffix[i] = sum(bins[i:])
  std::vector<int64_t> suffix(stop + 1, 0);
  for (int64_t i = stop - 1; i >= 0; --i) suffix[i] = suffix[i + 1] + bins[i];

  std::vector<int64_t> group(stop);
  std::vector<double> group_sum(nq), p(stop), q(stop), vec(stop);
  std::vector<int64_t> group_count(nq);
  double best = 0.0;
  int64_t best_k = -1;
  bool have_nan = false;
  int64_t k = 0;
  for (int64_t i = start_bin; i <= stop; i += stride, ++k) {
    // digitize(range(i), linspace(0, i, nq + 1)) - 1: the number of space points <= j, minus one.
    const double step = static_cast<double>(i) / static_cast<double>(nq);
    std::fill(group_sum.begin(), group_sum.end(), 0.0);
    std::fill(group_count.begin(), group_count.end(), 0);
    for (int64_t j = 0; j < i; ++j) {
      int64_t g = static_cast<int64_t>(static_cast<double>(j) / step);
      g = std::min<int64_t>(std::max<int64_t>(g, 0), nq - 1);
      while (g + 1 < nq && static_cast<double>(g + 1) * step <= static_cast<double>(j)) ++g;
      while (g > 0 && static_cast<double>(g) * step > static_cast<double>(j)) --g;
      if (bins[j] == 0) {
        group[j] = -1;
        continue;
      }
      group[j] = g;
      group_sum[g] += static_cast<double>(bins[j]);
      ++group_count[g];
    }
    for (int64_t g = 0; g < nq; ++g) {
      if (group_count[g] > 0) group_sum[g] /= static_cast<double>(group_count[g]);
    }
    for (int64_t j = 0; j < i; ++j) q[j] = group[j] < 0 ? 0.0 : group_sum[group[j]];
    // Reference distribution: bins[:i] with the tail folded into the last bin.
    const double total_p = static_cast<double>(suffix[0]);
    for (int64_t j = 0; j < i; ++j) p[j] = static_cast<double>(bins[j]);
    p[i - 1] += static_cast<double>(suffix[i]);
    const double sum_q = pairwise_sum(q.data(), i);
    for (int64_t j = 0; j < i; ++j) vec[j] = rel_entr(p[j] / total_p, q[j] / sum_q);
    const double div = pairwise_sum(vec.data(), i);
    // Last index holding the minimum; any NaN wins (the last NaN), as np.argmin on the reversed array.
    if (std::isnan(div)) {
      have_nan = true;
      best_k = k;
    } else if (!have_nan && (best_k < 0 || div <= best)) {
      best = div;
      best_k = k;
    }
  }
  TORCH_CHECK(best_k >= 0, "compute_amax entropy: no candidate between start_bin ", start_bin, " and ", stop);
  return static_cast<float>(edges[best_k * stride + start_bin]);
}

}  // namespace qdqbert::calib
