#pragma once
/// \file
/// QuantDescriptor — mirrors `pytorch_quantization.tensor_quant.QuantDescriptor` (ScaledQuantDescriptor):
/// every field with the same name and default, equality, JSON, the predefined descriptors and the
/// process-wide QuantLinear defaults (`QuantLinear.set_default_quant_desc_input/weight`).
/// Torch-free.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qdqbert::nn {

/// The bit widths the fake-quant kernels support: [2, 22] signed, [1, 22] unsigned. Descriptors are
/// checked against them when they are read, the kernels when they run.
constexpr int64_t kMinSignedBits = 2, kMinUnsignedBits = 1, kMaxBits = 22;
/// The fewest bits the kernels quantize to: 1 unsigned (levels 0 and 1), 2 signed (-1, 0, 1).
constexpr int64_t min_num_bits(bool is_unsigned) { return is_unsigned ? kMinUnsignedBits : kMinSignedBits; }

/// How a tensor is quantized. Field names follow the Python keyword arguments; `unsigned` is
/// `is_unsigned` here because `unsigned` is a C++ keyword (the JSON key stays "unsigned").
struct QuantDescriptor {
  int64_t num_bits = 8;
  std::optional<std::string> name;
  bool fake_quant = true;
  /// Dims that keep their own amax; std::nullopt = per tensor (Python None).
  std::optional<std::vector<int64_t>> axis;
  /// True when Python would hold `axis` as a plain int (`axis=(0)` is the int 0); only affects printing.
  bool axis_is_int = false;
  /// Static amax given by the user: a scalar (`amax_is_scalar`) or a list.
  std::optional<std::vector<float>> amax;
  bool amax_is_scalar = true;
  bool learn_amax = false;
  std::optional<double> scale_amax;
  /// "max" or "histogram"; anything else creates no calibrator (as in Python).
  std::string calib_method = "max";
  bool is_unsigned = false;
  bool narrow_range = false;

  // Builder-style setters, e.g. QuantDescriptor().with_num_bits(8).with_axis({0}).
  QuantDescriptor& with_num_bits(int64_t v) { num_bits = v; return *this; }
  QuantDescriptor& with_name(std::string v) { name = std::move(v); return *this; }
  QuantDescriptor& with_fake_quant(bool v) { fake_quant = v; return *this; }
  QuantDescriptor& with_axis(std::vector<int64_t> v) { axis = std::move(v); axis_is_int = false; return *this; }
  QuantDescriptor& with_axis(int64_t v) { axis = std::vector<int64_t>{v}; axis_is_int = true; return *this; }
  QuantDescriptor& per_tensor() { axis.reset(); axis_is_int = false; return *this; }
  QuantDescriptor& with_amax(float v) { amax = std::vector<float>{v}; amax_is_scalar = true; return *this; }
  QuantDescriptor& with_amax(std::vector<float> v) { amax = std::move(v); amax_is_scalar = false; return *this; }
  QuantDescriptor& with_learn_amax(bool v) { learn_amax = v; return *this; }
  QuantDescriptor& with_scale_amax(double v) { scale_amax = v; return *this; }
  QuantDescriptor& with_calib_method(std::string v) { calib_method = std::move(v); return *this; }
  QuantDescriptor& with_unsigned(bool v) { is_unsigned = v; return *this; }
  QuantDescriptor& with_narrow_range(bool v) { narrow_range = v; return *this; }

  /// Throws qdqbert::Error for combinations Python rejects (negative num_bits, learn_amax with an axis).
  void validate() const;

  /// Python `__str__`, e.g. "QuantDescriptor(8bit fake axis=(0,))".
  std::string str() const;

  /// JSON with the Python field names (every field written; `axis` as a list or int, `amax` as a
  /// number or list). from_json accepts any subset and rejects unknown keys, like Python's
  /// "Unused keys" TypeError.
  std::string to_json_string(int indent = -1) const;
  static QuantDescriptor from_json_string(const std::string& text);

  bool operator==(const QuantDescriptor& o) const;
  bool operator!=(const QuantDescriptor& o) const { return !(*this == o); }
};

/// Predefined descriptors (Python `QUANT_DESC_*`).
QuantDescriptor quant_desc_8bit_per_tensor();            ///< QUANT_DESC_8BIT_PER_TENSOR
QuantDescriptor quant_desc_unsigned_8bit_per_tensor();   ///< QUANT_DESC_UNSIGNED_8BIT_PER_TENSOR
QuantDescriptor quant_desc_8bit_linear_weight_per_row(); ///< QUANT_DESC_8BIT_LINEAR_WEIGHT_PER_ROW (axis=(0))

/// Process-wide defaults used by QuantLinear and every model quantizer at construction time
/// (Python `QuantLinear.set_default_quant_desc_input/weight`). Thread-safe.
void set_default_quant_desc_input(const QuantDescriptor& desc);
void set_default_quant_desc_weight(const QuantDescriptor& desc);
QuantDescriptor default_quant_desc_input();
QuantDescriptor default_quant_desc_weight();

/// Python str() of an axis: "0" for an int, "(0,)" / "(0, 1)" for a tuple.
std::string axis_repr(const std::vector<int64_t>& axis, bool as_int);

/// Formats a double the way Python's repr() does ("1.0", "0.5", "1e-05").
std::string py_float_repr(double v);

}  // namespace qdqbert::nn
