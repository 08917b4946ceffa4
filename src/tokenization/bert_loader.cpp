// BertTokenizer loading: vocab.txt, tokenizer_config.json / special_tokens_map.json, tokenizer.json.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qdqbert/io/file.h"
#include "qdqbert/json.h"
#include "qdqbert/error.h"
#include "qdqbert/tokenization/bert_tokenizer.h"

namespace qdqbert::tokenization {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const std::string& path, const char* what) {
  return io::read_file(path, std::string("BertTokenizer ") + what);
}

json parse_json(const std::string& text, const std::string& origin) {
  try {
    return qdqbert::parse_json(text, "BertTokenizer: " + origin);
  } catch (const JsonSyntaxError& e) {
    fail("BertTokenizer: malformed JSON in ", origin, ": ", e.parser_message());
  }
}

// A special token is written either as a string or as an AddedToken object {"content": ...}.
std::optional<std::string> token_string(const json& v, const std::string& key, const std::string& origin) {
  if (v.is_null()) return std::string();
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("BertTokenizer: ", origin, ": '", key, "' must be a string or an object with a string 'content'");
}

void apply_config(const json& c, BertTokenizerOptions& o, const std::string& origin) {
  if (!c.is_object()) fail("BertTokenizer: ", origin, " must hold a JSON object");
  auto get_bool = [&](const char* key, bool& dst) {
    if (!c.contains(key) || c[key].is_null()) return;
    if (!c[key].is_boolean()) fail("BertTokenizer: ", origin, ": '", key, "' must be a boolean");
    dst = c[key].get<bool>();
  };
  get_bool("do_lower_case", o.do_lower_case);
  get_bool("do_basic_tokenize", o.do_basic_tokenize);
  get_bool("tokenize_chinese_chars", o.tokenize_chinese_chars);
  get_bool("clean_up_tokenization_spaces", o.clean_up_tokenization_spaces);
  if (c.contains("strip_accents")) {
    const json& v = c["strip_accents"];
    if (v.is_null()) {
      o.strip_accents.reset();
    } else if (v.is_boolean()) {
      o.strip_accents = v.get<bool>();
    } else {
      fail("BertTokenizer: ", origin, ": 'strip_accents' must be null or a boolean");
    }
  }
  if (c.contains("never_split") && !c["never_split"].is_null()) {
    const json& v = c["never_split"];
    if (!v.is_array()) fail("BertTokenizer: ", origin, ": 'never_split' must be a list of strings");
    o.never_split.clear();
    for (const auto& w : v) {
      if (!w.is_string()) fail("BertTokenizer: ", origin, ": 'never_split' must be a list of strings");
      o.never_split.push_back(w.get<std::string>());
    }
  }
  if (c.contains("model_max_length")) {
    const json& v = c["model_max_length"];
    if (v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() < (int64_t(1) << 40)) {
      o.model_max_length = v.get<int64_t>();
    } else {
      o.model_max_length.reset();  // transformers' VERY_LARGE_INTEGER and friends: unbounded
    }
  }
  struct Role {
    const char* key;
    std::string* dst;
  } roles[] = {{"unk_token", &o.unk_token},
               {"sep_token", &o.sep_token},
               {"pad_token", &o.pad_token},
               {"cls_token", &o.cls_token},
               {"mask_token", &o.mask_token}};
  for (const auto& r : roles) {
    if (c.contains(r.key)) *r.dst = *token_string(c[r.key], r.key, origin);
  }
  if (c.contains("additional_special_tokens") && c["additional_special_tokens"].is_array()) {
    o.additional_special_tokens.clear();
    for (const auto& t : c["additional_special_tokens"]) {
      o.additional_special_tokens.push_back(*token_string(t, "additional_special_tokens", origin));
    }
  }
}

}  // namespace

std::vector<std::string> BertTokenizer::parse_vocab(const std::string& text, const std::string& origin) {
  std::vector<std::string> vocab;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    std::string line = text.substr(i, j - i);
    if (!line.empty() && line.back() == '\r') line.pop_back();  // Python's universal newlines
    utf8_to_code_points(line);                                  // invalid UTF-8 is a malformed vocabulary
    vocab.push_back(std::move(line));
    i = j + 1;
  }
  if (vocab.empty()) fail("BertTokenizer: the vocabulary ", origin, " is empty");
  return vocab;
}

BertTokenizer BertTokenizer::from_vocab_file(const std::string& path, BertTokenizerOptions options) {
  const std::string text = read_text(path, "vocabulary file");
  std::vector<std::string> vocab;
  try {
    vocab = parse_vocab(text, "'" + path + "'");
  } catch (const Error& e) {
    fail("BertTokenizer: malformed vocabulary '", path, "': ", e.what());
  }
  try {
    return BertTokenizer(std::move(vocab), std::move(options));
  } catch (const Error& e) {
    fail(e.what(), " [vocabulary '", path, "']");
  }
}

namespace {
BertTokenizer tokenizer_from_json(const json& j, const std::string& origin);
}  // namespace

BertTokenizer BertTokenizer::from_tokenizer_json(const std::string& json_text, const std::string& origin) {
  const json j = parse_json(json_text, origin);
  try {
    return tokenizer_from_json(j, origin);
  } catch (const json::exception& e) {
    // A field of the wrong JSON type deep inside (e.g. a numeric "type").
    fail("BertTokenizer: malformed ", origin, ": ", e.what());
  }
}

namespace {
BertTokenizer tokenizer_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) fail("BertTokenizer: ", origin, " must hold a JSON object");
  if (!j.contains("model") || !j["model"].is_object()) fail("BertTokenizer: ", origin, " has no 'model' object");
  const json& model = j["model"];
  if (model.contains("type") && model["type"] != "WordPiece") {
    fail("BertTokenizer: ", origin, ": model type ", model["type"].dump(), " is not WordPiece");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    fail("BertTokenizer: ", origin, ": 'model.vocab' must be an object of token -> id");
  }
  const json& v = model["vocab"];
  std::vector<std::string> vocab(v.size());
  std::vector<bool> seen(v.size(), false);
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_number_integer()) fail("BertTokenizer: ", origin, ": id of '", it.key(), "' is not an integer");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(v.size()) || seen[static_cast<size_t>(id)]) {
      fail("BertTokenizer: ", origin, ": the ids of model.vocab are not 0..", v.size() - 1, " (bad or repeated id ", id,
           " for '", it.key(), "')");
    }
    seen[static_cast<size_t>(id)] = true;
    vocab[static_cast<size_t>(id)] = it.key();
  }
  BertTokenizerOptions o;
  if (model.contains("unk_token") && model["unk_token"].is_string()) o.unk_token = model["unk_token"];
  if (model.contains("continuing_subword_prefix") && model["continuing_subword_prefix"].is_string()) {
    o.continuing_subword_prefix = model["continuing_subword_prefix"];
  }
  if (model.contains("max_input_chars_per_word") && model["max_input_chars_per_word"].is_number_integer()) {
    o.max_input_chars_per_word = model["max_input_chars_per_word"];
  }
  if (j.contains("normalizer") && j["normalizer"].is_object()) {
    const json& n = j["normalizer"];
    if (n.value("type", "") != "BertNormalizer") {
      fail("BertTokenizer: ", origin, ": normalizer ", n.value("type", std::string("?")),
           " is not supported (BertNormalizer only)");
    }
    if (n.contains("lowercase") && n["lowercase"].is_boolean()) o.do_lower_case = n["lowercase"];
    if (n.contains("handle_chinese_chars") && n["handle_chinese_chars"].is_boolean()) {
      o.tokenize_chinese_chars = n["handle_chinese_chars"];
    }
    if (n.contains("strip_accents") && n["strip_accents"].is_boolean())
      o.strip_accents = n["strip_accents"].get<bool>();
  }
  if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object()) {
    const std::string t = j["pre_tokenizer"].value("type", "");
    if (t != "BertPreTokenizer")
      fail("BertTokenizer: ", origin, ": pre_tokenizer ", t, " is not supported (BertPreTokenizer only)");
  }
  if (j.contains("padding") && j["padding"].is_object() && j["padding"].contains("pad_token") &&
      j["padding"]["pad_token"].is_string()) {
    o.pad_token = j["padding"]["pad_token"];
  }
  // Special tokens of added_tokens are split out of text; [MASK] / [PAD] fill their roles when present.
  bool has_mask = false;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string()) {
        fail("BertTokenizer: ", origin, ": every added_tokens entry needs a string 'content'");
      }
      const std::string c = t["content"];
      if (c == o.mask_token) has_mask = true;
      if (t.value("special", false) && c != o.unk_token && c != o.mask_token && c != o.pad_token && c != o.cls_token &&
          c != o.sep_token) {
        o.additional_special_tokens.push_back(c);
      }
    }
  }
  if (!has_mask && std::find(vocab.begin(), vocab.end(), o.mask_token) == vocab.end()) o.mask_token.clear();
  // Post-processor: TemplateProcessing or BertProcessing.
  std::optional<Template> tmpl;
  auto id_of = [&](const std::string& tok) -> int64_t {
    auto it = std::find(vocab.begin(), vocab.end(), tok);
    if (it == vocab.end()) fail("BertTokenizer: ", origin, ": post-processor token '", tok, "' is not in model.vocab");
    return it - vocab.begin();
  };
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    const json& p = j["post_processor"];
    const std::string type = p.value("type", "");
    if (type == "TemplateProcessing") {
      Template t;
      auto parse = [&](const char* key, std::vector<Template::Piece>& out) {
        if (!p.contains(key) || !p[key].is_array())
          fail("BertTokenizer: ", origin, ": TemplateProcessing needs '", key, "'");
        for (const auto& piece : p[key]) {
          Template::Piece q;
          if (piece.contains("Sequence")) {
            const json& s = piece["Sequence"];
            q.sequence = s.value("id", "A") == "B" ? 1 : 0;
            q.type_id = s.value("type_id", 0);
          } else if (piece.contains("SpecialToken")) {
            const json& s = piece["SpecialToken"];
            const std::string name = s.value("id", "");
            int64_t id = -1;
            if (p.contains("special_tokens") && p["special_tokens"].contains(name) &&
                p["special_tokens"][name].contains("ids") && p["special_tokens"][name]["ids"].is_array() &&
                p["special_tokens"][name]["ids"].size() == 1 &&
                p["special_tokens"][name]["ids"][0].is_number_integer()) {
              id = p["special_tokens"][name]["ids"][0].get<int64_t>();
            } else {
              id = id_of(name);
            }
            q.id = id;
            q.type_id = s.value("type_id", 0);
          } else {
            fail("BertTokenizer: ", origin, ": unknown TemplateProcessing piece ", piece.dump());
          }
          out.push_back(q);
        }
      };
      parse("single", t.single);
      parse("pair", t.pair);
      tmpl = t;
    } else if (type == "BertProcessing") {
      auto tok = [&](const char* key) -> std::string {
        if (!p.contains(key) || !p[key].is_array() || p[key].empty() || !p[key][0].is_string()) {
          fail("BertTokenizer: ", origin, ": BertProcessing needs '", key, "' = [token, id]");
        }
        return p[key][0];
      };
      o.cls_token = tok("cls");
      o.sep_token = tok("sep");
    } else if (!type.empty()) {
      fail("BertTokenizer: ", origin, ": post_processor ", type, " is not supported");
    }
  }
  BertTokenizer t(std::move(vocab), std::move(o));
  if (tmpl) {
    tmpl->pad_id = t.pad_token_id();
    t.set_post_processor(*tmpl);
  }
  return t;
}
}  // namespace

BertTokenizer BertTokenizer::from_pretrained(const std::string& path,
                                             const std::optional<BertTokenizerOptions>& overrides) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("BertTokenizer: '", path, "' does not exist (expected a folder or a vocab.txt)");
  if (!fs::is_directory(path, ec)) {
    if (fs::path(path).extension() == ".json") {
      return from_tokenizer_json(read_text(path, "tokenizer.json"), "'" + path + "'");
    }
    return from_vocab_file(path, overrides.value_or(BertTokenizerOptions{}));
  }
  const fs::path dir(path);
  BertTokenizerOptions o;
  for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const fs::path f = dir / name;
    if (fs::exists(f, ec))
      apply_config(parse_json(read_text(f.string(), name), "'" + f.string() + "'"), o, "'" + f.string() + "'");
  }
  if (overrides) o = *overrides;
  const fs::path tj = dir / "tokenizer.json";
  if (fs::exists(tj, ec) && !overrides) {
    BertTokenizer t = from_tokenizer_json(read_text(tj.string(), "tokenizer.json"), "'" + tj.string() + "'");
    if (o.model_max_length) {
      BertTokenizerOptions to = t.options();
      to.model_max_length = o.model_max_length;
      const Template tmpl = t.post_processor();
      std::vector<std::string> vocab;
      for (int64_t i = 0; i < t.vocab_size(); ++i) vocab.push_back(t.id_to_token(i));
      BertTokenizer r(std::move(vocab), to);
      r.set_post_processor(tmpl);
      return r;
    }
    return t;
  }
  const fs::path vf = dir / "vocab.txt";
  if (!fs::exists(vf, ec)) fail("BertTokenizer: '", path, "' has neither tokenizer.json nor vocab.txt");
  return from_vocab_file(vf.string(), o);
}

}  // namespace qdqbert::tokenization
