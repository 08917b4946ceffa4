#include "qdqbert/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <type_traits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"
#include "qdqbert/nn/quant_descriptor_json.h"

namespace qdqbert {

using nlohmann::json;

const std::vector<std::string>& supported_activations() {
  static const std::vector<std::string> names = {"gelu",   "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu",
                                                 "relu",   "relu6",    "silu",      "swish",             "tanh",
                                                 "sigmoid", "mish",    "linear",    "gelu_python"};
  return names;
}

void Config::set_num_labels(int64_t n) {
  id2label.clear();
  label2id.clear();
  for (int64_t i = 0; i < n; ++i) {
    id2label[i] = "LABEL_" + std::to_string(i);
    label2id["LABEL_" + std::to_string(i)] = i;
  }
}

Config Config::structure() const {
  Config c = *this;
  c.id2label.clear();
  c.label2id.clear();
  c.raw_json = "{}";
  return c;
}

nn::QuantDescriptor Config::input_desc() const {
  return quant_desc_input ? *quant_desc_input : nn::default_quant_desc_input();
}
nn::QuantDescriptor Config::weight_desc() const {
  return quant_desc_weight ? *quant_desc_weight : nn::default_quant_desc_weight();
}

void Config::validate() const {
  QDQBERT_CHECK(vocab_size > 0 && hidden_size > 0 && num_hidden_layers >= 0 && num_attention_heads > 0 &&
                    intermediate_size > 0 && max_position_embeddings > 0 && type_vocab_size > 0,
                "config: sizes must be positive (vocab_size ", vocab_size, ", hidden_size ", hidden_size,
                ", num_hidden_layers ", num_hidden_layers, ", num_attention_heads ", num_attention_heads,
                ", intermediate_size ", intermediate_size, ", max_position_embeddings ", max_position_embeddings,
                ", type_vocab_size ", type_vocab_size, ")");
  QDQBERT_CHECK(hidden_size % num_attention_heads == 0, "config: the hidden size (", hidden_size,
                ") is not a multiple of the number of attention heads (", num_attention_heads, ")");
  const auto& acts = supported_activations();
  QDQBERT_CHECK(std::find(acts.begin(), acts.end(), hidden_act) != acts.end(), "config: unknown hidden_act '",
                hidden_act, "'");
  QDQBERT_CHECK(position_embedding_type == "absolute" || position_embedding_type == "relative_key" ||
                    position_embedding_type == "relative_key_query",
                "config: unknown position_embedding_type '", position_embedding_type, "'");
  QDQBERT_CHECK(!problem_type || *problem_type == "regression" || *problem_type == "single_label_classification" ||
                    *problem_type == "multi_label_classification",
                "config: unknown problem_type '", *problem_type, "'");
  QDQBERT_CHECK(std::isfinite(layer_norm_eps) && layer_norm_eps > 0, "config: layer_norm_eps must be a positive number, got ",
                layer_norm_eps);
  for (const auto& [name, p] : {std::pair<const char*, double>{"hidden_dropout_prob", hidden_dropout_prob},
                                {"attention_probs_dropout_prob", attention_probs_dropout_prob},
                                {"classifier_dropout", classifier_dropout.value_or(0.0)}}) {
    QDQBERT_CHECK(p >= 0 && p <= 1, "config: ", name, " must be a probability in [0, 1], got ", p);
  }
  QDQBERT_CHECK(std::isfinite(initializer_range) && initializer_range >= 0,
                "config: initializer_range must be a non-negative number, got ", initializer_range);
  QDQBERT_CHECK(chunk_size_feed_forward >= 0, "config: chunk_size_feed_forward must be >= 0, got ",
                chunk_size_feed_forward);
  QDQBERT_CHECK(!add_cross_attention || is_decoder,
                "config: add_cross_attention=true needs is_decoder=true (cross-attention is for decoders)");
}

namespace {

template <typename T>
void read(const json& j, const char* key, T& out, const std::string& src) {
  if (!j.contains(key)) return;
  const json& v = j.at(key);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann would truncate 4.9 to 4 and wrap 2^64-1 to -1.
    QDQBERT_CHECK(v.is_number_integer() && (!v.is_number_unsigned() || v.get<uint64_t>() <= INT64_MAX), "config '",
                  src, "': key '", key, "' must be an integer, got ", v.dump());
  }
  try {
    v.get_to(out);
  } catch (const json::exception& e) {
    fail("config '", src, "': key '", key, "' has the wrong type (", v.type_name(), ")");
  }
}

// A whole decimal integer key such as id2label's "3" ("1abc", " 1", "+1" and "" are refused).
std::optional<int64_t> integer_key(const std::string& k) {
  int64_t v = 0;
  const char* end = k.data() + k.size();
  const auto [ptr, ec] = std::from_chars(k.data(), end, v);
  if (k.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

template <typename T>
void read_opt(const json& j, const char* key, std::optional<T>& out, const std::string& src) {
  if (!j.contains(key)) return;
  if (j.at(key).is_null()) {
    out.reset();
    return;
  }
  T v{};
  read(j, key, v, src);
  out = v;
}

}  // namespace

Config Config::from_json_string(const std::string& text, const std::string& src) {
  // Syntax errors read "config '<src>': invalid JSON: ...".
  json j = parse_json(text, "config '" + src + "'");
  QDQBERT_CHECK(j.is_object(), "config '", src, "': expected a JSON object");
  Config c;
  read(j, "vocab_size", c.vocab_size, src);
  read(j, "hidden_size", c.hidden_size, src);
  read(j, "num_hidden_layers", c.num_hidden_layers, src);
  read(j, "num_attention_heads", c.num_attention_heads, src);
  read(j, "intermediate_size", c.intermediate_size, src);
  read(j, "hidden_act", c.hidden_act, src);
  read(j, "hidden_dropout_prob", c.hidden_dropout_prob, src);
  read(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, src);
  read(j, "max_position_embeddings", c.max_position_embeddings, src);
  read(j, "type_vocab_size", c.type_vocab_size, src);
  read(j, "initializer_range", c.initializer_range, src);
  read(j, "layer_norm_eps", c.layer_norm_eps, src);
  read(j, "use_cache", c.use_cache, src);
  read_opt(j, "pad_token_id", c.pad_token_id, src);
  read_opt(j, "bos_token_id", c.bos_token_id, src);
  read_opt(j, "eos_token_id", c.eos_token_id, src);
  read(j, "is_decoder", c.is_decoder, src);
  read(j, "add_cross_attention", c.add_cross_attention, src);
  if (j.contains("id2label") && j["id2label"].is_object()) {
    c.id2label.clear();
    for (const auto& [k, v] : j["id2label"].items()) {
      const std::optional<int64_t> id = integer_key(k);
      QDQBERT_CHECK(id && v.is_string(), "config '", src, "': id2label key '", k,
                    "' is not an integer or its label is not a string");
      QDQBERT_CHECK(c.id2label.emplace(*id, v.get<std::string>()).second, "config '", src, "': id2label key '", k,
                    "' repeats label id ", *id);
    }
    c.label2id.clear();
    for (const auto& [id, label] : c.id2label) c.label2id[label] = id;
    if (j.contains("label2id") && j["label2id"].is_object()) {
      c.label2id.clear();
      for (const auto& [label, v] : j["label2id"].items()) {
        QDQBERT_CHECK(v.is_number_integer(), "config '", src, "': label2id['", label, "'] must be an integer, got ",
                      v.dump());
        c.label2id[label] = v.get<int64_t>();
      }
    }
  } else if (j.contains("num_labels")) {
    int64_t n = 2;
    read(j, "num_labels", n, src);
    QDQBERT_CHECK(n >= 0, "config '", src, "': num_labels must be >= 0, got ", n);
    c.set_num_labels(n);
  }
  read_opt(j, "problem_type", c.problem_type, src);
  read(j, "position_embedding_type", c.position_embedding_type, src);
  read_opt(j, "classifier_dropout", c.classifier_dropout, src);
  read(j, "tie_word_embeddings", c.tie_word_embeddings, src);
  read(j, "chunk_size_feed_forward", c.chunk_size_feed_forward, src);
  read(j, "output_attentions", c.output_attentions, src);
  read(j, "output_hidden_states", c.output_hidden_states, src);
  read_opt(j, "architectures", c.architectures, src);
  if (j.contains("quantization_config") && j["quantization_config"].is_object()) {
    const auto& q = j["quantization_config"];
    try {
      if (q.contains("input") && !q["input"].is_null()) c.quant_desc_input = q["input"].get<nn::QuantDescriptor>();
      if (q.contains("weight") && !q["weight"].is_null()) c.quant_desc_weight = q["weight"].get<nn::QuantDescriptor>();
    } catch (const Error& e) {
      fail("config '", src, "': quantization_config: ", e.what());
    }
  }
  c.raw_json = j.dump();
  try {
    c.validate();
  } catch (const Error& e) {  // "config: <what>" → "config '<src>': <what>"
    const std::string what = e.what();
    fail("config '", src, "': ", what.rfind("config: ", 0) == 0 ? what.substr(8) : what);
  }
  return c;
}

Config Config::from_json_file(const std::string& path) {
  return from_json_string(io::read_file(path, "config"), path);
}

std::string Config::to_json_string() const {
  json j = parse_json(raw_json, "config raw_json");
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["intermediate_size"] = intermediate_size;
  j["hidden_act"] = hidden_act;
  j["hidden_dropout_prob"] = hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["max_position_embeddings"] = max_position_embeddings;
  j["type_vocab_size"] = type_vocab_size;
  j["initializer_range"] = initializer_range;
  j["layer_norm_eps"] = layer_norm_eps;
  j["use_cache"] = use_cache;
  auto opt_int = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  j["pad_token_id"] = opt_int(pad_token_id);
  j["bos_token_id"] = opt_int(bos_token_id);
  j["eos_token_id"] = opt_int(eos_token_id);
  j["is_decoder"] = is_decoder;
  j["add_cross_attention"] = add_cross_attention;
  json id2 = json::object();
  for (const auto& [k, v] : id2label) id2[std::to_string(k)] = v;
  j["id2label"] = id2;
  j["label2id"] = label2id;
  j.erase("num_labels");
  j["problem_type"] = problem_type ? json(*problem_type) : json(nullptr);
  j["position_embedding_type"] = position_embedding_type;
  j["classifier_dropout"] = classifier_dropout ? json(*classifier_dropout) : json(nullptr);
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["chunk_size_feed_forward"] = chunk_size_feed_forward;
  j["output_attentions"] = output_attentions;
  j["output_hidden_states"] = output_hidden_states;
  j["architectures"] = architectures ? json(*architectures) : json(nullptr);
  if (!j.contains("model_type")) j["model_type"] = "qdqbert";
  json q = json::object();
  q["input"] = input_desc();
  q["weight"] = weight_desc();
  j["quantization_config"] = q;
  return j.dump(2);  // nlohmann::json objects are key-sorted
}

void Config::to_json_file(const std::string& path) const { io::write_file_atomic(path, to_json_string() + "\n"); }

}  // namespace qdqbert
