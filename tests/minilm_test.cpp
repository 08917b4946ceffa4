// The real pretrained checkpoint: all-MiniLM-L6-v2, FP32 parity with transformers (golden data from
// tools/reference/minilm_golden.py), every quantizer disabled.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "minilm_util.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/tensors.h"
#include "qdqbert/workflow/embed.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;

TEST(MiniLM, Fp32OutputsMatchTransformers) {
  ASSERT_TRUE(qt::minilm_available());
  io::LoadReport report;
  auto model = io::from_pretrained(qt::minilm_dir(), {}, &report);  // strict: every key must match
  EXPECT_EQ(model->class_name(), "QDQBertModel");
  EXPECT_TRUE(report.missing_keys.empty());
  for (auto& [n, q] : named_quantizers(model->module())) q->disable();
  auto g = io::load_safetensors(qt::data_path("minilm/golden.safetensors"));
  torch::NoGradGuard ng;
  at::set_num_threads(2);
  const int64_t n = g["input_ids"].size(0);
  for (int64_t s = 0; s < n; s += 16) {
    const int64_t e = std::min(n, s + 16);
    ModelInputs in;
    in.input_ids = g["input_ids"].slice(0, s, e);
    in.attention_mask = g["attention_mask"].slice(0, s, e);
    in.token_type_ids = g["token_type_ids"].slice(0, s, e);
    ModelOutput out = model->run(in);
    EXPECT_TRUE(qt::tensors_close(out.last_hidden_state, g["last_hidden_state"].slice(0, s, e), 0, 1e-4,
                                  "last_hidden_state rows " + std::to_string(s)));
    EXPECT_TRUE(qt::tensors_close(out.pooler_output, g["pooler_output"].slice(0, s, e), 0, 1e-4, "pooler_output"));
    at::Tensor mask = in.attention_mask.unsqueeze(-1).to(torch::kFloat);
    at::Tensor mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1e-9);
    at::Tensor emb = torch::nn::functional::normalize(mean, torch::nn::functional::NormalizeFuncOptions().dim(1));
    EXPECT_TRUE(qt::tensors_close(emb, g["sentence_embedding"].slice(0, s, e), 0, 1e-4, "sentence_embedding"));
  }
}

TEST(MiniLM, TokenIdsMatchTheReferenceTokenizer) {
  ASSERT_TRUE(qt::minilm_available());
  auto tok = tokenization::BertTokenizer::from_pretrained(qt::minilm_dir());
  auto lines = workflow::read_text_lines(qt::data_path("minilm/sentences.txt"));
  auto g = io::load_safetensors(qt::data_path("minilm/golden.safetensors"));
  tokenization::EncodeOptions eo;
  eo.truncation = tokenization::Truncation::LongestFirst;
  eo.max_length = 128;
  eo.padding = tokenization::Padding::Longest;
  auto t = tokenization::to_tensors(tok.encode_batch(lines, {}, eo));
  ASSERT_EQ(t.input_ids.sizes(), g["input_ids"].sizes());
  for (int64_t i = 0; i < t.input_ids.size(0); ++i) {
    EXPECT_TRUE(torch::equal(t.input_ids[i], g["input_ids"][i])) << "line " << i + 1 << ": " << lines[i];
  }
  EXPECT_TRUE(torch::equal(t.attention_mask, g["attention_mask"]));
}

TEST(MiniLM, EmbedCliMatchesTransformers) {
  ASSERT_TRUE(qt::minilm_available());
  const std::string out = (std::filesystem::temp_directory_path() / ("qdqbert_embed_" + std::to_string(::getpid()) +
                                                                    ".safetensors")).string();
  const std::string cmd = std::string(QDQBERT_BINARY_DIR) + "/tools/cli/qdqbert-cli embed --model " +
                          qt::minilm_dir() + " --text-file " + qt::data_path("minilm/sentences.txt") + " --output " +
                          out + " --batch-size 16 --threads 2 --quant-config " + qt::data_path("minilm/fp32.json") +
                          " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto got = io::load_safetensors(out);
  auto g = io::load_safetensors(qt::data_path("minilm/golden.safetensors"));
  EXPECT_TRUE(torch::equal(got["input_ids"], g["input_ids"]));
  EXPECT_TRUE(torch::equal(got["attention_mask"], g["attention_mask"]));
  // Padded positions hold whatever each batch's padding produced; only real tokens carry meaning.
  at::Tensor m = g["attention_mask"].unsqueeze(-1).to(torch::kFloat);
  EXPECT_TRUE(qt::tensors_close(got["last_hidden_state"] * m, g["last_hidden_state"] * m, 0, 1e-4, "last_hidden_state"));
  EXPECT_TRUE(qt::tensors_close(got["sentence_embedding"], g["sentence_embedding"], 0, 1e-4, "sentence_embedding"));
  std::filesystem::remove(out);
}

TEST(MiniLM, BadInputsNameTheFile) {
  const auto tmp = std::filesystem::temp_directory_path() / ("qdqbert_minilm_bad_" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  {
    std::ofstream f(tmp / "bad.txt", std::ios::binary);
    f << "fine line\nsecond \xff\xfe line\n";
  }
  const std::string e = qt::error_message([&] { workflow::read_text_lines((tmp / "bad.txt").string()); });
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("bad.txt"), std::string::npos) << e;
  { std::ofstream f(tmp / "empty.txt"); }
  EXPECT_NE(qt::error_message([&] { workflow::read_text_lines((tmp / "empty.txt").string()); }).find("empty"), std::string::npos);
  // A checkpoint folder without weights, and one whose config does not match the weights.
  ASSERT_TRUE(qt::minilm_available());
  std::filesystem::create_directories(tmp / "noweights");
  std::filesystem::copy_file(qt::minilm_dir() + "/config.json", tmp / "noweights/config.json");
  EXPECT_NE(qt::error_message([&] { io::from_pretrained((tmp / "noweights").string()); }).find("no weights"), std::string::npos);
  std::filesystem::create_directories(tmp / "mismatch");
  Config c = Config::from_json_file(qt::minilm_dir() + "/config.json");
  c.intermediate_size = 1024;
  c.to_json_file((tmp / "mismatch/config.json").string());
  std::filesystem::create_symlink(qt::minilm_dir() + "/model.safetensors", tmp / "mismatch/model.safetensors");
  const std::string m = qt::error_message([&] { io::from_pretrained((tmp / "mismatch").string()); });
  EXPECT_NE(m.find("shape"), std::string::npos) << m;
  EXPECT_NE(m.find("intermediate.dense"), std::string::npos) << m;
  std::filesystem::create_directories(tmp / "novocab");
  EXPECT_FALSE(qt::error_message([&] { tokenization::BertTokenizer::from_pretrained((tmp / "novocab").string()); }).empty());
  std::filesystem::remove_all(tmp);
}

TEST(MiniLM, PtqStudyWritesAUsableReport) {
  ASSERT_TRUE(qt::minilm_available());
  ASSERT_TRUE(std::filesystem::exists("/usr/share/games/fortunes")) << "apt-get install fortunes (.ci/run does)";
  const auto tmp = std::filesystem::temp_directory_path() / ("qdqbert_study_" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  const std::string src = QDQBERT_SOURCE_DIR, cli = std::string(QDQBERT_BINARY_DIR) + "/tools/cli/qdqbert-cli";
  ASSERT_EQ(std::system((src + "/tools/make-study-text.sh " + tmp.string() + "/text > /dev/null").c_str()), 0);
  const std::string cmd =
      cli + " ptq-study --model " + qt::minilm_dir() + " --calib-text " + tmp.string() +
      "/text/calib.txt --eval-text " + tmp.string() + "/text/eval.txt --output " + tmp.string() +
      "/report --calib-lines 24 --eval-lines 24 --batch-size 24 --target-cosine 0.98 > /dev/null 2> " + tmp.string() +
      "/progress.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream progress(tmp / "progress.txt");
  const std::string log((std::istreambuf_iterator<char>(progress)), std::istreambuf_iterator<char>());
  for (const char* step :
       {"max calibration on 24 lines", "sweep 12/12: entropy, per-tensor weights: cosine p5", "sensitivity 25/25: "}) {
    EXPECT_NE(log.find(step), std::string::npos) << step << " missing from the progress lines:\n" << log;
  }
  for (const char* f : {"report.md", "report.json", "histograms.svg", "sensitivity.svg", "quant_config.json",
                        "calibrated/model.safetensors", "calibrated/vocab.txt"}) {
    EXPECT_TRUE(std::filesystem::exists(tmp / "report" / f)) << f;
  }
  auto report = qt::read_json((tmp / "report/report.json").string());
  EXPECT_EQ(report["sweep"].size(), 12u);  // 6 calibrations x per-channel/per-tensor weights
  EXPECT_EQ(report["sensitivity"].size(), 1u + 6 * 4);
  for (const auto& row : report["sweep"]) {
    EXPECT_GT(row["cosine_mean"].get<double>(), 0.5) << row.dump();
    EXPECT_LE(row["cosine_mean"].get<double>(), 1.0 + 1e-6);
  }
  // The chosen partial quantization is accepted by embed and reaches what the report says.
  const std::string out = (tmp / "emb.safetensors").string();
  const std::string embed = cli + " embed --model " + (tmp / "report/calibrated").string() + " --quant-config " +
                            (tmp / "report/quant_config.json").string() + " --text-file " +
                            qt::data_path("minilm/sentences.txt") + " --output " + out + " > /dev/null";
  ASSERT_EQ(std::system(embed.c_str()), 0) << embed;
  auto e = io::load_safetensors(out);
  auto g = io::load_safetensors(qt::data_path("minilm/golden.safetensors"));
  const double mean_cos = (e["sentence_embedding"] * g["sentence_embedding"]).sum(1).mean().item<double>();
  EXPECT_GT(mean_cos, 0.9) << "partially quantized embeddings drifted too far from FP32";
  std::filesystem::remove_all(tmp);
}
