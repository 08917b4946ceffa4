// nn/quantizer_select.h: every quantizer's role, owner and layer, selectors over those, and the users
// that moved to it (calibration selection, clip_gelu, quant-config "role" / "layers").
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "model_util.h"
#include "qdqbert/nn/quant_linear.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/workflow/calibrate.h"
#include "qdqbert/workflow/quant_config.h"
#include "qdqbert/workflow/quant_trainer.h"
#include "test_util.h"

namespace qt = qdqbert::testing;
using namespace qdqbert;
using nn::QuantizerRole;

namespace {

std::vector<std::string> names_of(const std::vector<nn::QuantizerInfo>& infos) {
  std::vector<std::string> out;
  for (const auto& i : infos) out.push_back(i.name);
  return out;
}

const nn::QuantizerInfo& find(const std::vector<nn::QuantizerInfo>& infos, const std::string& name) {
  auto it = std::find_if(infos.begin(), infos.end(), [&](const nn::QuantizerInfo& i) { return i.name == name; });
  if (it == infos.end()) throw std::runtime_error("no quantizer " + name);
  return *it;
}

constexpr QuantizerRole kRoles[] = {QuantizerRole::kLinearInput, QuantizerRole::kLinearWeight,
                                    QuantizerRole::kMatmulInput, QuantizerRole::kResidualAddInput,
                                    QuantizerRole::kOther};

}  // namespace

TEST(QuantizerSelect, RoleNamesRoundTripAndUnknownOnesAreRefused) {
  EXPECT_STREQ(nn::to_string(QuantizerRole::kLinearInput), "linear_input");
  EXPECT_STREQ(nn::to_string(QuantizerRole::kLinearWeight), "linear_weight");
  EXPECT_STREQ(nn::to_string(QuantizerRole::kMatmulInput), "matmul_input");
  EXPECT_STREQ(nn::to_string(QuantizerRole::kResidualAddInput), "residual_add_input");
  EXPECT_STREQ(nn::to_string(QuantizerRole::kOther), "other");
  for (QuantizerRole r : kRoles) EXPECT_EQ(nn::parse_quantizer_role(nn::to_string(r)), r);
  EXPECT_THROW(nn::parse_quantizer_role("bogus"), c10::ValueError);
  const std::string err = qt::error_message([] { nn::parse_quantizer_role("bogus"); });
  EXPECT_NE(err.find("unknown quantizer role 'bogus'"), std::string::npos) << err;
  EXPECT_NE(err.find("linear_input, linear_weight, matmul_input, residual_add_input, other"), std::string::npos) << err;
  EXPECT_THROW(nn::parse_quantizer_role("Linear_Input"), c10::ValueError);  // names are exact
  EXPECT_THROW(nn::parse_quantizer_role(""), c10::ValueError);
}

TEST(QuantizerSelect, EveryQuantizerOfATinyBaseModelHasItsRoleOwnerAndLayer) {
  Config c = qt::tiny_config();  // 2 layers
  auto m = create_model("base", c);
  const auto infos = nn::list_quantizers(m->module());
  const auto named = named_quantizers(m->module());

  // Same names, same order, the same modules as named_quantizers.
  ASSERT_EQ(infos.size(), named.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    EXPECT_EQ(infos[i].name, named[i].first);
    EXPECT_EQ(infos[i].quantizer.get(), named[i].second.get()) << infos[i].name;
  }

  // Per layer: q, k, v, attention output, intermediate, output → 6 linear inputs and 6 weights; 4 matmul
  // inputs; 2 residual adds after attention and 2 after the FFN. The pooler is a plain Linear and the
  // embeddings hold no quantizer, so every quantizer has a layer.
  std::map<std::pair<int64_t, QuantizerRole>, int> count;
  for (const auto& i : infos) {
    ASSERT_TRUE(i.layer.has_value()) << i.name;
    ++count[{*i.layer, i.role}];
    EXPECT_EQ(i.name.rfind("encoder.layer." + std::to_string(*i.layer) + ".", 0), 0u) << i.name;
    EXPECT_EQ(i.name.rfind(i.owner + ".", 0), 0u) << i.name << " owner " << i.owner;
    EXPECT_EQ(i.name.find('.', i.owner.size() + 1), std::string::npos) << i.name << ": owner is not the parent";
    EXPECT_EQ(i.name.find("pooler"), std::string::npos) << i.name;
  }
  for (int64_t l : {0, 1}) {
    EXPECT_EQ((count[{l, QuantizerRole::kLinearInput}]), 6) << "layer " << l;
    EXPECT_EQ((count[{l, QuantizerRole::kLinearWeight}]), 6) << "layer " << l;
    EXPECT_EQ((count[{l, QuantizerRole::kMatmulInput}]), 4) << "layer " << l;
    EXPECT_EQ((count[{l, QuantizerRole::kResidualAddInput}]), 4) << "layer " << l;
    EXPECT_EQ((count[{l, QuantizerRole::kOther}]), 0) << "layer " << l;
  }
  EXPECT_EQ(infos.size(), 40u);

  const auto& q_in = find(infos, "encoder.layer.1.attention.self.query._input_quantizer");
  EXPECT_EQ(q_in.role, QuantizerRole::kLinearInput);
  EXPECT_EQ(q_in.owner, "encoder.layer.1.attention.self.query");
  EXPECT_EQ(q_in.layer, std::optional<int64_t>(1));
  const auto& w = find(infos, "encoder.layer.0.intermediate.dense._weight_quantizer");
  EXPECT_EQ(w.role, QuantizerRole::kLinearWeight);
  EXPECT_EQ(w.owner, "encoder.layer.0.intermediate.dense");
  EXPECT_EQ(w.layer, std::optional<int64_t>(0));
  const auto& mm = find(infos, "encoder.layer.0.attention.self.matmul_a_input_quantizer");
  EXPECT_EQ(mm.role, QuantizerRole::kMatmulInput);
  EXPECT_EQ(mm.owner, "encoder.layer.0.attention.self");
  const auto& add = find(infos, "encoder.layer.1.output.add_residual_input_quantizer");
  EXPECT_EQ(add.role, QuantizerRole::kResidualAddInput);
  EXPECT_EQ(add.owner, "encoder.layer.1.output");
  EXPECT_EQ(add.layer, std::optional<int64_t>(1));
  const auto& att_add = find(infos, "encoder.layer.0.attention.output.add_local_input_quantizer");
  EXPECT_EQ(att_add.role, QuantizerRole::kResidualAddInput);
  EXPECT_EQ(att_add.owner, "encoder.layer.0.attention.output");

  // The info shares the module: switching it switches the model's quantizer.
  nn::TensorQuantizer shared = q_in.quantizer;
  shared->disable();
  EXPECT_FALSE(named[static_cast<size_t>(&q_in - infos.data())].second->is_enabled());
}

TEST(QuantizerSelect, HeadModelsKeepLayersAndOwnersUnderTheirPrefix) {
  Config c = qt::tiny_config();
  auto m = create_model("question-answering", c);
  const auto infos = nn::list_quantizers(m->module());
  ASSERT_EQ(infos.size(), 40u);
  const auto& v = find(infos, "bert.encoder.layer.1.attention.self.value._weight_quantizer");
  EXPECT_EQ(v.role, QuantizerRole::kLinearWeight);
  EXPECT_EQ(v.owner, "bert.encoder.layer.1.attention.self.value");
  EXPECT_EQ(v.layer, std::optional<int64_t>(1));
}

TEST(QuantizerSelect, RolesComeFromTheOwnerAndTheRegisteredName) {
  // A QuantLinear as the root: its two quantizers, owned by the root (empty owner), no layer.
  nn::QuantLinear lin(4, 3);
  const auto own = nn::list_quantizers(*lin);
  ASSERT_EQ(own.size(), 2u);
  EXPECT_EQ(own[0].name, "_input_quantizer");
  EXPECT_EQ(own[0].role, QuantizerRole::kLinearInput);
  EXPECT_EQ(own[1].name, "_weight_quantizer");
  EXPECT_EQ(own[1].role, QuantizerRole::kLinearWeight);
  for (const auto& i : own) {
    EXPECT_EQ(i.owner, "");
    EXPECT_FALSE(i.layer.has_value());
  }

  // A hand-built tree: the QuantLinear names count only on a QuantLinear; matmul_/add_ inputs anywhere.
  auto root = std::make_shared<torch::nn::Module>();
  auto encoder = root->register_module("encoder", std::make_shared<torch::nn::Module>());
  auto layers = encoder->register_module("layer", torch::nn::ModuleList());
  auto block = std::make_shared<torch::nn::Module>();
  layers->push_back(std::make_shared<torch::nn::Module>());
  layers->push_back(block);
  block->register_module("_input_quantizer", nn::TensorQuantizer());
  block->register_module("_weight_quantizer", nn::TensorQuantizer());
  block->register_module("matmul_x_input_quantizer", nn::TensorQuantizer());
  block->register_module("add_y_input_quantizer", nn::TensorQuantizer());
  block->register_module("matmul_x_weight_quantizer", nn::TensorQuantizer());
  block->register_module("dense", nn::QuantLinear(4, 4));
  auto other = root->register_module("xencoder", std::make_shared<torch::nn::Module>());
  auto other_layer = other->register_module("layer", torch::nn::ModuleList());
  other_layer->push_back(nn::TensorQuantizer());
  root->register_module("add_top_input_quantizer", nn::TensorQuantizer());

  const auto infos = nn::list_quantizers(*root);
  EXPECT_EQ(names_of(infos), (std::vector<std::string>{
                                 "encoder.layer.1._input_quantizer",
                                 "encoder.layer.1._weight_quantizer",
                                 "encoder.layer.1.matmul_x_input_quantizer",
                                 "encoder.layer.1.add_y_input_quantizer",
                                 "encoder.layer.1.matmul_x_weight_quantizer",
                                 "encoder.layer.1.dense._input_quantizer",
                                 "encoder.layer.1.dense._weight_quantizer",
                                 "xencoder.layer.0",
                                 "add_top_input_quantizer",
                             }));
  const std::vector<QuantizerRole> roles = {QuantizerRole::kOther,        QuantizerRole::kOther,
                                            QuantizerRole::kMatmulInput,  QuantizerRole::kResidualAddInput,
                                            QuantizerRole::kOther,        QuantizerRole::kLinearInput,
                                            QuantizerRole::kLinearWeight, QuantizerRole::kOther,
                                            QuantizerRole::kResidualAddInput};
  ASSERT_EQ(infos.size(), roles.size());
  for (size_t i = 0; i < infos.size(); ++i) EXPECT_EQ(infos[i].role, roles[i]) << infos[i].name;
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(infos[i].layer, std::optional<int64_t>(1)) << infos[i].name;
  EXPECT_EQ(infos[5].owner, "encoder.layer.1.dense");
  EXPECT_FALSE(infos[7].layer.has_value()) << "\"xencoder.layer.\" is not \"encoder.layer.\"";
  EXPECT_EQ(infos[7].owner, "xencoder.layer");
  EXPECT_EQ(infos[8].owner, "");
  EXPECT_FALSE(infos[8].layer.has_value());
}

TEST(QuantizerSelect, SelectorsCombineRoleLayerNameAndOwner) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  auto& root = m->module();
  const auto all = nn::list_quantizers(root);

  nn::QuantizerSelector any;
  EXPECT_EQ(names_of(nn::select_quantizers(root, any)), names_of(all));
  EXPECT_EQ(any.describe(), "any quantizer");

  nn::QuantizerSelector matmul1;
  matmul1.roles = {QuantizerRole::kMatmulInput};
  matmul1.layers = {1};
  EXPECT_EQ(names_of(nn::select_quantizers(root, matmul1)),
            (std::vector<std::string>{"encoder.layer.1.attention.self.matmul_q_input_quantizer",
                                      "encoder.layer.1.attention.self.matmul_k_input_quantizer",
                                      "encoder.layer.1.attention.self.matmul_v_input_quantizer",
                                      "encoder.layer.1.attention.self.matmul_a_input_quantizer"}));

  nn::QuantizerSelector query;
  query.name_regex = "query\\._";
  EXPECT_EQ(names_of(nn::select_quantizers(root, query)),
            (std::vector<std::string>{"encoder.layer.0.attention.self.query._input_quantizer",
                                      "encoder.layer.0.attention.self.query._weight_quantizer",
                                      "encoder.layer.1.attention.self.query._input_quantizer",
                                      "encoder.layer.1.attention.self.query._weight_quantizer"}));

  nn::QuantizerSelector attention_adds;
  attention_adds.owner_regex = "attention\\.output$";
  const auto adds = nn::select_quantizers(root, attention_adds);
  ASSERT_EQ(adds.size(), 4u);
  for (const auto& i : adds) EXPECT_EQ(i.role, QuantizerRole::kResidualAddInput) << i.name;

  nn::QuantizerSelector ffn0;
  ffn0.roles = {QuantizerRole::kLinearInput, QuantizerRole::kLinearWeight};
  ffn0.layers = {0};
  ffn0.owner_regex = "intermediate";
  EXPECT_EQ(names_of(nn::select_quantizers(root, ffn0)),
            (std::vector<std::string>{"encoder.layer.0.intermediate.dense._input_quantizer",
                                      "encoder.layer.0.intermediate.dense._weight_quantizer"}));
  EXPECT_EQ(ffn0.describe(), "role in {linear_input, linear_weight}, layer in {0}, owner ~ /intermediate/");

  nn::QuantizerSelector weights_by_name;
  weights_by_name.roles = {QuantizerRole::kLinearWeight};
  weights_by_name.name_regex = "^encoder\\.layer\\.1\\.";
  weights_by_name.layers = {0, 1};
  EXPECT_EQ(nn::select_quantizers(root, weights_by_name).size(), 6u);
  EXPECT_EQ(weights_by_name.describe(), "role in {linear_weight}, layer in {0, 1}, name ~ /^encoder\\.layer\\.1\\./");

  nn::QuantizerSelector nothing;
  nothing.layers = {2};
  EXPECT_TRUE(nn::select_quantizers(root, nothing).empty());

  // matches() agrees with select_quantizers.
  for (const auto* s : {&any, &matmul1, &query, &attention_adds, &ffn0, &weights_by_name, &nothing}) {
    std::vector<std::string> by_matches;
    for (const auto& i : all) {
      if (s->matches(i)) by_matches.push_back(i.name);
    }
    EXPECT_EQ(by_matches, names_of(nn::select_quantizers(root, *s))) << s->describe();
  }

  // A layer restriction never matches quantizers outside the encoder layers.
  nn::QuantLinear lin(4, 3);
  nn::QuantizerSelector layer0;
  layer0.layers = {0};
  EXPECT_TRUE(nn::select_quantizers(*lin, layer0).empty());
  EXPECT_EQ(nn::select_quantizers(*lin, any).size(), 2u);
}

TEST(QuantizerSelect, AnInvalidRegexIsAnErrorNamingThePattern) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  nn::QuantizerSelector bad_name;
  bad_name.name_regex = "(unclosed";
  EXPECT_THROW(nn::select_quantizers(m->module(), bad_name), c10::ValueError);
  std::string err = qt::error_message([&] { nn::select_quantizers(m->module(), bad_name); });
  EXPECT_NE(err.find("name_regex: invalid regex '(unclosed'"), std::string::npos) << err;
  err = qt::error_message([&] { bad_name.matches(nn::list_quantizers(m->module()).front()); });
  EXPECT_NE(err.find("name_regex: invalid regex '(unclosed'"), std::string::npos) << err;

  nn::QuantizerSelector bad_owner;
  bad_owner.owner_regex = "[";
  err = qt::error_message([&] { nn::select_quantizers(m->module(), bad_owner); });
  EXPECT_NE(err.find("owner_regex: invalid regex '['"), std::string::npos) << err;
  // Even on a tree without quantizers.
  torch::nn::Module empty;
  err = qt::error_message([&] { nn::select_quantizers(empty, bad_owner); });
  EXPECT_NE(err.find("owner_regex: invalid regex '['"), std::string::npos) << err;
}

TEST(QuantizerSelect, CalibrationSelectsByRole) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  nn::QuantizerSelector activations;
  activations.roles = {QuantizerRole::kLinearInput, QuantizerRole::kMatmulInput, QuantizerRole::kResidualAddInput};
  workflow::CalibrationOptions no_weights;
  no_weights.calibrate_weights = false;
  EXPECT_EQ(workflow::enable_calibration(*m, no_weights), names_of(nn::select_quantizers(m->module(), activations)));
  EXPECT_EQ(workflow::enable_calibration(*m), names_of(nn::list_quantizers(m->module())));
}

TEST(QuantizerSelect, ClipGeluTouchesOnlyTheFfnOutputDenseInputs) {
  // An encoder-decoder layer has attention.output.dense, crossattention.output.dense and output.dense:
  // all three end with "output.dense", only the last reads the GELU output.
  Config c = qt::tiny_config();
  c.is_decoder = true;
  c.add_cross_attention = true;
  auto m = create_model("causal-lm", c);
  for (auto& i : nn::list_quantizers(m->module())) i.quantizer->set_amax(1.0);
  const auto log = workflow::clip_gelu(*m, 0.25);
  std::vector<std::string> clipped;
  for (auto& i : nn::list_quantizers(m->module())) {
    if (i.quantizer->amax().item<float>() < 1.0f) clipped.push_back(i.name);
  }
  EXPECT_EQ(clipped, (std::vector<std::string>{"bert.encoder.layer.0.output.dense._input_quantizer",
                                               "bert.encoder.layer.1.output.dense._input_quantizer"}));
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[0].find("bert.encoder.layer.0.output.dense._input_quantizer"), std::string::npos) << log[0];
}

TEST(QuantizerSelect, QuantConfigRulesMayRestrictByRoleAndLayers) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  auto qc = workflow::QuantConfig::from_json_string(R"({"quantizers": {
      ".": {"enable": false, "role": "residual_add_input", "layers": [0]},
      "attention\\.self": {"num_bits": 6, "role": ["matmul_input", "linear_weight"], "layers": 1},
      "query": {"unsigned": false}}})");
  ASSERT_EQ(qc.rules.size(), 3u);
  EXPECT_EQ(qc.rules[0].roles, std::vector<QuantizerRole>{QuantizerRole::kResidualAddInput});
  EXPECT_EQ(qc.rules[0].layers, std::vector<int64_t>{0});
  EXPECT_EQ(qc.rules[1].roles, (std::vector<QuantizerRole>{QuantizerRole::kMatmulInput, QuantizerRole::kLinearWeight}));
  EXPECT_EQ(qc.rules[1].layers, std::vector<int64_t>{1});
  EXPECT_TRUE(qc.rules[2].roles.empty());
  EXPECT_TRUE(qc.rules[2].layers.empty());
  EXPECT_EQ(qc.apply(*m), (std::vector<int>{4, 7, 4}));  // 4 adds; 4 matmuls + q/k/v weights; 2 layers x 2
  for (auto& i : nn::list_quantizers(m->module())) {
    const bool off = i.role == QuantizerRole::kResidualAddInput && i.layer == std::optional<int64_t>(0);
    EXPECT_EQ(i.quantizer->is_enabled(), !off) << i.name;
    const bool six = i.layer == std::optional<int64_t>(1) && i.owner.find("attention.self") != std::string::npos &&
                     (i.role == QuantizerRole::kMatmulInput || i.role == QuantizerRole::kLinearWeight);
    EXPECT_EQ(i.quantizer->num_bits(), six ? 6 : 8) << i.name;
  }

  // Round trip: one role is written as a string, several as a list.
  const auto again = workflow::QuantConfig::from_json_string(qc.to_json_string());
  ASSERT_EQ(again.rules.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const auto& r = qc.rules[i];
    const auto it = std::find_if(again.rules.begin(), again.rules.end(),
                                 [&](const workflow::QuantizerRule& x) { return x.pattern == r.pattern; });
    ASSERT_NE(it, again.rules.end()) << r.pattern;
    EXPECT_EQ(it->roles, r.roles) << r.pattern;
    EXPECT_EQ(it->layers, r.layers) << r.pattern;
  }
  const auto j = nlohmann::json::parse(qc.to_json_string());
  EXPECT_EQ(j["quantizers"]["."]["role"], "residual_add_input");
  EXPECT_EQ(j["quantizers"]["attention\\.self"]["role"], nlohmann::json::array({"matmul_input", "linear_weight"}));
  EXPECT_FALSE(j["quantizers"]["query"].contains("role"));
  EXPECT_FALSE(j["quantizers"]["query"].contains("layers"));

  // A restriction that leaves nothing is the usual "matches no quantizer" error, with the restriction.
  auto none = workflow::QuantConfig::from_json_string(R"({"quantizers": {"query": {"enable": false, "layers": [7]}}})");
  std::string err = qt::error_message([&] { none.apply(*m); });
  EXPECT_NE(err.find("rule 'query' matches no quantizer of QDQBertModel with layer in {7}"), std::string::npos) << err;

  auto parse_error = [](const std::string& rule) {
    return qt::error_message(
        [&] { workflow::QuantConfig::from_json_string(R"({"quantizers": {"x": )" + rule + "}}", "q.json"); });
  };
  err = parse_error(R"({"role": "bogus"})");
  EXPECT_NE(err.find("quant config 'q.json': rule 'x': unknown quantizer role 'bogus'"), std::string::npos) << err;
  err = parse_error(R"({"role": []})");
  EXPECT_NE(err.find("'role' must name at least one role"), std::string::npos) << err;
  err = parse_error(R"({"role": 3})");
  EXPECT_NE(err.find("field 'role' has the wrong type"), std::string::npos) << err;
  err = parse_error(R"({"layers": [0, -1]})");
  EXPECT_NE(err.find("layer -1 is negative"), std::string::npos) << err;
  err = parse_error(R"({"layers": []})");
  EXPECT_NE(err.find("'layers' must list at least one layer"), std::string::npos) << err;
  err = parse_error(R"({"layers": "0"})");
  EXPECT_NE(err.find("field 'layers' has the wrong type"), std::string::npos) << err;
}

// "later rules win" holds for the order in the file, not the keys' sorted order, and survives a write.
TEST(QuantizerSelect, QuantConfigRulesApplyInFileOrder) {
  Config c = qt::tiny_config();
  auto m = create_model("base", c);
  // Sorted, "." comes before "query"; in the file it comes last and turns everything back on.
  const auto qc = workflow::QuantConfig::from_json_string(
      R"({"quantizers": {"query": {"enable": false, "num_bits": 4}, ".": {"enable": true, "num_bits": 6}}})");
  ASSERT_EQ(qc.rules.size(), 2u);
  EXPECT_EQ(qc.rules[0].pattern, "query");
  EXPECT_EQ(qc.rules[1].pattern, ".");
  const auto again = workflow::QuantConfig::from_json_string(qc.to_json_string());
  ASSERT_EQ(again.rules.size(), 2u);
  EXPECT_EQ(again.rules[0].pattern, "query");
  EXPECT_EQ(again.to_json_string(), qc.to_json_string());
  again.apply(*m);
  for (auto& i : nn::list_quantizers(m->module())) {
    EXPECT_TRUE(i.quantizer->is_enabled()) << i.name;
    EXPECT_EQ(i.quantizer->num_bits(), 6) << i.name;
  }
}
