// Crafted, hostile or careless inputs, one class of defect at a time, fed through qdqbert-cli the way a
// malicious checkpoint or a broken script would: each must end in a non-zero exit (never a signal or a
// hang), one message of ours naming the file, tensor or key at fault, no output left behind, and the
// input unchanged. Library-level checks cover what the CLI cannot reach alone.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crafted_files.h"
#include "process_util.h"
#include "qdqbert/config.h"
#include "qdqbert/io/checkpoint.h"
#include "qdqbert/io/file.h"
#include "qdqbert/io/safetensors.h"
#include "qdqbert/io/zip.h"
#include "qdqbert/models/qdqbert.h"
#include "qdqbert/nn/tensor_quantizer.h"
#include "qdqbert/nn/quant_descriptor.h"
#include "qdqbert/regex.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "model_util.h"
#include "test_util.h"

namespace qdqbert {
namespace {

namespace fs = std::filesystem;
namespace qt = qdqbert::testing;
using namespace qdqbert::testing::crafted;

fs::path scratch(const std::string& name) { return qt::scratch_dir("untrusted", name); }
using qt::slurp;

void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// Runs qdqbert-cli under `timeout` (a hang is a failure, not a stuck CI job) and checks the refusal.
void expect_cli_refuses(const std::string& args, const std::vector<std::string>& needles) {
  const qt::ProcessRun r = qt::run_command("timeout 60 " + qt::cli_binary() + " " + args);
  EXPECT_NE(r.rc, 124) << "timed out: " << args;
  EXPECT_EQ(r.signal, 0) << args << "\n" << r.out;
  EXPECT_EQ(r.rc, 1) << args << "\n" << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in\n" << r.out;
  EXPECT_EQ(r.out.find("c10::"), std::string::npos) << r.out;
}

// A copy of a small calibrated fixture checkpoint (config.json + model.safetensors) in `dir`.
fs::path copy_model(const fs::path& dir) {
  fs::create_directories(dir);
  const std::string src = qt::data_path("model/masked_lm_calib_max/model");
  fs::copy_file(src + "/config.json", dir / "config.json");
  fs::copy_file(src + "/model.safetensors", dir / "model.safetensors");
  return dir;
}

// ---- crashes and memory safety ------------------------------------------------------------------------

TEST(UntrustedInput, SafetensorsSizesThatWrapOrOverlapAreRefused) {
  const fs::path tmp = scratch("st");
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      // 2^62 * 8 * 4 bytes wraps 64 bits to 0, which an unchecked product would accept for an empty span.
      {R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 0]}})",
       {"tensor 'w'", "more bytes than 64 bits"}},
      // A zero-length tensor between two overlapping ones hides the overlap from a neighbours-only check.
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
           "c": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
       {"'a'", "'c'", "overlap"}},
      {R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]}})", {"shape of 'w'", "negative"}},
      {R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 16]}})", {"shape of 'w'"}},
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [18446744073709551615, 16]}})", {"'w'", "outside"}},
      {std::string(300, '[') + std::string(300, ']'), {"nested deeper than 256"}},
  };
  for (const auto& [header, needles] : cases) {
    const fs::path m = copy_model(tmp / "m");
    write(m / "model.safetensors", safetensors_bytes(header, std::string(16, '\0')));
    std::vector<std::string> n = needles;
    n.push_back("model.safetensors");
    expect_cli_refuses("inspect --model " + m.string(), n);
    fs::remove_all(m);
  }
  fs::remove_all(tmp);
}

TEST(UntrustedInput, PytorchBinOffsetsStridesAndObjectCountsAreChecked) {
  const fs::path tmp = scratch("bin");
  struct Case {
    std::string bytes;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      // An offset near 2^62 wraps LibTorch 1.13's own bounds check and reads heap memory into the weights.
      {bin_file(state_dict_pickle("w", 4, int64_t{1} << 62, {4}, {1}), 4), {"storage 0", "past the end"}},
      // A stride-0 view of 4 floats claiming a million elements would be cloned into 4 MB (1.2 GB at scale).
      {bin_file(state_dict_pickle("w", 4, 0, {1000000}, {0}), 4), {"1000000 elements, more than its storage"}},
      {bin_file(state_dict_pickle("w", 4, 0, {4611686018427387904, 8}, {1, 1}), 4), {"overflows 64 bits"}},
      {bin_file(state_dict_pickle("w", 4, -1, {1}, {1}), 4), {"negative offset"}},
      // 100k nested lists: a recursive destructor would overflow the stack.
      {bin_file("\x80\x02" + std::string(100000, ']') + std::string(99999, 'a') + ".", 0), {"not a dict"}},
      // A record whose directory entry claims far more bytes than the file holds (a deflate bomb's shape).
      {[] {
         std::string z = bin_file(state_dict_pickle("w", 4, 0, {4}, {1}), 4);
         // Patch the first central entry: method 8, uncompressed size 512 MiB.
         const size_t cd = z.find(std::string("PK\x01\x02", 4));
         z.replace(cd + 10, 2, le(8, 2));
         z.replace(cd + 24, 4, le(512u << 20, 4));
         return z;
       }(),
       {"extract to more than the file", "archive/data.pkl"}},
      {"this is not a zip archive at all, just text", {"no end-of-central-directory record"}},
  };
  for (const auto& c : cases) {
    const fs::path m = copy_model(tmp / "m");
    fs::remove(m / "model.safetensors");
    write(m / "pytorch_model.bin", c.bytes);
    std::vector<std::string> n = c.needles;
    n.push_back("pytorch_model.bin");
    expect_cli_refuses("inspect --model " + m.string(), n);
    fs::remove_all(m);
  }
  // A pickle of millions of one-byte opcodes stops at the object cap instead of taking gigabytes.
  const std::string many = "\x80\x02" + std::string(size_t{4} << 20, 'N') + "N.";
  const fs::path f = tmp / "many.bin";
  write(f, bin_file(many, 0));
  EXPECT_NE(qt::error_message([&] { io::read_pytorch_bin(f.string()); }).find("more than 4194304 objects"),
            std::string::npos);
  // A well-formed crafted file still loads: the checks do not refuse what torch.save writes.
  write(f, bin_file(state_dict_pickle("w", 6, 2, {2, 2}, {2, 1}), 6));
  const auto sd = io::read_pytorch_bin(f.string());
  ASSERT_EQ(sd.count("w"), 1u);
  EXPECT_EQ(sd.at("w").sizes(), at::IntArrayRef({2, 2}));
  fs::remove_all(tmp);
}

TEST(UntrustedInput, ZipListingMatchesWhatTorchSaveWrote) {
  const std::string path = qt::data_path("model/masked_lm_calib_max/model/pytorch_model.bin");
  const io::MappedFile f(path, "test");
  const auto records = io::list_zip(f.data(), f.size(), path);
  ASSERT_FALSE(records.empty());
  bool pickle = false;
  for (const auto& r : records) {
    EXPECT_EQ(r.method, 0) << r.name;
    EXPECT_LE(r.data_offset + r.size, f.size()) << r.name;
    pickle = pickle || (r.name.size() >= 8 && r.name.substr(r.name.size() - 8) == "data.pkl");
  }
  EXPECT_TRUE(pickle);
}

// ---- hangs and resource exhaustion --------------------------------------------------------------------

TEST(UntrustedInput, SpecialFilesAreRefusedWithoutBlocking) {
  const fs::path tmp = scratch("fifo");
  const fs::path m = copy_model(tmp / "m");
  fs::remove(m / "model.safetensors");
  write(m / "model.safetensors.index.json", R"({"weight_map": {"x": "model-00001-of-00001.safetensors"}})");
  ASSERT_EQ(::mkfifo((m / "model-00001-of-00001.safetensors").c_str(), 0600), 0);
  expect_cli_refuses("inspect --model " + m.string(), {"model-00001-of-00001.safetensors", "not a regular file"});
  fs::remove(m / "model.safetensors.index.json");
  fs::rename(m / "model-00001-of-00001.safetensors", m / "model.safetensors");
  expect_cli_refuses("inspect --model " + m.string(), {"model.safetensors", "not a regular file"});
  fs::remove(m / "config.json");
  ASSERT_EQ(::mkfifo((m / "config.json").c_str(), 0600), 0);
  expect_cli_refuses("inspect --model " + m.string(), {"config.json", "not a regular file"});
  fs::remove_all(tmp);
}

TEST(UntrustedInput, QuantConfigRegexesRunInLinearTime) {
  const fs::path tmp = scratch("regex");
  const fs::path m = copy_model(tmp / "m");
  // (.|.)* backtracks for minutes in std::regex on every 55-character quantizer name it does not match.
  write(tmp / "qc.json",
        R"({"quantizers": {"(.|.)*output\\.add_local_input_quantizer$": {"enable": false},
                            "((a|b)*)*self\\.key\\._input_quantizer": {"enable": false}}})");
  const auto start = std::chrono::steady_clock::now();
  const qt::ProcessRun r =
      qt::run_command("timeout 60 " + qt::cli_binary() + " inspect --model " + m.string() + " --quant-config " +
                      (tmp / "qc.json").string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30.0);
  // Nested 20k deep: a recursive regex compiler would overflow its stack.
  write(tmp / "deep.json", "{\"quantizers\": {\"" + std::string(20000, '(') + "a" + std::string(20000, ')') +
                               "\": {\"enable\": false}}}");
  expect_cli_refuses("inspect --model " + m.string() + " --quant-config " + (tmp / "deep.json").string(),
                     {"deep.json", "invalid regex"});
  write(tmp / "backref.json", R"({"quantizers": {"(a)\\1": {"enable": false}}})");
  expect_cli_refuses("inspect --model " + m.string() + " --quant-config " + (tmp / "backref.json").string(),
                     {"backref.json", "invalid regex '(a)\\1'"});
  fs::remove_all(tmp);
}

// A rule's fields are refused when the file is read, naming the file, the rule and the field, not at the
// first forward pass (num_bits 0) or silently truncated (8.5 -> 8).
TEST(UntrustedInput, QuantConfigRuleValuesAreRefusedWhenRead) {
  const fs::path tmp = scratch("rulevalues");
  const fs::path m = copy_model(tmp / "m");
  write(tmp / "frac.json", R"({"quantizers": {"query": {"num_bits": 8.5}}})");
  expect_cli_refuses("inspect --model " + m.string() + " --quant-config " + (tmp / "frac.json").string(),
                     {"frac.json", "rule 'query'", "field 'num_bits' has the wrong type"});
  write(tmp / "zero.json", R"({"quantizers": {"query": {"num_bits": 0}}})");
  expect_cli_refuses("inspect --model " + m.string() + " --quant-config " + (tmp / "zero.json").string(),
                     {"zero.json", "rule 'query'", "num_bits must be in [1, 22], got 0"});
  fs::remove_all(tmp);
}

TEST(UntrustedInput, WordPieceCostIsBoundedByTheLongestVocabularyEntry) {
  std::vector<std::string> vocab{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a", "aa", "[MASK]"};
  tokenization::BertTokenizerOptions o;
  o.max_input_chars_per_word = 1000000000;  // as a hostile tokenizer.json may set it
  const tokenization::BertTokenizer t(vocab, o);
  const std::string word(200000, 'a');
  const auto start = std::chrono::steady_clock::now();
  const auto ids = t.tokenize_with_offsets(word).ids;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
  // Greedy longest match: "aa" then "##a" pieces (the same result as without the bound).
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 6);
  EXPECT_EQ(ids.size(), 199999u);
  const auto small = t.tokenize_with_offsets("aaaaa").ids;
  EXPECT_EQ(small, (std::vector<int64_t>{6, 5, 5, 5}));
  // A word containing a character no entry has is one [UNK], found without trying every long candidate.
  EXPECT_EQ(t.tokenize_with_offsets(std::string(100000, 'a') + "b").ids, (std::vector<int64_t>{1}));
}

TEST(UntrustedInput, ManyLabelsAreHeldOnceNotOncePerModule) {
  Config c = qt::tiny_config();
  c.set_num_labels(100000);
  c.raw_json = std::string(1 << 20, ' ');
  auto model = create_model("base", c);
  EXPECT_EQ(model->model_config().num_labels(), 100000);
  // Every encoder module keeps the structural part only.
  for (const auto& m : model->module().modules(/*include_self=*/false)) {
    if (auto* layer = m->as<QDQBertLayerImpl>()) {
      EXPECT_EQ(layer->config.num_labels(), 0);
      EXPECT_EQ(layer->config.raw_json, "{}");
      EXPECT_EQ(layer->config.hidden_size, 32);
    }
  }
}

// ---- escapes and data loss ----------------------------------------------------------------------------

TEST(UntrustedInput, ShardNamesStayInsideTheFolderAndTheIndexMustAgree) {
  const fs::path tmp = scratch("shards");
  const fs::path m = copy_model(tmp / "m");
  const std::string st = slurp(m / "model.safetensors");
  fs::remove(m / "model.safetensors");
  write(tmp / "outside.safetensors", st);
  const auto keys = io::SafetensorsFile((qt::data_path("model/masked_lm_calib_max/model/model.safetensors"))).keys();
  auto index = [&](const std::string& shard, bool all) {
    nlohmann::json map = nlohmann::json::object();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (all || i > 0) map[keys[i]] = shard;
    }
    return nlohmann::json{{"weight_map", map}}.dump();
  };
  const fs::path idx = m / "model.safetensors.index.json";
  for (const std::string shard : {"../outside.safetensors", "/etc/passwd", "sub/x.safetensors", ".."}) {
    write(idx, index(shard, true));
    expect_cli_refuses("inspect --model " + m.string(), {"model.safetensors.index.json", shard, "not a file name"});
  }
  fs::create_symlink(tmp / "outside.safetensors", m / "link.safetensors");
  write(idx, index("link.safetensors", true));
  expect_cli_refuses("inspect --model " + m.string(), {"link.safetensors", "outside the checkpoint folder"});
  write(m / "shard.safetensors", st);
  write(idx, index("shard.safetensors", false));  // the shard holds keys[0], which the index does not list
  expect_cli_refuses("inspect --model " + m.string(), {"shard.safetensors", keys[0], "does not list"});
  write(idx, index("shard.safetensors", true));
  EXPECT_EQ(qt::run_command(qt::cli_binary() + " inspect --model " + m.string()).rc, 0);
  fs::remove_all(tmp);
}

TEST(UntrustedInput, MultiFileWritesAreAllOrNothing) {
  const fs::path tmp = scratch("atomic");
  // squad-postprocess: the n-best file cannot be written, so the predictions file must not appear either.
  const std::string d = qt::data_path("squad/");
  const fs::path pred = tmp / "predictions.json";
  const qt::ProcessRun r = qt::run_command(
      qt::cli_binary() + " squad-postprocess --data " + d + "dev.json --features " + d + "features_s48_d8_v1.json" +
      " --logits " + d + "logits_s48_d8_v1.json --output " + pred.string() + " --nbest-output " +
      (tmp / "missing/dir/nbest.json").string());
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("nbest.json"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(pred));
  // calibrate: config.json cannot be replaced (it is a folder), so model.safetensors must not appear.
  const std::string src = qt::data_path("model/masked_lm_calib_max");
  fs::create_directories(tmp / "out/config.json");
  expect_cli_refuses("calibrate --model " + src + "/model --calib-data " + src + "/calib.safetensors --output " +
                         (tmp / "out").string(),
                     {"config.json", "directory"});
  EXPECT_FALSE(fs::exists(tmp / "out/model.safetensors"));
  std::vector<fs::path> left;
  for (const auto& e : fs::directory_iterator(tmp / "out")) left.push_back(e.path());
  EXPECT_EQ(left, std::vector<fs::path>{tmp / "out/config.json"});
  fs::remove_all(tmp);
}

// ---- silent wrong numbers -----------------------------------------------------------------------------

TEST(UntrustedInput, NonFiniteWeightsAndInfiniteRangesAreRefusedByName) {
  const fs::path tmp = scratch("nan");
  const fs::path m = copy_model(tmp / "m");
  auto tensors = io::load_safetensors((m / "model.safetensors").string());
  std::map<std::string, at::Tensor> edited;
  for (auto& [k, v] : tensors) edited[k] = v.clone();
  const std::string weight = "bert.encoder.layer.0.attention.self.query.weight";
  ASSERT_EQ(edited.count(weight), 1u);
  edited[weight].view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
  io::save_safetensors((m / "model.safetensors").string(), edited);
  const std::string before = slurp(m / "model.safetensors");
  expect_cli_refuses("inspect --model " + m.string(), {weight, "1 non-finite value", "nan", "flat index 3"});
  const qt::ProcessRun ok = qt::run_command(qt::cli_binary() + " inspect --allow-non-finite --model " + m.string());
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_EQ(slurp(m / "model.safetensors"), before);

  edited[weight] = tensors[weight].clone();
  std::string amax;
  for (auto& [k, v] : edited) {
    if (amax.empty() && k.size() > 6 && k.substr(k.size() - 6) == "._amax") amax = k;
  }
  ASSERT_FALSE(amax.empty());
  edited[amax] = torch::full_like(edited[amax], std::numeric_limits<float>::infinity());
  io::save_safetensors((m / "model.safetensors").string(), edited);
  expect_cli_refuses("inspect --model " + m.string(), {amax, "infinite"});
  edited[amax] = -torch::ones_like(edited[amax]);
  io::save_safetensors((m / "model.safetensors").string(), edited);
  expect_cli_refuses("inspect --model " + m.string(), {amax, "negative"});
  fs::remove_all(tmp);
}

TEST(UntrustedInput, ConfigAndDescriptorValuesAreValidatedAtParseTime) {
  const fs::path tmp = scratch("config");
  const fs::path m = copy_model(tmp / "m");
  nlohmann::json base = qt::read_json((m / "config.json").string());
  base["quantization_config"] = {{"input", {{"num_bits", 8}}}, {"weight", {{"num_bits", 8}, {"axis", 0}}}};
  write(m / "config.json", base.dump());
  ASSERT_EQ(qt::run_command(qt::cli_binary() + " inspect --model " + m.string()).rc, 0);
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["layer_norm_eps"] = -1e-12; }, {"layer_norm_eps", "positive"}},
      {[](nlohmann::json& j) { j["num_attention_heads"] = 4.9; }, {"num_attention_heads", "integer", "4.9"}},
      {[](nlohmann::json& j) { j["id2label"] = {{"1abc", "x"}}; }, {"id2label key '1abc'"}},
      {[](nlohmann::json& j) { j["hidden_dropout_prob"] = 1.5; }, {"hidden_dropout_prob", "[0, 1]"}},
      {[](nlohmann::json& j) { j["num_labels"] = -3; j.erase("id2label"); }, {"num_labels", "-3"}},
      {[](nlohmann::json& j) { j["quantization_config"]["input"]["calib_method"] = "maxx"; },
       {"quantization_config", "calib_method 'maxx'"}},
      {[](nlohmann::json& j) { j["quantization_config"]["input"]["num_bits"] = 0; }, {"quantization_config", "num_bits"}},
      {[](nlohmann::json& j) { j["quantization_config"]["weight"]["num_bits"] = 100; }, {"num_bits", "100"}},
      {[](nlohmann::json& j) { j["quantization_config"]["input"]["num_bits"] = 8.5; }, {"num_bits", "8.5"}},
      {[](nlohmann::json& j) { j["quantization_config"]["input"]["amax"] = -2.0; }, {"amax", "-2"}},
      // A config asking for more memory than the machine has: our message, not LibTorch's allocator's.
      {[](nlohmann::json& j) { j["vocab_size"] = 1000000000000LL; }, {"vocab_size 1000000000000", "GiB of memory"}},
  };
  for (const auto& c : cases) {
    nlohmann::json j = base;
    c.edit(j);
    write(m / "config.json", j.dump());
    std::vector<std::string> n = c.needles;
    n.push_back("config.json");
    expect_cli_refuses("inspect --model " + m.string(), n);
  }
  write(m / "config.json", "[" + std::string(100000, '[') + std::string(100001, ']'));
  expect_cli_refuses("inspect --model " + m.string(), {"config.json", "nested deeper than 256"});
  fs::remove_all(tmp);
}

TEST(UntrustedInput, InspectReportsMissingAndUnexpectedKeys) {
  const fs::path tmp = scratch("inspect");
  const fs::path m = copy_model(tmp / "m");
  auto tensors = io::load_safetensors((m / "model.safetensors").string());
  std::map<std::string, at::Tensor> edited(tensors.begin(), tensors.end());
  edited["cls.extra.weight"] = torch::zeros({2});
  std::string head;
  for (const auto& [k, v] : tensors) {
    if (head.empty() && k.rfind("cls.predictions.transform.", 0) == 0 && k.find("_quantizer") == std::string::npos) {
      head = k;
    }
  }
  ASSERT_FALSE(head.empty());
  edited.erase(head);
  io::save_safetensors((m / "model.safetensors").string(), edited);
  const qt::ProcessRun r = qt::run_command(qt::cli_binary() + " inspect --model " + m.string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("unexpected (not used) 1: cls.extra.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing (newly initialized)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(head), std::string::npos) << r.out;
  io::save_safetensors((m / "model.safetensors").string(), std::map<std::string, at::Tensor>{});
  expect_cli_refuses("inspect --model " + m.string(), {"holds no tensors"});
  fs::remove_all(tmp);
}

TEST(UntrustedInput, SquadNumbersThatOverflowAreRefused) {
  const fs::path tmp = scratch("squad");
  const std::string d = qt::data_path("squad/");
  nlohmann::json logits = qt::read_json(d + "logits_s48_d8_v1.json");
  logits["start_logits"][0][1] = 1e300;
  write(tmp / "logits.json", logits.dump());
  const fs::path pred = tmp / "pred.json";
  expect_cli_refuses("squad-postprocess --data " + d + "dev.json --features " + d + "features_s48_d8_v1.json" +
                         " --logits " + (tmp / "logits.json").string() + " --output " + pred.string(),
                     {"logits.json", "start_logits[0][1]", "1e+300"});
  EXPECT_FALSE(fs::exists(pred));
  nlohmann::json ds = qt::read_json(d + "dev.json");
  ds["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 9223372036854775807LL;
  write(tmp / "dev.json", ds.dump());
  expect_cli_refuses("squad-features --data " + (tmp / "dev.json").string() + " --tokenizer " +
                         qt::data_path("tokenizer/vocab_uncased.txt") + " --output " + (tmp / "f.json").string(),
                     {"answer_start 9223372036854775807", "outside the context"});
  EXPECT_FALSE(fs::exists(tmp / "f.json"));
  fs::remove_all(tmp);
}

TEST(UntrustedInput, ModelInputsOutOfRangeGetOurMessage) {
  auto model = create_model("base", qt::tiny_config());  // 64 positions
  model->module().eval();
  ModelInputs args;
  args.input_ids = torch::ones({1, 4}, torch::kLong);
  args.position_ids = torch::tensor({{0, 1, 2, 64}}, torch::kLong);
  const std::string err = qt::error_message([&] { model->run(args); });
  EXPECT_NE(err.find("position_ids out of range [0, 64)"), std::string::npos) << err;
  EXPECT_EQ(err.find("index out of range in self"), std::string::npos) << err;
  args.position_ids = at::Tensor();
  args.input_ids = torch::ones({1, 0}, torch::kLong);
  const std::string empty = qt::error_message([&] { model->run(args); });
  EXPECT_NE(empty.find("the input is empty (shape [1, 0])"), std::string::npos) << empty;
}

TEST(UntrustedInput, DescriptorAndAxisChecks) {
  EXPECT_NE(qt::error_message([] { nn::QuantDescriptor::from_json_string(R"({"num_bits": 1})"); }).find("[2, 22]"),
            std::string::npos);
  EXPECT_NO_THROW(nn::QuantDescriptor::from_json_string(R"({"num_bits": 1, "unsigned": true})"));
  EXPECT_NE(qt::error_message([] { nn::QuantDescriptor::from_json_string(R"({"calib_method": "minmax"})"); })
                .find("unknown calib_method 'minmax'"),
            std::string::npos);
  nn::TensorQuantizer q(nn::TensorQuantizerOptions(nn::QuantDescriptor().with_axis(5)));
  const std::string err = qt::error_message([&] { q->forward(torch::randn({2, 3})); });
  EXPECT_NE(err.find("axis [5] is out of range for a 2-dimensional input"), std::string::npos) << err;
}

}  // namespace
}  // namespace qdqbert
