// RequestRunner: the JSON request/answer format of `qdqbert-cli tokenize --requests`.
#include "qdqbert/tokenization/request.h"
#include "qdqbert/json.h"

#include <nlohmann/json.hpp>

#include "qdqbert/error.h"

namespace qdqbert::tokenization {
using nlohmann::json;

namespace {

json offsets_json(const std::vector<Offset>& offs) {
  json a = json::array();
  for (const auto& [s, e] : offs) a.push_back(json::array({s, e}));
  return a;
}

json encoding_json(const Encoding& e, bool windowed) {
  json j;
  j["input_ids"] = e.input_ids;
  j["token_type_ids"] = e.token_type_ids;
  j["attention_mask"] = e.attention_mask;
  j["special_tokens_mask"] = e.special_tokens_mask;
  j["offset_mapping"] = offsets_json(e.offset_mapping);
  if (windowed) {
    json s = json::array();
    for (int id : e.sequence_ids) s.push_back(id < 0 ? json(nullptr) : json(id));
    j["sequence_ids"] = s;
  }
  return j;
}

EncodeOptions parse_call(const json& c) {
  EncodeOptions o;
  if (c.contains("add_special_tokens") && !c["add_special_tokens"].is_null())
    o.add_special_tokens = c["add_special_tokens"].get<bool>();
  if (c.contains("truncation")) {
    const json& t = c["truncation"];
    if (t.is_boolean()) {
      o.truncation = t.get<bool>() ? Truncation::LongestFirst : Truncation::None;
    } else if (t.is_string()) {
      o.truncation = parse_truncation(t.get<std::string>());
    } else if (!t.is_null()) {
      fail("request: 'truncation' must be null, a boolean or a strategy name");
    }
  }
  if (c.contains("max_length") && !c["max_length"].is_null()) o.max_length = c["max_length"].get<int64_t>();
  if (c.contains("padding")) {
    const json& p = c["padding"];
    if (p.is_boolean()) {
      o.padding = p.get<bool>() ? Padding::Longest : Padding::None;
    } else if (p.is_string()) {
      o.padding = parse_padding(p.get<std::string>());
    } else if (!p.is_null()) {
      fail("request: 'padding' must be a boolean or a strategy name");
    }
  }
  if (c.contains("stride") && !c["stride"].is_null()) o.stride = c["stride"].get<int64_t>();
  if (c.contains("return_overflowing_tokens") && !c["return_overflowing_tokens"].is_null()) {
    o.return_overflowing_tokens = c["return_overflowing_tokens"].get<bool>();
  }
  return o;
}

std::vector<std::string> strings_of(const json& v, const char* key) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const auto& s : v) {
      if (!s.is_string()) fail("request: every entry of '", key, "' must be a string");
      out.push_back(s.get<std::string>());
    }
  } else {
    fail("request: '", key, "' must be a string or a list of strings");
  }
  return out;
}

}  // namespace

RequestRunner::RequestRunner(BertTokenizer base) : base_(std::move(base)) {}

const BertTokenizer& RequestRunner::tokenizer_for(const std::string& init_json) {
  auto it = cache_.find(init_json);
  if (it != cache_.end()) return *it->second;
  const json init = parse_json(init_json, "request: 'init'");
  BertTokenizerOptions o = base_.options();
  if (!init.is_null()) {
    if (!init.is_object()) fail("request: 'init' must be an object");
    for (auto kv = init.begin(); kv != init.end(); ++kv) {
      const std::string& k = kv.key();
      const json& v = kv.value();
      if (k == "do_lower_case") {
        o.do_lower_case = v.get<bool>();
      } else if (k == "do_basic_tokenize") {
        o.do_basic_tokenize = v.get<bool>();
      } else if (k == "tokenize_chinese_chars") {
        o.tokenize_chinese_chars = v.get<bool>();
      } else if (k == "strip_accents") {
        o.strip_accents = v.is_null() ? std::optional<bool>() : std::optional<bool>(v.get<bool>());
      } else if (k == "never_split") {
        o.never_split = v.is_null() ? std::vector<std::string>() : v.get<std::vector<std::string>>();
      } else if (k == "model_max_length") {
        o.model_max_length = v.is_null() ? std::optional<int64_t>() : std::optional<int64_t>(v.get<int64_t>());
      } else {
        fail("request: unsupported init option '", k, "'");
      }
    }
  }
  std::vector<std::string> vocab;
  vocab.reserve(static_cast<size_t>(base_.vocab_size()));
  for (int64_t i = 0; i < base_.vocab_size(); ++i) vocab.push_back(base_.id_to_token(i));
  auto t = std::make_unique<BertTokenizer>(std::move(vocab), o);
  if (cache_.size() >= 16) cache_.clear();  // requests rarely vary their init; keep memory bounded
  t->set_post_processor(base_.post_processor());
  return *cache_.emplace(init_json, std::move(t)).first->second;
}

std::string RequestRunner::run(const std::string& request_line) {
  json out = json::object();
  try {
    const json req = parse_json(request_line, "request");
    if (!req.is_object() || !req.contains("call") || !req["call"].is_object()) {
      fail("request: expected an object with a 'call' object");
    }
    const BertTokenizer& tok = tokenizer_for(req.contains("init") ? req["init"].dump() : "null");
    const json& call = req["call"];
    const EncodeOptions o = parse_call(call);
    if (!call.contains("text")) fail("request: 'call' has no 'text'");
    const bool batch = call["text"].is_array();
    const std::vector<std::string> texts = strings_of(call["text"], "text");
    std::vector<std::string> pairs;
    if (call.contains("text_pair") && !call["text_pair"].is_null()) pairs = strings_of(call["text_pair"], "text_pair");
    if (!pairs.empty() && pairs.size() != texts.size()) fail("request: 'text' and 'text_pair' differ in length");
    if (batch != (call.contains("text_pair") && call["text_pair"].is_array()) && !pairs.empty()) {
      fail("request: 'text' and 'text_pair' must both be strings or both be lists");
    }
    const bool has_pair = !pairs.empty();
    // tokens (no special tokens)
    json tokens = json::array(), tokens_pair = json::array();
    for (size_t i = 0; i < texts.size(); ++i) {
      tokens.push_back(tok.tokenize(texts[i]));
      if (has_pair) tokens_pair.push_back(tok.tokenize(pairs[i]));
    }
    out["tokens"] = batch ? tokens : tokens[0];
    if (has_pair) out["tokens_pair"] = batch ? tokens_pair : tokens_pair[0];
    // windowed encoding
    std::optional<int64_t> ml;
    const bool windowed =
        resolve_truncation(o, tok.options().model_max_length, ml) != Truncation::None || o.return_overflowing_tokens;
    if (windowed) {
      json w;
      try {
        const BatchEncoding b = tok.encode_windows_batch(texts, pairs, o);
        json rows = json::array();
        for (const auto& e : b.encodings) rows.push_back(encoding_json(e, true));
        w["windows"] = rows;
        w["overflow_to_sample_mapping"] = b.overflow_to_sample_mapping;
      } catch (const std::exception& e) {
        w = json{{"error", e.what()}};
      }
      out["windows"] = w;
    }
    // default encoding
    try {
      const BatchEncoding b = tok.encode_batch(texts, pairs, o);
      const char* keys[] = {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping"};
      std::vector<json> rows;
      for (const auto& e : b.encodings) rows.push_back(encoding_json(e, false));
      for (const char* k : keys) {
        json v = json::array();
        for (const auto& r : rows) v.push_back(r[k]);
        out[k] = batch ? v : v[0];
      }
      if (o.return_overflowing_tokens) {
        json ov = json::array(), nt = json::array();
        for (const auto& e : b.encodings) {
          ov.push_back(e.overflowing_tokens);
          nt.push_back(e.num_truncated_tokens ? json(*e.num_truncated_tokens) : json(nullptr));
        }
        out["overflowing_tokens"] = batch ? ov : ov[0];
        out["num_truncated_tokens"] = batch ? nt : nt[0];
      }
      if (!batch) {
        out["decoded"] = tok.decode(b.encodings[0].input_ids, false);
        out["decoded_skip_special"] = tok.decode(b.encodings[0].input_ids, true);
      }
    } catch (const std::exception& e) {
      out["error"] = e.what();
    }
  } catch (const json::exception& e) {
    out = json{{"error", std::string("request: ") + e.what()}};
  } catch (const std::exception& e) {
    out = json{{"error", e.what()}};
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace qdqbert::tokenization
