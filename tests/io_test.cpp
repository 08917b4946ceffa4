// Checkpoint I/O and Config: round trips, pytorch_model.bin, HF key variants, malformed files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "model_util.h"
#include "qdqbert/error.h"
#include "qdqbert/io/file.h"

namespace qt = qdqbert::testing;
namespace fs = std::filesystem;
using namespace qdqbert;

namespace {
std::string tmpdir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qdqbert_io_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string h = header;
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + data;
}
}  // namespace

TEST(Checkpoint, SaveLoadRoundTripIsIdentical) {
  auto c = qt::load_case("causal_lm_cross_attention_calib_max");
  const std::string dir = tmpdir("roundtrip");
  io::save_pretrained(*c.model, dir);
  auto a = io::state_dict(c.model->module());
  io::PretrainedOptions o;
  auto loaded = io::from_pretrained(dir, o);
  EXPECT_EQ(loaded->class_name(), "QDQBertLMHeadModel");
  auto b = io::state_dict(loaded->module());
  std::map<std::string, at::Tensor> bm(b.begin(), b.end());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(bm.count(k)) << k;
    EXPECT_TRUE(torch::equal(v, bm[k])) << k;
  }
  // The descriptors travel in config.json.
  Config cfg = Config::from_json_file(dir + "/config.json");
  ASSERT_TRUE(cfg.quant_desc_weight.has_value());
  EXPECT_EQ(*cfg.quant_desc_weight->axis, std::vector<int64_t>{0});
  // Tied decoder weight is tied again after loading.
  auto* lm = dynamic_cast<QDQBertLMHeadModelImpl*>(loaded.get());
  ASSERT_TRUE(lm);
  EXPECT_EQ(lm->cls->predictions->decoder->weight.data_ptr(), lm->bert->embeddings->word_embeddings->weight.data_ptr());
  fs::remove_all(dir);
}

TEST(Checkpoint, PytorchModelBinMatchesSafetensors) {
  const std::string dir = qt::data_path("model/masked_lm_calib_max/model");
  auto bin = io::read_pytorch_bin(dir + "/pytorch_model.bin");
  auto st = io::load_safetensors(dir + "/model.safetensors");
  EXPECT_TRUE(bin.count("bert.embeddings.position_ids"));
  for (const auto& [k, v] : st) {
    ASSERT_TRUE(bin.count(k)) << k;
    EXPECT_TRUE(torch::equal(bin[k], v)) << k;
  }
  // And a folder with only the .bin loads strictly.
  const std::string tmp = tmpdir("bin");
  fs::copy_file(dir + "/pytorch_model.bin", tmp + "/pytorch_model.bin");
  fs::copy_file(dir + "/config.json", tmp + "/config.json");
  io::LoadReport report;
  auto m = io::from_pretrained(tmp, {}, &report);
  EXPECT_TRUE(report.missing_keys.empty());
  EXPECT_EQ(report.ignored_keys, std::vector<std::string>{"bert.embeddings.position_ids"});
  EXPECT_FALSE(report.loaded_amax.empty());
  fs::remove_all(tmp);
}

TEST(Checkpoint, PlainBertKeyVariantsAndHalfPrecision) {
  auto c = qt::load_case("token_cls_4bit_calib_max");
  auto sd = io::state_dict(c.model->module());
  // A plain BertModel checkpoint: no "bert." prefix, legacy LayerNorm gamma/beta, fp16 weights.
  std::map<std::string, at::Tensor> plain;
  for (const auto& [k, v] : sd) {
    if (k.rfind("bert.", 0) != 0 || k.find("_amax") != std::string::npos) continue;
    std::string key = k.substr(5);
    if (key.size() > 16 && key.compare(key.size() - 16, 16, "LayerNorm.weight") == 0) {
      key = key.substr(0, key.size() - 6) + "gamma";
    }
    plain[key] = v.to(torch::kHalf);
  }
  plain["embeddings.position_ids"] = torch::arange(64).unsqueeze(0);
  Config cfg = c.config;
  auto base = create_model("base", cfg);
  io::LoadReport r = io::load_state_dict(*base, plain, /*strict=*/false);
  EXPECT_TRUE(r.unexpected_keys.empty());
  // The base model has a pooler that a token-classification checkpoint lacks.
  for (const auto& k : r.missing_keys) EXPECT_EQ(k.rfind("pooler.", 0), 0u) << k;
  auto* bm = dynamic_cast<QDQBertModelImpl*>(base.get());
  EXPECT_TRUE(torch::equal(bm->embeddings->LayerNorm->weight,
                           c.model->module().named_parameters()["bert.embeddings.LayerNorm.weight"].to(torch::kHalf).to(torch::kFloat)));
  // Loading the head checkpoint into the base model strips "bert." and ignores the head.
  auto base2 = create_model("base", cfg);
  std::map<std::string, at::Tensor> full(sd.begin(), sd.end());
  io::LoadReport r2 = io::load_state_dict(*base2, full, /*strict=*/false);
  EXPECT_TRUE(r2.unexpected_keys.empty());
  EXPECT_FALSE(r2.ignored_keys.empty());
}

TEST(Checkpoint, StrictLoadListsEveryMissingAndUnexpectedKey) {
  auto c = qt::load_case("nsp_calib_entropy");
  auto sd = io::state_dict(c.model->module());
  std::map<std::string, at::Tensor> m(sd.begin(), sd.end());
  m.erase("cls.seq_relationship.bias");
  m["cls.extra.weight"] = torch::zeros({2});
  const std::string e = qt::error_message([&] { io::load_state_dict(*c.model, m, true, "ckpt"); });
  EXPECT_NE(e.find("cls.seq_relationship.bias"), std::string::npos) << e;
  EXPECT_NE(e.find("cls.extra.weight"), std::string::npos) << e;
  m.erase("cls.extra.weight");
  m["cls.seq_relationship.bias"] = torch::zeros({3});
  const std::string e2 = qt::error_message([&] { io::load_state_dict(*c.model, m, true, "ckpt"); });
  EXPECT_NE(e2.find("cls.seq_relationship.bias"), std::string::npos) << e2;
  EXPECT_NE(e2.find("shape"), std::string::npos) << e2;
}

TEST(Checkpoint, NonStrictLoadInitializesTheHeadButNeverTheEncoder) {
  // A masked-LM checkpoint under a question-answering head: the encoder loads, qa_outputs stays as
  // initialized, cls.* is reported unused.
  auto c = qt::load_case("masked_lm_calib_max");
  auto sd = io::state_dict(c.model->module());
  std::map<std::string, at::Tensor> m(sd.begin(), sd.end());
  Config cfg = c.config;
  auto qa = create_model("question-answering", cfg);
  const at::Tensor init_w = qa->module().named_parameters()["qa_outputs.weight"].clone();
  io::LoadReport r = io::load_state_dict(*qa, m, /*strict=*/false, "mlm");
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"qa_outputs.bias", "qa_outputs.weight"}));
  ASSERT_FALSE(r.unexpected_keys.empty());
  for (const auto& k : r.unexpected_keys) EXPECT_EQ(k.rfind("cls.", 0), 0u) << k;
  EXPECT_TRUE(torch::equal(qa->module().named_parameters()["qa_outputs.weight"], init_w));
  EXPECT_TRUE(torch::equal(qa->module().named_parameters()["bert.encoder.layer.1.output.dense.weight"],
                           m.at("bert.encoder.layer.1.output.dense.weight")));
  EXPECT_FALSE(r.loaded_amax.empty());  // the calibrated amax of the encoder came along
  const std::string line = r.summary(qa->class_name(), "mlm");
  EXPECT_NE(line.find("2 weights newly initialized (qa_outputs.bias, qa_outputs.weight)"), std::string::npos) << line;
  EXPECT_NE(line.find("not used (cls."), std::string::npos) << line;
  EXPECT_EQ(io::LoadReport{}.summary("X", "y"), "");
  // Strict: the same load is an error that names the keys and the way out.
  auto qa2 = create_model("question-answering", cfg);
  const std::string strict = qt::error_message([&] { io::load_state_dict(*qa2, m, true, "mlm"); });
  EXPECT_NE(strict.find("qa_outputs.weight"), std::string::npos) << strict;
  EXPECT_NE(strict.find("--strict"), std::string::npos) << strict;
  // The encoder must match even without strict: a missing encoder key, an extra layer, a wrong shape.
  for (int variant = 0; variant < 3; ++variant) {
    auto bad = m;
    if (variant == 0) bad.erase("bert.encoder.layer.0.attention.self.key.bias");
    if (variant == 1) bad["bert.encoder.layer.2.output.dense.bias"] = torch::zeros({32});
    if (variant == 2) bad["bert.embeddings.word_embeddings.weight"] = torch::zeros({104, 32});
    auto qa3 = create_model("question-answering", cfg);
    const std::string e = qt::error_message([&] { io::load_state_dict(*qa3, bad, false, "ckpt"); });
    const char* key = variant == 0   ? "bert.encoder.layer.0.attention.self.key.bias"
                      : variant == 1 ? "bert.encoder.layer.2.output.dense.bias"
                                     : "bert.embeddings.word_embeddings.weight";
    EXPECT_NE(e.find(key), std::string::npos) << e;
    EXPECT_NE(e.find("ckpt"), std::string::npos) << e;
    if (variant == 2) {
      EXPECT_NE(e.find("[104, 32]"), std::string::npos) << e;
      EXPECT_NE(e.find("[103, 32]"), std::string::npos) << e;
    }
  }
  // A float checkpoint under a learn_amax model: the clip bounds are quantizer state, newly initialized.
  Config learn = cfg;
  learn.quant_desc_input->learn_amax = true;
  learn.quant_desc_input->with_amax(3.0f);
  auto la = create_model("masked-lm", learn);
  std::map<std::string, at::Tensor> plain;
  for (const auto& [k, v] : m) {
    if (k.find("_quantizer") == std::string::npos) plain[k] = v;
  }
  io::LoadReport r2 = io::load_state_dict(*la, plain, false, "plain");
  ASSERT_FALSE(r2.missing_keys.empty());
  for (const auto& k : r2.missing_keys) EXPECT_NE(k.find("_quantizer."), std::string::npos) << k;
}

TEST(Safetensors, MalformedFilesAreClearErrors) {
  const std::string dir = tmpdir("bad");
  const std::string p = dir + "/m.safetensors";
  write_bytes(p, "abc");
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("too short"), std::string::npos);
  write_bytes(p, std::string("\xff\xff\x00\x00\x00\x00\x00\x00", 8) + "{}");
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("past the end"), std::string::npos);
  write_bytes(p, safetensors_bytes("{not json", ""));
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("not valid JSON"), std::string::npos);
  write_bytes(p, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(12, '\0')));
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("overlap"), std::string::npos);
  write_bytes(p, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')));
  const std::string e = qt::error_message([&] { io::SafetensorsFile f(p); });
  EXPECT_NE(e.find("'a'"), std::string::npos) << e;
  EXPECT_NE(e.find(p), std::string::npos) << e;
  write_bytes(p, safetensors_bytes(R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("unsupported dtype"), std::string::npos);
  write_bytes(p, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", std::string(8, '\0')));
  EXPECT_NE(qt::error_message([&] { io::SafetensorsFile f(p); }).find("outside"), std::string::npos);
  // A good file round-trips, zero copy, and the write is atomic (no temp files left).
  io::save_safetensors(p, std::map<std::string, at::Tensor>{{"x", torch::arange(6).view({2, 3})},
                                                            {"s", torch::tensor(1.5f)}});
  auto t = io::load_safetensors(p);
  EXPECT_TRUE(torch::equal(t["x"], torch::arange(6).view({2, 3})));
  EXPECT_EQ(t["s"].dim(), 0);
  int files = 0;
  for (auto& e2 : fs::directory_iterator(dir)) files += e2.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
  EXPECT_NE(qt::error_message([&] { io::save_safetensors("/nonexistent/dir/x.safetensors", t); }).find("/nonexistent/dir"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(Config, RoundTripKeepsUnknownKeysAndValidates) {
  Config c = Config::from_json_file(qt::data_path("model/causal_lm_cross_attention_calib_max/model/config.json"));
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_TRUE(c.add_cross_attention);
  EXPECT_EQ(c.num_labels(), 2);
  auto j = nlohmann::json::parse(c.to_json_string());
  EXPECT_EQ(j["top_k"], 50);  // an unknown key survives
  EXPECT_EQ(j["transformers_version"], "4.34.0");
  Config d;
  EXPECT_EQ(d.vocab_size, 30522);
  EXPECT_EQ(*d.pad_token_id, 1);
  EXPECT_EQ(d.layer_norm_eps, 1e-12);
  EXPECT_NE(qt::error_message([] { Config::from_json_string(R"({"hidden_size": 30, "num_attention_heads": 4})"); })
                .find("not a multiple"),
            std::string::npos);
  EXPECT_NE(qt::error_message([] { Config::from_json_string(R"({"hidden_act": "swoosh"})"); }).find("swoosh"),
            std::string::npos);
  EXPECT_NE(qt::error_message([] { Config::from_json_string(R"({"hidden_size": "big"})"); }).find("hidden_size"),
            std::string::npos);
  EXPECT_NE(qt::error_message([] { Config::from_json_string("{oops"); }).find("invalid JSON"), std::string::npos);
  Config e = Config::from_json_string(R"({"num_labels": 5})");
  EXPECT_EQ(e.num_labels(), 5);
}

TEST(Model, PruneHeadsKeepsQuantizersAndTheirAmax) {
  auto c = qt::load_case("masked_lm_calib_max");
  auto* m = dynamic_cast<QDQBertForMaskedLMImpl*>(c.model.get());
  ASSERT_TRUE(m);
  auto attn = m->bert->encoder->layers->ptr<QDQBertLayerImpl>(0)->attention;
  at::Tensor q_amax = attn->self->query->weight_quantizer->amax().clone();
  m->bert->prune_heads({{0, {1, 3}}});
  EXPECT_EQ(attn->self->num_attention_heads, 2);
  EXPECT_EQ(attn->self->query->weight.size(0), 16);
  EXPECT_EQ(attn->output->dense->weight.size(1), 16);
  ASSERT_TRUE(attn->self->query->weight_quantizer->has_amax());
  at::Tensor kept = torch::cat({q_amax.slice(0, 0, 8), q_amax.slice(0, 16, 24)});
  EXPECT_TRUE(torch::equal(attn->self->query->weight_quantizer->amax(), kept));
  EXPECT_TRUE(attn->self->matmul_q_input_quantizer->has_amax());
  torch::NoGradGuard g;
  auto out = c.model->run(qt::case_inputs(c));
  EXPECT_EQ(out.logits.size(-1), 103);
}

TEST(Model, CloneGivesAnIndependentCopy) {
  auto c = qt::load_case("token_cls_4bit_calib_max");
  auto* m = dynamic_cast<QDQBertForTokenClassificationImpl*>(c.model.get());
  auto copy = std::dynamic_pointer_cast<QDQBertForTokenClassificationImpl>(m->clone());
  ASSERT_TRUE(copy);
  torch::NoGradGuard g;
  auto in = qt::case_inputs(c);
  EXPECT_TRUE(torch::equal(m->forward(in).logits, copy->forward(in).logits));
  copy->bert->encoder->layers->ptr<QDQBertLayerImpl>(0)->output->add_local_input_quantizer->set_amax(0.01);
  EXPECT_FALSE(torch::equal(m->forward(in).logits, copy->forward(in).logits));
}

TEST(Model, BadInputsAreClearErrors) {
  auto c = qt::load_case("base_dynamic_all_outputs");
  ModelInputs in;
  EXPECT_NE(qt::error_message([&] { c.model->run(in); }).find("input_ids or inputs_embeds"), std::string::npos);
  in.input_ids = torch::full({1, 4}, 500, torch::kLong);
  EXPECT_NE(qt::error_message([&] { c.model->run(in); }).find("out of range"), std::string::npos);
  in.input_ids = torch::zeros({1, 100}, torch::kLong);
  EXPECT_NE(qt::error_message([&] { c.model->run(in); }).find("max_position_embeddings"), std::string::npos);
  in.input_ids = torch::zeros({2, 4}, torch::kLong);
  in.attention_mask = torch::ones({2, 5}, torch::kLong);
  EXPECT_NE(qt::error_message([&] { c.model->run(in); }).find("attention_mask"), std::string::npos);
}

TEST(Files, ReadFileAcceptsOnlyRegularFiles) {
  const std::string dir = tmpdir("read_file");
  write_bytes(dir + "/ok.json", "{}");
  EXPECT_EQ(io::read_file(dir + "/ok.json", "config"), "{}");
  const std::string missing = qt::error_message([&] { io::read_file(dir + "/nope.json", "config"); });
  EXPECT_NE(missing.find("config: cannot open '" + dir + "/nope.json'"), std::string::npos) << missing;
  EXPECT_NE(qt::error_message([&] { io::read_file(dir, "config"); }).find("not a regular file"), std::string::npos);
  // A FIFO would block open() forever; it is refused before opening.
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  EXPECT_NE(qt::error_message([&] { Config::from_json_file(dir + "/fifo"); }).find("not a regular file"),
            std::string::npos);
  fs::remove_all(dir);
}
