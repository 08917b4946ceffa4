#include "qdqbert/nn/quantizer_select.h"

#include <torch/torch.h>

#include <algorithm>
#include <charconv>

#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/error.h"
#include "qdqbert/regex.h"
#include "qdqbert/strings.h"

namespace qdqbert::nn {

namespace {

// i of the first "encoder.layer.<i>." that starts the name or follows a '.'.
std::optional<int64_t> layer_of(const std::string& name) {
  static const std::string key = "encoder.layer.";
  for (size_t pos = name.find(key); pos != std::string::npos; pos = name.find(key, pos + 1)) {
    if (pos != 0 && name[pos - 1] != '.') continue;
    const size_t begin = pos + key.size();
    size_t end = begin;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == begin || end >= name.size() || name[end] != '.') continue;
    int64_t i = 0;
    const auto [ptr, ec] = std::from_chars(name.data() + begin, name.data() + end, i);
    if (ec == std::errc() && ptr == name.data() + end) return i;
  }
  return std::nullopt;
}

// The role of the quantizer registered as `child` on `owner` (see the header).
QuantizerRole role_of(const torch::nn::Module& owner, const std::string& child) {
  if (dynamic_cast<const QuantLinearImpl*>(&owner) != nullptr) {
    if (child == "_input_quantizer") return QuantizerRole::kLinearInput;
    if (child == "_weight_quantizer") return QuantizerRole::kLinearWeight;
  }
  if (ends_with(child, "_input_quantizer")) {
    if (starts_with(child, "matmul_")) return QuantizerRole::kMatmulInput;
    if (starts_with(child, "add_")) return QuantizerRole::kResidualAddInput;
  }
  return QuantizerRole::kOther;
}

std::optional<Regex> compile(const std::string& pattern, const char* field) {
  if (pattern.empty()) return std::nullopt;
  std::string error;
  try {
    return Regex(pattern, std::string("quantizer selector: ") + field);
  } catch (const Error& e) {
    error = e.what();
  }
  TORCH_CHECK_VALUE(false, error);
  return std::nullopt;  // not reached
}

// A selector with its regexes compiled.
struct Compiled {
  const QuantizerSelector& s;
  std::optional<Regex> name, owner;

  explicit Compiled(const QuantizerSelector& selector)
      : s(selector), name(compile(selector.name_regex, "name_regex")), owner(compile(selector.owner_regex, "owner_regex")) {}

  bool matches(const QuantizerInfo& info) const {
    if (!s.roles.empty() && std::find(s.roles.begin(), s.roles.end(), info.role) == s.roles.end()) return false;
    if (!s.layers.empty() && (!info.layer || std::find(s.layers.begin(), s.layers.end(), *info.layer) == s.layers.end())) {
      return false;
    }
    if (name && !name->search(info.name)) return false;
    if (owner && !owner->search(info.owner)) return false;
    return true;
  }
};

}  // namespace

QuantizerRole parse_quantizer_role(const std::string& name) {
  const auto role = find_quantizer_role(name);
  TORCH_CHECK_VALUE(role.has_value(), "unknown quantizer role '", name, "' (expected one of ", quantizer_role_names(), ")");
  return *role;
}

std::vector<QuantizerInfo> list_quantizers(torch::nn::Module& root) {
  // The same walk as named_quantizers (named_modules, pre-order): same names, same order.
  const auto modules = root.named_modules("", /*include_self=*/false);
  std::vector<QuantizerInfo> out;
  for (const auto& item : modules) {
    auto q = std::dynamic_pointer_cast<TensorQuantizerImpl>(item.value());
    if (!q) continue;
    QuantizerInfo info;
    info.name = item.key();
    const size_t dot = info.name.rfind('.');  // registered names never contain '.'
    info.owner = dot == std::string::npos ? std::string() : info.name.substr(0, dot);
    const std::string child = dot == std::string::npos ? info.name : info.name.substr(dot + 1);
    const torch::nn::Module* owner = &root;
    if (!info.owner.empty()) {
      const auto* found = modules.find(info.owner);
      TORCH_INTERNAL_ASSERT(found != nullptr, "list_quantizers: no module '", info.owner, "'");
      owner = found->get();
    }
    info.role = role_of(*owner, child);
    info.layer = layer_of(info.name);
    info.quantizer = TensorQuantizer(q);
    out.push_back(std::move(info));
  }
  return out;
}

bool QuantizerSelector::matches(const QuantizerInfo& info) const { return Compiled(*this).matches(info); }

std::string QuantizerSelector::describe() const {
  std::string out;
  auto part = [&out](const std::string& p) { out += (out.empty() ? "" : ", ") + p; };
  if (!roles.empty()) {
    std::string r;
    for (QuantizerRole role : roles) r += (r.empty() ? "" : ", ") + std::string(to_string(role));
    part("role in {" + r + "}");
  }
  if (!layers.empty()) {
    std::string l;
    for (int64_t i : layers) l += (l.empty() ? "" : ", ") + std::to_string(i);
    part("layer in {" + l + "}");
  }
  if (!name_regex.empty()) part("name ~ /" + name_regex + "/");
  if (!owner_regex.empty()) part("owner ~ /" + owner_regex + "/");
  return out.empty() ? "any quantizer" : out;
}

std::vector<QuantizerInfo> select_quantizers(torch::nn::Module& root, const QuantizerSelector& selector) {
  const Compiled compiled(selector);
  std::vector<QuantizerInfo> out;
  for (auto& info : list_quantizers(root)) {
    if (compiled.matches(info)) out.push_back(std::move(info));
  }
  return out;
}

}  // namespace qdqbert::nn
