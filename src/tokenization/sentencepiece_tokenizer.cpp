// SentencePieceTokenizer: sentencepiece through the dlmopen'ed plugin, plus the shared encoding code.
#include "qdqbert/tokenization/sentencepiece_tokenizer.h"
#include "qdqbert/json.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "sentencepiece/qdqbert_spm_plugin.h"  // plugins/ (the plugin's C interface)
#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "tokenization/unicode.h"
#if __has_include("qdqbert/spm_plugin_paths.h")
#include "qdqbert/spm_plugin_paths.h"
#endif

namespace qdqbert::tokenization {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPluginName = "libqdqbert_spm.so";

struct PluginApi {
  std::string path;
  void* lib = nullptr;
  decltype(&qdqbert_spm_abi) abi = nullptr;
  decltype(&qdqbert_spm_load) load = nullptr;
  decltype(&qdqbert_spm_free) free_model = nullptr;
  decltype(&qdqbert_spm_encode) encode = nullptr;
  decltype(&qdqbert_spm_free_pieces) free_pieces = nullptr;
  decltype(&qdqbert_spm_piece_size) piece_size = nullptr;
  decltype(&qdqbert_spm_id_to_piece) id_to_piece = nullptr;
  decltype(&qdqbert_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&qdqbert_spm_special_ids) special_ids = nullptr;
  decltype(&qdqbert_spm_is_control) is_control = nullptr;
  decltype(&qdqbert_spm_decode) decode = nullptr;
  decltype(&qdqbert_spm_free_string) free_string = nullptr;
  decltype(&qdqbert_spm_train) train = nullptr;
};

std::vector<std::string> candidates(const std::string& explicit_path) {
  std::vector<std::string> out;
  if (!explicit_path.empty()) return {explicit_path};
  if (const char* env = std::getenv("QDQBERT_SPM_PLUGIN"); env && *env) out.push_back(env);
#ifdef QDQBERT_SPM_PLUGIN_BUILD_PATH
  out.push_back(QDQBERT_SPM_PLUGIN_BUILD_PATH);
  out.push_back(QDQBERT_SPM_PLUGIN_INSTALL_PATH);
#endif
  // Next to the module that holds this code (the program, or libqdqbert.so).
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&candidates), &info) && info.dli_fname) {
    std::error_code ec;
    const fs::path self = fs::canonical(fs::path(info.dli_fname), ec);
    if (!ec) {
      const fs::path dir = self.parent_path();
      for (const fs::path& d : {dir / "qdqbert", dir / ".." / "lib" / "qdqbert", dir / "..", dir}) {
        out.push_back((d / kPluginName).string());
      }
    }
  }
  return out;
}

const PluginApi& plugin(const std::string& explicit_path) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<PluginApi>> loaded;  // never unloaded: dlmopen namespaces are few
  std::lock_guard<std::mutex> lock(mu);
  const std::vector<std::string> paths = candidates(explicit_path);
  std::string tried;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      tried += "\n  " + p + " (absent)";
      continue;
    }
    const std::string canon = fs::canonical(p, ec).string();
    for (const auto& api : loaded) {
      if (api->path == canon) return *api;
    }
    void* lib = dlmopen(LM_ID_NEWLM, canon.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      tried += "\n  " + p + " (" + (e ? e : "dlmopen failed") + ")";
      continue;
    }
    auto api = std::make_unique<PluginApi>();
    api->path = canon;
    api->lib = lib;
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn) ok = false;
    };
    sym(api->abi, "qdqbert_spm_abi");
    sym(api->load, "qdqbert_spm_load");
    sym(api->free_model, "qdqbert_spm_free");
    sym(api->encode, "qdqbert_spm_encode");
    sym(api->free_pieces, "qdqbert_spm_free_pieces");
    sym(api->piece_size, "qdqbert_spm_piece_size");
    sym(api->id_to_piece, "qdqbert_spm_id_to_piece");
    sym(api->piece_to_id, "qdqbert_spm_piece_to_id");
    sym(api->special_ids, "qdqbert_spm_special_ids");
    sym(api->is_control, "qdqbert_spm_is_control");
    sym(api->decode, "qdqbert_spm_decode");
    sym(api->free_string, "qdqbert_spm_free_string");
    sym(api->train, "qdqbert_spm_train");
    if (!ok || api->abi() != QDQBERT_SPM_PLUGIN_ABI) {
      tried +=
          "\n  " + p + " (not a qdqbert sentencepiece plugin of ABI " + std::to_string(QDQBERT_SPM_PLUGIN_ABI) + ")";
      continue;  // leave it mapped: closing a namespace's last library is not always safe
    }
    loaded.push_back(std::move(api));
    return *loaded.back();
  }
  fail("SentencePieceTokenizer: cannot load the sentencepiece plugin ", kPluginName,
       " (set QDQBERT_SPM_PLUGIN to its path); tried:", tried);
}

}  // namespace

struct SentencePieceTokenizer::Impl {
  const PluginApi* api = nullptr;
  void* model = nullptr;
  SentencePieceTokenizerOptions opt;
  Template tmpl;
  int unk = -1, bos = -1, eos = -1, pad = -1;
  std::vector<std::string> pieces;
  std::unordered_map<std::string, int64_t> piece_ids;

  ~Impl() {
    if (model) api->free_model(model);
  }

  TokenizedText tokenize(std::string_view text) const {
    const std::u32string cps = utf8_to_code_points(text);  // validates, and maps bytes to code points
    std::string input;
    if (opt.do_lower_case) {
      unicode::Chars lowered;
      for (size_t i = 0; i < cps.size(); ++i) {
        unicode::lower_into(unicode::Char{cps[i], static_cast<int32_t>(i), static_cast<int32_t>(i + 1)}, lowered);
      }
      // Lower-casing may change byte lengths: keep a byte -> code point map of the lowered text.
      std::vector<int64_t> byte_cp;
      std::vector<int64_t> byte_cp_end;
      for (const auto& ch : lowered) {
        const size_t before = input.size();
        append_utf8(input, ch.c);
        for (size_t b = before; b < input.size(); ++b) {
          byte_cp.push_back(ch.start);
          byte_cp_end.push_back(ch.end);
        }
      }
      return run(input, byte_cp, byte_cp_end, static_cast<int64_t>(cps.size()));
    }
    input.assign(text);
    std::vector<int64_t> byte_cp, byte_cp_end;
    byte_cp.reserve(input.size());
    for (size_t i = 0; i < cps.size(); ++i) {
      std::string tmp;
      append_utf8(tmp, cps[i]);
      for (size_t b = 0; b < tmp.size(); ++b) {
        byte_cp.push_back(static_cast<int64_t>(i));
        byte_cp_end.push_back(static_cast<int64_t>(i + 1));
      }
    }
    return run(input, byte_cp, byte_cp_end, static_cast<int64_t>(cps.size()));
  }

  TokenizedText run(const std::string& input, const std::vector<int64_t>& byte_cp,
                    const std::vector<int64_t>& byte_cp_end, int64_t n_cp) const {
    qdqbert_spm_pieces p{};
    char err[512] = {0};
    if (api->encode(model, input.data(), input.size(), &p, err, sizeof err) != 0) {
      fail("SentencePieceTokenizer: encode failed: ", err);
    }
    TokenizedText out;
    for (size_t i = 0; i < p.n; ++i) {
      out.tokens.emplace_back(p.pieces[i]);
      out.ids.push_back(p.ids[i]);
      const size_t b = p.begins[i], e = p.ends[i];
      int64_t s = n_cp, t = n_cp;
      if (b < e && e <= byte_cp.size()) {
        s = byte_cp[b];
        t = byte_cp_end[e - 1];
      } else if (b < byte_cp.size()) {
        s = t = byte_cp[b];
      }
      out.offsets.push_back({s, t});
    }
    api->free_pieces(&p);
    return out;
  }
};

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, SentencePieceTokenizerOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = std::move(options);
  m.api = &plugin(m.opt.plugin_path);
  char err[1024] = {0};
  std::error_code ec;
  if (!fs::exists(model_path, ec)) fail("SentencePieceTokenizer: model file '", model_path, "' does not exist");
  if (m.api->load(model_path.c_str(), &m.model, err, sizeof err) != 0) {
    m.model = nullptr;
    fail("SentencePieceTokenizer: cannot load '", model_path, "': ", err);
  }
  m.api->special_ids(m.model, &m.unk, &m.bos, &m.eos, &m.pad);
  const int n = m.api->piece_size(m.model);
  m.pieces.reserve(static_cast<size_t>(n));
  std::vector<char> buf(256);
  for (int i = 0; i < n; ++i) {
    size_t len = m.api->id_to_piece(m.model, i, buf.data(), buf.size());
    if (len + 1 > buf.size()) {
      buf.resize(len + 1);
      len = m.api->id_to_piece(m.model, i, buf.data(), buf.size());
    }
    m.pieces.emplace_back(buf.data(), len);
    m.piece_ids.emplace(m.pieces.back(), i);
  }
  auto special = [&](const std::string& tok, int fallback, const char* role) -> int64_t {
    auto id = token_to_id(tok);
    if (id && *id != m.unk) return *id;
    if (fallback >= 0) return fallback;
    fail("SentencePieceTokenizer: the model '", model_path, "' has neither the ", role, " token '", tok, "' nor a ",
         role == std::string("cls") ? "bos" : "eos", " piece");
  };
  const int64_t cls = special(m.opt.cls_token, m.bos, "cls");
  const int64_t sep = special(m.opt.sep_token, m.eos, "sep");
  m.tmpl = Template::bert(cls, sep, m.pad >= 0 ? m.pad : 0);
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;
SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept = default;

SentencePieceTokenizer SentencePieceTokenizer::from_pretrained(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return SentencePieceTokenizer(path);
  SentencePieceTokenizerOptions o;
  fs::path model;
  for (const char* name : {"spiece.model", "sentencepiece.bpe.model", "tokenizer.model"}) {
    if (fs::exists(fs::path(path) / name, ec)) {
      model = fs::path(path) / name;
      break;
    }
  }
  if (model.empty()) {
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.path().extension() == ".model") {
        if (!model.empty()) fail("SentencePieceTokenizer: '", path, "' holds several .model files");
        model = e.path();
      }
    }
  }
  if (model.empty()) fail("SentencePieceTokenizer: '", path, "' holds no sentencepiece .model file");
  const fs::path cfg = fs::path(path) / "tokenizer_config.json";
  if (fs::exists(cfg, ec)) {
    nlohmann::json c;
    try {
      c = parse_json(io::read_file(cfg.string(), "SentencePieceTokenizer tokenizer_config.json"),
                     "SentencePieceTokenizer '" + cfg.string() + "'");
    } catch (const JsonSyntaxError& e) {
      fail("SentencePieceTokenizer: malformed JSON in '", cfg.string(), "': ", e.parser_message());
    }
    if (c.is_object()) {
      if (c.contains("do_lower_case") && c["do_lower_case"].is_boolean()) o.do_lower_case = c["do_lower_case"];
      if (c.contains("model_max_length") && c["model_max_length"].is_number_integer() &&
          c["model_max_length"].get<int64_t>() > 0 && c["model_max_length"].get<int64_t>() < (int64_t(1) << 40)) {
        o.model_max_length = c["model_max_length"].get<int64_t>();
      }
      for (auto [key, dst] :
           {std::pair<const char*, std::string*>{"cls_token", &o.cls_token}, {"sep_token", &o.sep_token}}) {
        if (c.contains(key) && c[key].is_string()) *dst = c[key];
        if (c.contains(key) && c[key].is_object() && c[key].contains("content") && c[key]["content"].is_string()) {
          *dst = c[key]["content"];
        }
      }
    }
  }
  return SentencePieceTokenizer(model.string(), o);
}

void SentencePieceTokenizer::train(const std::string& args, const std::string& plugin_path) {
  const PluginApi& api = plugin(plugin_path);
  char err[1024] = {0};
  if (api.train(args.c_str(), err, sizeof err) != 0) fail("SentencePieceTokenizer: training failed: ", err);
}

std::string SentencePieceTokenizer::plugin_location(const std::string& plugin_path) { return plugin(plugin_path).path; }

std::vector<std::string> SentencePieceTokenizer::tokenize(std::string_view text) const {
  return impl_->tokenize(text).tokens;
}
TokenizedText SentencePieceTokenizer::tokenize_with_offsets(std::string_view text) const {
  return impl_->tokenize(text);
}

std::optional<int64_t> SentencePieceTokenizer::model_max_length() const { return impl_->opt.model_max_length; }

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int32_t> v;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      fail("SentencePieceTokenizer: id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
    v.push_back(static_cast<int32_t>(id));
  }
  char* s = nullptr;
  char err[512] = {0};
  if (impl_->api->decode(impl_->model, v.data(), v.size(), &s, err, sizeof err) != 0) {
    fail("SentencePieceTokenizer: decode failed: ", err);
  }
  std::string out(s);
  impl_->api->free_string(s);
  return out;
}

std::string SentencePieceTokenizer::id_to_token(int64_t id) const { return convert_ids_to_tokens({id}).at(0); }

std::vector<std::string> SentencePieceTokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  for (int64_t id : ids) {
    out.push_back(id >= 0 && id < vocab_size() ? impl_->pieces[static_cast<size_t>(id)]
                                               : impl_->pieces[static_cast<size_t>(std::max(impl_->unk, 0))]);
  }
  return out;
}

std::optional<int64_t> SentencePieceTokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->piece_ids.find(token);
  if (it == impl_->piece_ids.end()) return std::nullopt;
  return it->second;
}

int64_t SentencePieceTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->pieces.size()); }
int64_t SentencePieceTokenizer::unk_token_id() const { return impl_->unk; }
int64_t SentencePieceTokenizer::pad_token_id() const { return impl_->tmpl.pad_id; }
const Template& SentencePieceTokenizer::post_processor() const { return impl_->tmpl; }

}  // namespace qdqbert::tokenization
