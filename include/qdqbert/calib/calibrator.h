#pragma once
/// \file
/// Calibrators — the C++ twins of pytorch_quantization.calib (MaxCalibrator, HistogramCalibrator).
/// A calibrator collects statistics of the tensors a TensorQuantizer sees in calibration mode and
/// computes an amax from them.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qdqbert::calib {

/// Options of HistogramCalibrator::compute_amax (the Python keyword arguments).
struct ComputeAmaxOptions {
  double percentile = 99.99;  ///< for "percentile"
  int64_t start_bin = 128;    ///< for "mse" and "entropy"
  int64_t stride = 1;         ///< for "mse" and "entropy"
};

/// What a calibrator is, for code that treats the two kinds differently (never compare name() strings).
enum class CalibratorKind { kMax, kHistogram };

/// The collectives a calibrator needs to combine what several processes collected (data-parallel
/// calibration). qdqbert::distributed implements it on c10d (distributed::calibration_sync()); calib itself
/// knows no transport. Every process must make the same calls in the same order.
class CalibrationSync {
 public:
  virtual ~CalibrationSync() = default;
  /// Element-wise maximum over every process, in place (float32, float64 or int64).
  virtual void all_reduce_max(at::Tensor& t) = 0;
  /// Element-wise sum over every process, in place (int64).
  virtual void all_reduce_sum(at::Tensor& t) = 0;
};

/// Base class (mirrors `_Calibrator`). `axis` holds the dims that keep their own amax; empty = per tensor.
class Calibrator {
 public:
  Calibrator(int64_t num_bits, std::vector<int64_t> axis, bool is_unsigned)
      : num_bits_(num_bits), axis_(std::move(axis)), unsigned_(is_unsigned) {}
  virtual ~Calibrator() = default;

  /// Feeds one tensor.
  virtual void collect(const at::Tensor& x) = 0;
  /// Forgets everything collected.
  virtual void reset() = 0;
  /// True once at least one tensor was collected.
  virtual bool has_data() const = 0;
  /// Computes amax with `method` ("max" for MaxCalibrator; "percentile", "mse" or "entropy" for
  /// HistogramCalibrator). Returns an undefined tensor when no data was collected (Python: None).
  virtual at::Tensor compute_amax(const std::string& method = "", const ComputeAmaxOptions& options = {}) = 0;
  /// Class name as Python prints it ("MaxCalibrator", "HistogramCalibrator").
  virtual std::string name() const = 0;
  virtual CalibratorKind kind() const = 0;
  /// A deep copy (used by Module::clone()). The copy calibrates alone (no sync).
  virtual std::unique_ptr<Calibrator> clone() const = 0;

  /// Makes this calibrator one of several processes' (nullptr: alone, the default). While a sync is set,
  /// HistogramCalibrator::collect agrees on its range with the other processes at every call.
  void set_sync(std::shared_ptr<CalibrationSync> sync) { sync_ = std::move(sync); }
  const std::shared_ptr<CalibrationSync>& sync() const { return sync_; }
  /// Combines what every process collected, so that compute_amax gives the same amax everywhere: max of the
  /// running maxima, or the sum of the histograms. A collective (every process calls it, after its last
  /// collect and before compute_amax); an error when some processes collected data and others did not.
  /// No-op without a sync.
  virtual void merge_across_processes() = 0;

  int64_t num_bits() const { return num_bits_; }
  const std::vector<int64_t>& axis() const { return axis_; }
  bool is_unsigned() const { return unsigned_; }
  void set_num_bits(int64_t v) { num_bits_ = v; }
  void set_unsigned(bool v) { unsigned_ = v; }

 protected:
  int64_t num_bits_;
  std::vector<int64_t> axis_;
  bool unsigned_;
  std::shared_ptr<CalibrationSync> sync_;
};

/// Mirrors `pytorch_quantization.calib.MaxCalibrator`: element-wise running max of |x| reduced over
/// the dims not in `axis` (size-1 dims kept; a per-tensor result is 0-d). Negative axes match no dim,
/// as in the reference (so `axis=-1` is per tensor).
class MaxCalibrator : public Calibrator {
 public:
  MaxCalibrator(int64_t num_bits = 8, std::vector<int64_t> axis = {}, bool is_unsigned = false,
                bool track_amax = false)
      : Calibrator(num_bits, std::move(axis), is_unsigned), track_amax_(track_amax) {}

  void collect(const at::Tensor& x) override;
  void reset() override;
  bool has_data() const override { return calib_amax_.defined(); }
  at::Tensor compute_amax(const std::string& method = "", const ComputeAmaxOptions& options = {}) override;
  std::string name() const override { return "MaxCalibrator"; }
  CalibratorKind kind() const override { return CalibratorKind::kMax; }
  std::unique_ptr<Calibrator> clone() const override;
  /// The element-wise max over the processes' running maxima: exactly the amax of one process that saw
  /// all their data, in any order (max is exact). amaxs() stays this process's own.
  void merge_across_processes() override;

  /// Per-batch amax values when constructed with track_amax (Python: `_amaxs`). As in the reference,
  /// the first entry is the running-max tensor itself (updated in place), so it ends as the global max.
  const std::vector<at::Tensor>& amaxs() const { return amaxs_; }

 private:
  bool track_amax_;
  at::Tensor calib_amax_;
  std::vector<at::Tensor> amaxs_;
};

/// Mirrors `pytorch_quantization.calib.HistogramCalibrator` (the NumPy path, `torch_hist=False`),
/// including its histogram growth across batches, its dropping of values below the first edge and
/// the in-place `hist[0] = hist[1]` of the entropy method (see tests/data/README.md). Per tensor only.
///
/// Several processes (set_sync): the reference's bins depend on the order of the data (the first batch
/// sets the bin width and the lowest edge, later batches only add bins above), so the processes agree on
/// the range at every collect(): the first call takes the minimum and maximum of |x| over every process's
/// tensor, each later call the maximum, and every process builds or grows its edges from those shared
/// numbers with the single-process code. Every process then holds the edges a single process would hold
/// after seeing the concatenation of the processes' tensors, call by call, and bins its own values into
/// them; merge_across_processes() sums the counts. The merged histogram, and so every amax computed from
/// it (percentile, mse, entropy), is bit for bit that of one process whose batches are the concatenations
/// (the global batches): the bound against that order-dependent reference is zero. Costs one all-reduce
/// of two floats per collect(); every process must call collect() equally often.
class HistogramCalibrator : public Calibrator {
 public:
  HistogramCalibrator(int64_t num_bits = 8, std::vector<int64_t> axis = {}, bool is_unsigned = false,
                      int64_t num_bins = 2048, bool skip_zeros = false);

  void collect(const at::Tensor& x) override;
  void reset() override;
  bool has_data() const override { return !hist_.empty(); }
  /// method: "percentile", "mse" or "entropy". Returns a float32 0-d tensor.
  at::Tensor compute_amax(const std::string& method, const ComputeAmaxOptions& options = {}) override;
  std::string name() const override { return "HistogramCalibrator"; }
  CalibratorKind kind() const override { return CalibratorKind::kHistogram; }
  std::unique_ptr<Calibrator> clone() const override;
  /// Sums the processes' histograms. With a sync, collect() has kept every process on the same bin edges
  /// (below), so this is exact.
  void merge_across_processes() override;

  /// Bin counts (Python: `_calib_hist`).
  const std::vector<int64_t>& hist() const { return hist_; }
  /// Bin edges, hist().size() + 1 of them (Python: `_calib_bin_edges`), as double.
  const std::vector<double>& bin_edges() const { return edges_; }
  int64_t num_bins() const { return num_bins_; }
  bool skip_zeros() const { return skip_zeros_; }

  /// When true (default false) `entropy` works on a copy and leaves the histogram untouched; the
  /// reference overwrites hist[0] in place, which changes later compute_amax calls.
  bool entropy_preserves_histogram = false;

 private:
  int64_t num_bins_;
  bool skip_zeros_;
  std::vector<int64_t> hist_;
  std::vector<double> edges_;
  bool edges_are_f32_ = true;  // NumPy keeps float32 edges until the first range growth
};

/// Percentile amax from a histogram (Python `_compute_amax_percentile`).
float compute_amax_percentile(const std::vector<int64_t>& hist, const std::vector<double>& edges,
                              double percentile);
/// MSE amax (Python `_compute_amax_mse`, computed on CPU).
float compute_amax_mse(const std::vector<int64_t>& hist, const std::vector<double>& edges, int64_t num_bits,
                       bool is_unsigned, int64_t stride, int64_t start_bin);
/// KL-divergence amax (Python `_compute_amax_entropy`). Modifies hist[0] in place, like the reference.
float compute_amax_entropy(std::vector<int64_t>& hist, const std::vector<double>& edges, int64_t num_bits,
                           bool is_unsigned, int64_t stride, int64_t start_bin);

}  // namespace qdqbert::calib
