#pragma once
/// \file
/// The one way to pick quantizers: every TensorQuantizer of a module tree with its role, its owner
/// module and its encoder layer (`list_quantizers`), and selectors over those (`QuantizerSelector`,
/// `select_quantizers`). Workflow code selects by role, layer and owner instead of testing name
/// suffixes.
///
/// How the role is decided (structurally, from the owner module and the child's registered name;
/// nn does not know the model classes):
///  - owner is a `QuantLinearImpl`: child `_input_quantizer` → kLinearInput, `_weight_quantizer` →
///    kLinearWeight;
///  - otherwise a child registered as `matmul_<x>_input_quantizer` → kMatmulInput (the four of
///    `QDQBertSelfAttention`), `add_<x>_input_quantizer` → kResidualAddInput (the two of
///    `QDQBertResidualOutput`);
///  - anything else → kOther.
/// A model that registers a quantizer under one of those names on another owner gets that role too:
/// the names are the contract (they are the Python attribute names, see docs/architecture.md).

#include <torch/nn/module.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qdqbert/nn/quantizer_role.h"
#include "qdqbert/nn/tensor_quantizer.h"

namespace qdqbert::nn {

/// The role named by `to_string`; c10::ValueError listing the names for anything else.
QuantizerRole parse_quantizer_role(const std::string& name);

/// One quantizer of a module tree.
struct QuantizerInfo {
  std::string name;           ///< full dotted name, e.g. "encoder.layer.0.attention.self.query._input_quantizer"
  TensorQuantizer quantizer{nullptr};  ///< the module itself (shared, not a copy)
  QuantizerRole role = QuantizerRole::kOther;
  /// Dotted path of the module that owns it, e.g. "encoder.layer.0.attention.self.query"; empty when
  /// the quantizer is a direct child of the root.
  std::string owner;
  /// i from the first "encoder.layer.<i>." in the name (at the start or after a '.'); nullopt outside
  /// the encoder layers (embeddings, pooler, heads).
  std::optional<int64_t> layer;
};

/// Every TensorQuantizer below `root` (not `root` itself), in registration order: the same names in the
/// same order as `qdqbert::named_quantizers(root)`.
std::vector<QuantizerInfo> list_quantizers(torch::nn::Module& root);

/// A filter on QuantizerInfo. Every criterion that is set must hold; an empty one matches anything, so a
/// default-constructed selector selects every quantizer.
struct QuantizerSelector {
  std::vector<QuantizerRole> roles;  ///< role is one of these (empty = any role)
  std::vector<int64_t> layers;       ///< layer is one of these (empty = any; set → quantizers without a layer never match)
  std::string name_regex;            ///< qdqbert::Regex (linear time), searched in the full name (empty = any)
  std::string owner_regex;           ///< qdqbert::Regex, searched in the owner path (empty = any)

  /// Whether `info` passes. Compiles the regexes on every call (use select_quantizers for a tree);
  /// c10::ValueError naming the pattern when one is invalid.
  bool matches(const QuantizerInfo& info) const;
  /// One line for logs, e.g. "role in {linear_input}, layer in {0, 1}, owner ~ /output\.dense$/";
  /// "any quantizer" when nothing is set.
  std::string describe() const;
};

/// The quantizers of `list_quantizers(root)` that `selector` matches, in the same order. The regexes are
/// compiled once, before the tree is walked: an invalid one is a c10::ValueError naming the pattern even
/// when the tree has no quantizer.
std::vector<QuantizerInfo> select_quantizers(torch::nn::Module& root, const QuantizerSelector& selector);

}  // namespace qdqbert::nn
