#include "qdqbert/io/checkpoint.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/checkpoint_source.h"
#include "qdqbert/io/atomic_file.h"
#include "qdqbert/io/file.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/json.h"
#include "qdqbert/strings.h"

namespace qdqbert::io {

namespace fs = std::filesystem;

namespace {

// A sharded checkpoint: the index names, for each tensor, the shard file that holds it. Shards are plain
// file names in the index's folder (a name with a path separator or "..", or an absolute path, could
// otherwise read any file on the machine), and the index and the shards must agree: each listed tensor
// is in its own shard, and no tensor is in two shards.
TensorSources open_sharded(const std::string& index_path, bool bin) {
  const nlohmann::json j = parse_json(read_file(index_path, "checkpoint index"), "checkpoint index '" + index_path + "'");
  TORCH_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "checkpoint: '", index_path,
              "' has no weight_map object");
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::string> wanted;  // tensor -> shard
  std::set<std::string> shards;
  for (const auto& [k, v] : j["weight_map"].items()) {
    TORCH_CHECK(v.is_string(), "checkpoint: '", index_path, "': weight_map entry '", k, "' is not a file name");
    const std::string shard = v.get<std::string>();
    TORCH_CHECK(!shard.empty() && shard != "." && shard != ".." && shard.find('/') == std::string::npos &&
                    shard.find('\\') == std::string::npos && shard.find('\0') == std::string::npos,
                "checkpoint: '", index_path, "': weight_map entry '", k, "' names the shard '", shard,
                "', which is not a file name in the index's folder");
    wanted[k] = shard;
    shards.insert(shard);
  }
  TORCH_CHECK(!shards.empty(), "checkpoint: '", index_path, "': weight_map is empty");
  TensorSources out;
  std::map<std::string, std::string> found_in;  // tensor -> shard
  for (const auto& shard : shards) {
    const std::string p = (dir / shard).string();
    TORCH_CHECK(fs::exists(p), "checkpoint: shard '", p, "' listed in '", index_path, "' does not exist");
    // A symbolic link may still point elsewhere: the resolved shard must be inside the resolved folder.
    std::error_code ec;
    const fs::path real_dir = fs::canonical(dir.empty() ? fs::path(".") : dir, ec), real = fs::canonical(p, ec);
    TORCH_CHECK(!ec && real.parent_path() == real_dir, "checkpoint: shard '", p, "' listed in '", index_path,
                "' resolves to '", real.string(), "', outside the checkpoint folder");
    TensorSources part = bin ? open_pytorch_bin(p) : open_safetensors(p);
    for (auto& [k, t] : part) {
      const auto [it, fresh] = found_in.emplace(k, shard);
      TORCH_CHECK(fresh, "checkpoint: tensor '", k, "' is in two shards of '", index_path, "': '", it->second,
                  "' and '", shard, "'");
      const auto listed = wanted.find(k);
      TORCH_CHECK(listed != wanted.end(), "checkpoint: shard '", shard, "' holds the tensor '", k,
                  "', which '", index_path, "' does not list (the index and its shards disagree)");
      out[k] = std::move(t);
    }
  }
  for (const auto& [k, shard] : wanted) {
    const auto it = found_in.find(k);
    TORCH_CHECK(it != found_in.end() && it->second == shard, "checkpoint: tensor '", k, "' listed in '", index_path,
                "' is not in shard '", shard, "'", it == found_in.end() ? "" : " (it is in '" + it->second + "')");
  }
  return out;
}

// Keys of the encoder proper (embeddings and layers); quantizer state (`_amax`, learned clip bounds) is
// not among them: a float checkpoint has none of it.
bool in_encoder(const std::string& key, const std::string& prefix) {
  if (key.find("_quantizer.") != std::string::npos) return false;
  return key.rfind(prefix + "embeddings.", 0) == 0 || key.rfind(prefix + "encoder.", 0) == 0;
}

// The first non-finite element of a floating tensor, as "N non-finite values (first: nan at index i)".
std::string non_finite_summary(const at::Tensor& t) {
  const at::Tensor bad = torch::logical_not(torch::isfinite(t.reshape(-1)));
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return "";
  const int64_t first = bad.nonzero().index({0, 0}).item<int64_t>();
  return std::to_string(count) + " non-finite value" + (count == 1 ? "" : "s") + " (first: " +
         c10::str(t.reshape(-1)[first].item<double>()) + " at flat index " + std::to_string(first) + ")";
}

// NaN or Inf weights would turn every output into NaN with exit 0; refused unless the caller opts in.
void check_finite(const at::Tensor& value, const std::string& key, const std::string& source) {
  if (!value.is_floating_point() || value.numel() == 0 || torch::isfinite(value).all().item<bool>()) return;
  TORCH_CHECK_VALUE(false, "checkpoint '", source, "': tensor '", key, "' has ", non_finite_summary(value),
                    " (PretrainedOptions::allow_non_finite / --allow-non-finite loads it anyway)");
}

// A stored amax must be a non-negative range and not infinite: +inf gives all-NaN outputs and an
// infinite ONNX scale. NaN stays loadable: it is how a calibrator that saw no data marks its quantizer
// (a disabled one can carry it), and fake quant refuses it at the first forward of an enabled quantizer.
void check_amax(const at::Tensor& value, const std::string& key, const std::string& source) {
  if (value.numel() == 0) return;
  const at::Tensor v = value.to(torch::kDouble);
  TORCH_CHECK_VALUE(!v.isinf().any().item<bool>(), "checkpoint '", source, "': quantizer range '", key,
                    "' is infinite; an amax must be finite");
  const at::Tensor known = v.masked_select(v.isnan().logical_not());
  TORCH_CHECK_VALUE(known.numel() == 0 || known.min().item<double>() >= 0, "checkpoint '", source,
                    "': quantizer range '", key, "' has the negative value ",
                    known.numel() ? known.min().item<double>() : 0.0, "; an amax must be >= 0");
}

void list_keys(std::ostream& os, const char* what, const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  os << " " << what << " (" << keys.size() << "):";
  for (const auto& k : keys) os << " " << k;
  os << ";";
}

}  // namespace

TensorSources open_checkpoint(const std::string& path) {
  TORCH_CHECK(fs::exists(path), "checkpoint: '", path, "' does not exist");
  if (!fs::is_directory(path)) {  // a file, or a special file that the readers refuse by name
    if (ends_with(path, ".safetensors")) return open_safetensors(path);
    if (ends_with(path, ".safetensors.index.json")) return open_sharded(path, false);
    if (ends_with(path, ".bin.index.json")) return open_sharded(path, true);
    if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth")) return open_pytorch_bin(path);
    TORCH_CHECK(false, "checkpoint: unknown weight file type '", path, "'");
  }
  const fs::path dir(path);
  for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                           "pytorch_model.bin.index.json"}) {
    if (fs::exists(dir / name)) return open_checkpoint((dir / name).string());
  }
  TORCH_CHECK(false, "checkpoint: no weights in '", path,
              "' (looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, "
              "pytorch_model.bin.index.json)");
}

std::map<std::string, at::Tensor> read_checkpoint(const std::string& path) {
  // A single safetensors file keeps its zero-copy read; everything else is read through its sources.
  const std::string single = fs::is_directory(path) ? (fs::path(path) / "model.safetensors").string() : path;
  if (ends_with(single, ".safetensors") && fs::exists(single)) return load_safetensors(single);
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, source] : open_checkpoint(path)) out[k] = source.read();
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> state_dict(torch::nn::Module& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  // Every registered name, so both names of a tied weight are listed (as Python's state_dict does).
  for (const auto& p : model.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

namespace {

// Whether no element of `n` IEEE values has an all-ones exponent (Inf or NaN), from their bits: one pass
// that allocates nothing (torch::isfinite's temporaries, freed piece after piece, left the heap fragmented
// by ~20 MiB on a MiniLM load).
template <typename Bits>
bool exponents_finite(const void* data, int64_t n, Bits exponent) {
  const Bits* p = static_cast<const Bits*>(data);
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) bad |= (p[i] & exponent) == exponent;
  return !bad;
}

bool all_finite(const at::Tensor& t) {
  if (!t.is_contiguous()) return torch::isfinite(t).all().item<bool>();
  switch (t.scalar_type()) {
    case at::kFloat:
      return exponents_finite<uint32_t>(t.data_ptr(), t.numel(), 0x7f800000u);
    case at::kDouble:
      return exponents_finite<uint64_t>(t.data_ptr(), t.numel(), 0x7ff0000000000000ull);
    case at::kHalf:
      return exponents_finite<uint16_t>(t.data_ptr(), t.numel(), 0x7c00);
    case at::kBFloat16:
      return exponents_finite<uint16_t>(t.data_ptr(), t.numel(), 0x7f80);
    default:
      return torch::isfinite(t).all().item<bool>();
  }
}

// Copies a checkpoint tensor into its model tensor. NaN and Inf are looked for as it is read, a piece at a
// time (unless allowed), and named with check_finite's message, computed on the whole tensor.
void copy_checked(const TensorSource& value, const at::Tensor& dst, const std::string& key, const std::string& source,
                  bool allow_non_finite) {
  TensorSource::Accept finite;
  if (!allow_non_finite && value.is_floating_point()) finite = all_finite;
  if (value.copy_to(dst, finite)) return;
  check_finite(value.read(), key, source);
  TORCH_INTERNAL_ASSERT(false, "checkpoint '", source, "': tensor '", key, "' was not finite once, then finite");
}

// load_state_dict over tensors read when used: what load_state_dict (in memory) and load_checkpoint
// (streamed from the files) share, so both check, name and report alike.
LoadReport load_sources(TaskModel& model, const TensorSources& state_in, bool strict, const std::string& source,
                        bool allow_non_finite) {
  TORCH_CHECK_VALUE(!state_in.empty(), "checkpoint '", source, "' holds no tensors");
  torch::nn::Module& root = model.module();
  LoadReport report;
  // Model side: parameters/buffers by name, and quantizers (whose `_amax` may be absent until loaded).
  std::map<std::string, at::Tensor> targets;
  for (const auto& [k, v] : state_dict(root)) targets[k] = v;
  std::map<std::string, nn::TensorQuantizer> quantizers;
  for (auto& [name, q] : named_quantizers(root)) quantizers.emplace(name, q);

  const std::string prefix = model.base_prefix();
  bool has_prefix = false, has_bare = false;
  for (const auto& [k, v] : state_in) {
    if (k.rfind("bert.", 0) == 0) has_prefix = true;
    if (k.rfind("embeddings.", 0) == 0 || k.rfind("encoder.", 0) == 0) has_bare = true;
  }
  std::set<const void*> loaded_impls;
  std::set<std::string> loaded_names;
  std::vector<std::string> unexpected_mapped;  // unexpected keys after prefix/LayerNorm renaming
  torch::NoGradGuard no_grad;
  for (const auto& [key_in, value] : state_in) {
    std::string key = key_in;
    if (prefix.empty() && has_prefix) {
      if (key.rfind("bert.", 0) != 0) {
        report.ignored_keys.push_back(key_in);  // head weights of a BertFor*/QDQBertFor* checkpoint
        continue;
      }
      key = key.substr(5);
    } else if (!prefix.empty() && !has_prefix && has_bare &&
               (key.rfind("embeddings.", 0) == 0 || key.rfind("encoder.", 0) == 0 || key.rfind("pooler.", 0) == 0)) {
      key = prefix + key;
    }
    if (ends_with(key, ".gamma")) key = key.substr(0, key.size() - 6) + ".weight";
    if (ends_with(key, ".beta")) key = key.substr(0, key.size() - 5) + ".bias";
    if (ends_with(key, "embeddings.position_ids") || ends_with(key, "embeddings.token_type_ids")) {
      report.ignored_keys.push_back(key_in);
      continue;
    }
    if (ends_with(key, "._amax")) {
      auto it = quantizers.find(key.substr(0, key.size() - 6));
      if (it != quantizers.end()) {
        TORCH_CHECK_VALUE(value.is_floating_point(), "checkpoint '", source, "': '", key_in,
                          "' must be floating point, got ", value.dtype());
        const at::Tensor amax = value.read();
        check_amax(amax, key_in, source);
        it->second->set_amax(amax.to(torch::kFloat), /*allow_shape_change=*/true);
        report.loaded_amax.push_back(it->first);
        loaded_names.insert(key);
        continue;
      }
    }
    auto t = targets.find(key);
    if (t == targets.end()) {
      report.unexpected_keys.push_back(key_in);
      unexpected_mapped.push_back(key);
      continue;
    }
    at::Tensor& dst = t->second;
    TORCH_CHECK_VALUE(dst.sizes() == value.sizes(), "checkpoint '", source, "': tensor '", key_in, "' has shape ",
                      value.sizes(), " but the model's '", key, "' has shape ", dst.sizes(),
                      " (does config.json match the weights?)");
    TORCH_CHECK_VALUE(value.is_floating_point() == dst.is_floating_point(), "checkpoint '", source, "': tensor '",
                      key_in, "' has dtype ", value.dtype(), ", expected ", dst.scalar_type());
    copy_checked(value, dst, key_in, source, allow_non_finite);
    loaded_impls.insert(dst.unsafeGetTensorImpl());
    loaded_names.insert(key);
  }
  for (const auto& [k, v] : targets) {
    if (loaded_names.count(k) || loaded_impls.count(v.unsafeGetTensorImpl())) continue;
    report.missing_keys.push_back(k);
  }
  model.tie_weights();
  if (strict && (!report.missing_keys.empty() || !report.unexpected_keys.empty())) {
    std::ostringstream os;
    os << "checkpoint '" << source << "' does not match " << model.class_name() << " (strict load):";
    list_keys(os, "missing keys", report.missing_keys);
    list_keys(os, "unexpected keys", report.unexpected_keys);
    os << " (without --strict / PretrainedOptions::strict, missing head weights are initialized and unused "
          "tensors reported)";
    TORCH_CHECK(false, os.str());
  }
  // Head weights may be new and checkpoint tensors unused, but the encoder must be the checkpoint's own.
  std::vector<std::string> missing_encoder, unexpected_encoder;
  for (const auto& k : report.missing_keys) {
    if (in_encoder(k, prefix)) missing_encoder.push_back(k);
  }
  for (const auto& k : unexpected_mapped) {
    if (in_encoder(k, prefix)) unexpected_encoder.push_back(k);
  }
  if (!missing_encoder.empty() || !unexpected_encoder.empty()) {
    std::ostringstream os;
    os << "checkpoint '" << source << "' does not match the encoder of " << model.class_name()
       << " (do config.json and the weights describe the same model?):";
    list_keys(os, "missing encoder keys", missing_encoder);
    list_keys(os, "unexpected encoder keys", unexpected_encoder);
    TORCH_CHECK(false, os.str());
  }
  return report;
}

}  // namespace

LoadReport load_state_dict(TaskModel& model, const std::map<std::string, at::Tensor>& state, bool strict,
                           const std::string& source, bool allow_non_finite) {
  TensorSources sources;
  for (const auto& [k, v] : state) sources.emplace_hint(sources.end(), k, TensorSource::in_memory(v));
  return load_sources(model, sources, strict, source, allow_non_finite);
}

LoadReport load_checkpoint(TaskModel& model, const std::string& path, bool strict, bool allow_non_finite) {
  return load_sources(model, open_checkpoint(path), strict, path, allow_non_finite);
}

std::string LoadReport::summary(const std::string& class_name, const std::string& source) const {
  if (missing_keys.empty() && unexpected_keys.empty()) return "";
  auto first = [](const std::vector<std::string>& keys) {
    std::string out;
    for (size_t i = 0; i < keys.size() && i < 4; ++i) out += (i ? ", " : "") + keys[i];
    if (keys.size() > 4) out += ", ... " + std::to_string(keys.size() - 4) + " more";
    return out;
  };
  std::ostringstream os;
  os << "qdqbert: " << class_name << " from '" << source << "':";
  if (!missing_keys.empty()) {
    os << " " << missing_keys.size() << " weight" << (missing_keys.size() == 1 ? "" : "s")
       << " newly initialized (" << first(missing_keys) << ")";
  }
  if (!unexpected_keys.empty()) {
    os << (missing_keys.empty() ? " " : "; ") << unexpected_keys.size() << " checkpoint tensor"
       << (unexpected_keys.size() == 1 ? "" : "s") << " not used (" << first(unexpected_keys) << ")";
  }
  if (!missing_keys.empty()) os << "; fine-tune before predicting";
  return os.str();
}

std::shared_ptr<TaskModel> from_pretrained(const std::string& dir, const PretrainedOptions& options,
                                           LoadReport* report) {
  const fs::path d(dir);
  TORCH_CHECK(fs::is_directory(d), "from_pretrained: '", dir, "' is not a directory");
  TORCH_CHECK(fs::exists(d / "config.json"), "from_pretrained: '", dir, "' has no config.json");
  Config config = Config::from_json_file((d / "config.json").string());
  if (options.quant_desc_input) config.quant_desc_input = options.quant_desc_input;
  if (options.quant_desc_weight) config.quant_desc_weight = options.quant_desc_weight;
  if (options.num_labels) config.set_num_labels(*options.num_labels);
  std::string task = options.task;
  if (task.empty() && config.architectures && !config.architectures->empty()) {
    task = task_for_class(config.architectures->front());
  }
  if (task.empty()) task = "base";
  std::shared_ptr<TaskModel> model;
  try {
    model = create_model(task, config);
  } catch (const c10::Error& e) {
    TORCH_CHECK_VALUE(false, "from_pretrained: '", (d / "config.json").string(), "': ", e.what_without_backtrace());
  }
  LoadReport r = load_checkpoint(*model, dir, options.strict, options.allow_non_finite);
  if (options.log_summary) {
    const std::string line = r.summary(model->class_name(), dir);
    if (!line.empty()) std::cerr << line << std::endl;
  }
  if (report) *report = r;
  model->module().eval();
  return model;
}

void save_pretrained(TaskModel& model, const std::string& dir,
                     const std::vector<std::pair<std::string, std::string>>& extra_files) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec && fs::is_directory(dir), "save_pretrained: cannot create directory '", dir, "': ", ec.message());
  Config config = model.model_config();
  config.architectures = std::vector<std::string>{model.class_name()};
  nlohmann::json extra = parse_json(config.raw_json, "save_pretrained: config of '" + dir + "'");
  extra["torch_dtype"] = "float32";
  extra["model_type"] = "qdqbert";
  config.raw_json = extra.dump();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::set<std::string> names;
  for (auto& [k, v] : state_dict(model.module())) {
    if (names.insert(k).second) tensors.emplace_back(k, v.detach().to(torch::kCPU).contiguous());
  }
  // All files or none: a failure on any of them (a full disk, config.json being a folder) leaves the
  // folder as it was.
  AtomicFileGroup group;
  write_safetensors(group.add((fs::path(dir) / "model.safetensors").string()), tensors, {{"format", "pt"}});
  group.add((fs::path(dir) / "config.json").string()).write(config.to_json_string() + "\n");
  for (const auto& [name, bytes] : extra_files) group.add((fs::path(dir) / name).string()).write(bytes);
  group.commit();
}

std::vector<std::pair<std::string, std::string>> tokenizer_files(const std::string& from_dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* f : {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
                        "sentencepiece.bpe.model"}) {
    const fs::path src = fs::path(from_dir) / f;
    if (fs::exists(src)) out.emplace_back(f, read_file(src.string(), "tokenizer file"));
  }
  return out;
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  const auto files = tokenizer_files(from_dir);
  TORCH_CHECK_VALUE(!files.empty(), "'", from_dir, "' has no tokenizer files (vocab.txt, tokenizer.json, ...)");
  AtomicFileGroup group;
  for (const auto& [name, bytes] : files) group.add((fs::path(to_dir) / name).string()).write(bytes);
  group.commit();
}

}  // namespace qdqbert::io
