// qdqbert-cli under careless or hostile arguments: size flags are capped with a message of ours, and an
// output that names an input is refused before anything is read or written, the input left unchanged.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "process_util.h"
#include "test_util.h"

namespace qdqbert {
namespace {

namespace fs = std::filesystem;
namespace qt = qdqbert::testing;

fs::path scratch(const std::string& name) { return qt::scratch_dir("harden", name); }
using qt::slurp;

// A refusal: exit status 1 (not a signal), one line naming what is wrong.
void expect_refused(const qt::ProcessRun& r, const std::vector<std::string>& needles, const std::string& args) {
  EXPECT_EQ(r.signal, 0) << args << "\n" << r.out;
  EXPECT_NE(r.rc, 0) << args << "\n" << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << args << "\n" << r.out;
}

TEST(CliHardening, SizeFlagsAreCappedWithOurMessage) {
  const std::string model = qt::data_path("model/masked_lm_calib_max/model");
  const fs::path tmp = scratch("caps");
  std::ofstream(tmp / "t.txt") << "a line\n";
  const std::string text = (tmp / "t.txt").string(), out = (tmp / "o.safetensors").string();
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"embed --model " + model + " --text-file " + text + " --output " + out + " --threads 100000",
       {"--threads", "from 0 to 1024", "100000"}},
      {"embed --model " + model + " --text-file " + text + " --output " + out + " --batch-size 0",
       {"--batch-size", "from 1 to 4096, got '0'"}},
      {"embed --model " + model + " --text-file " + text + " --output " + out + " --max-length 1e9",
       {"--max-length", "from 3 to 65536"}},
      {"calibrate --model " + model + " --calib-text " + text + " --output " + (tmp / "c").string() +
           " --num-bins 999999999",
       {"--num-bins", "from 1 to 1048576"}},
      {"tokenize --tokenizer " + qt::data_path("tokenizer/vocab_uncased.txt") +
           " --text hi --padding max_length --max-length 4000000000",
       {"--max-length", "from 0 to 65536"}},
  };
  for (const auto& [args, needles] : cases) {
    expect_refused(qt::run_command(qt::cli_binary() + " " + args), needles, args);
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(tmp / "c"));
  fs::remove_all(tmp);
}

// A flag with a fixed set of values refuses any other with the flag, the value and the choices.
TEST(CliHardening, ChoiceFlagsNameTheChoices) {
  const std::string model = qt::data_path("model/masked_lm_calib_max/model");
  const fs::path tmp = scratch("choices");
  std::ofstream(tmp / "t.txt") << "a line\n";
  const std::string out = (tmp / "o.safetensors").string();
  const std::string args =
      "embed --model " + model + " --text-file " + (tmp / "t.txt").string() + " --output " + out + " --batching sorted";
  expect_refused(qt::run_command(qt::cli_binary() + " " + args), {"--batching", "sorted", "length", "input"}, args);
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(tmp);
}

TEST(CliHardening, AnOutputThatIsAnInputIsRefusedAndTheInputKept) {
  const fs::path tmp = scratch("inout");
  // Inputs copied into the scratch folder, so that a failure of this test can never damage tests/data.
  fs::copy(qt::data_path("model/masked_lm_calib_max"), tmp / "case", fs::copy_options::recursive);
  fs::copy_file(qt::data_path("squad/dev.json"), tmp / "dev.json");
  std::ofstream(tmp / "requests.jsonl") << R"({"init": {}, "call": {"text": "hello"}})" << "\n";
  fs::create_symlink(tmp / "dev.json", tmp / "alias.json");
  const std::string m = (tmp / "case/model").string(), in = (tmp / "case/inputs.safetensors").string();
  const std::string vocab = qt::data_path("tokenizer/vocab_uncased.txt");
  struct Case {
    std::string args;
    fs::path kept;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"infer --model " + m + " --inputs " + in + " --output " + in, in, {"--output", "same file as --inputs"}},
      {"calibrate --model " + m + " --calib-data " + (tmp / "case/calib.safetensors").string() + " --output " + m,
       m + "/model.safetensors", {"same folder as --model"}},
      {"calibrate --model " + m + " --calib-data " + (tmp / "case/calib.safetensors").string() + " --output " +
           (tmp / "case/model/.").string(),
       m + "/model.safetensors", {"same folder as --model"}},
      {"tokenize --tokenizer " + vocab + " --requests " + (tmp / "requests.jsonl").string() + " --output " +
           (tmp / "requests.jsonl").string(),
       tmp / "requests.jsonl", {"same file as --requests"}},
      {"squad-features --data " + (tmp / "dev.json").string() + " --tokenizer " + vocab + " --output " +
           (tmp / "alias.json").string(),
       tmp / "dev.json", {"--output", "same file as --data"}},
  };
  for (const auto& c : cases) {
    const std::string before = slurp(c.kept);
    const auto mtime = fs::last_write_time(c.kept);
    expect_refused(qt::run_command(qt::cli_binary() + " " + c.args), c.needles, c.args);
    EXPECT_EQ(slurp(c.kept), before) << c.args;
    EXPECT_EQ(fs::last_write_time(c.kept), mtime) << c.args;
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace qdqbert
