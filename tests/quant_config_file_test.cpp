// The quant-config file format (workflow/quant_config_file.h) as a parser of untrusted text: exact types
// and ranges, file order. No torch here, so this file also runs under ASan + UBSan (tests/fuzz,
// qdqbert_core_tests_sanitized). Applying a config to a model: quantizer_select_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "qdqbert/error.h"
#include "qdqbert/workflow/quant_config_file.h"

namespace qdqbert {
namespace {

// Rule fields are read with their exact type and range, at parse time, naming the file, rule and field.
TEST(QuantConfigFile, RuleFieldsAreCheckedWhenRead) {
  auto parse_error = [](const std::string& rule) {
    try {
      workflow::QuantConfig::from_json_string(R"({"quantizers": {"x": )" + rule + "}}", "q.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::pair<const char*, const char*> cases[] = {
      {R"({"num_bits": 8.5})", "quant config 'q.json': rule 'x': field 'num_bits' has the wrong type (expected an integer"},
      {R"({"num_bits": 0})", "rule 'x': num_bits must be in [1, 22], got 0"},
      {R"({"num_bits": 23})", "num_bits must be in [1, 22], got 23"},
      {R"({"num_bits": 1, "unsigned": false})", "num_bits must be in [2, 22], got 1"},
      {R"({"num_bits": 18446744073709551615})", "'num_bits' is out of range"},
      {R"({"enable": 1})", "field 'enable' has the wrong type (expected true or false, got number)"},
      {R"({"narrow_range": "yes"})", "field 'narrow_range' has the wrong type"},
      {R"({"axis": [0, 1.5]})", "field 'axis' has the wrong type (expected an integer"},
      {R"({"layers": [0.5]})", "field 'layers' has the wrong type"},
      {R"({"role": ["matmul_input", 3]})", "field 'role' has the wrong type (expected role names, got number)"},
      {R"({"bits": 8})", "rule 'x': unknown field 'bits'"},
      {R"(7)", "quant config 'q.json': rule 'x' must be an object"},
  };
  for (const auto& [rule, expected] : cases) {
    const std::string err = parse_error(rule);
    EXPECT_NE(err.find(expected), std::string::npos) << rule << " -> " << err;
  }
  // Within range they are accepted; "axis": null means per tensor.
  const auto ok = workflow::QuantConfig::from_json_string(
      R"({"quantizers": {"x": {"num_bits": 1, "unsigned": true, "axis": null}, "y": {"num_bits": 22, "axis": [0]}}})");
  EXPECT_EQ(ok.rules[0].num_bits, std::optional<int64_t>(1));
  EXPECT_TRUE(ok.rules[0].set_axis);
  EXPECT_FALSE(ok.rules[0].axis.has_value());
  EXPECT_EQ(ok.rules[1].axis, std::optional<std::vector<int64_t>>(std::vector<int64_t>{0}));
}

// The rules keep the file's order through reading and writing: later rules win, as the format says.
TEST(QuantConfigFile, RulesKeepTheFileOrder) {
  const auto qc = workflow::QuantConfig::from_json_string(
      R"({"quantizers": {"z": {"enable": false}, "a": {"num_bits": 4}, "m": {"role": "other"}}, "disable": true})");
  ASSERT_EQ(qc.rules.size(), 3u);
  EXPECT_EQ(qc.rules[0].pattern, "z");
  EXPECT_EQ(qc.rules[1].pattern, "a");
  EXPECT_EQ(qc.rules[2].pattern, "m");
  const std::string text = qc.to_json_string();
  EXPECT_LT(text.find("\"z\""), text.find("\"a\"")) << text;
  EXPECT_LT(text.find("\"a\""), text.find("\"m\"")) << text;
  const auto again = workflow::QuantConfig::from_json_string(text);
  EXPECT_EQ(again.to_json_string(), text);
  EXPECT_TRUE(again.disable);
}

// Top-level errors name the file and the key.
TEST(QuantConfigFile, TopLevelErrorsNameTheFileAndKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"[]", "quant config 'q.json': expected a JSON object"},
      {R"({"quantisers": {}})", "quant config 'q.json': unknown key 'quantisers'"},
      {R"({"disable": 1})", "quant config 'q.json': 'disable' must be true or false"},
      {R"({"quantizers": []})", "quant config 'q.json': 'quantizers' must be an object"},
      {R"({"input": {"num_bits": 0}})", "quant config 'q.json': QuantDescriptor: num_bits must be in [2, 22]"},
      {R"({"quantizers": {"(a": {}}})", "quant config 'q.json': invalid regex '(a'"},
      {R"({"quantizers": )", "quant config 'q.json': invalid JSON"},
  };
  for (const auto& [text, expected] : cases) {
    std::string err = "accepted";
    try {
      workflow::QuantConfig::from_json_string(text, "q.json");
    } catch (const Error& e) {
      err = e.what();
    }
    EXPECT_NE(err.find(expected), std::string::npos) << text << " -> " << err;
  }
}

}  // namespace
}  // namespace qdqbert
