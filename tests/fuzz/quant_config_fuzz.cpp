// libFuzzer target: the quant-config file (workflow::QuantConfig::from_json_string: the bounded JSON parser,
// the two descriptors, each rule's fields and its regex) on arbitrary bytes. The input is the file, then
// optionally a NUL and a quantizer name. An accepted config holds only values the kernels accept, writes
// itself out and reads back to the same text (a fixed point after one round), and every rule's pattern
// compiles and searches the name.
#include "fuzz_util.h"
#include "qdqbert/error.h"
#include "qdqbert/nn/quant_descriptor.h"
#include "qdqbert/regex.h"
#include "qdqbert/workflow/quant_config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  const auto [text, name] = fuzz::split_at_nul(data, size);
  workflow::QuantConfig c;
  try {
    c = workflow::QuantConfig::from_json_string(text, "fuzz/q.json");
  } catch (const Error&) {
    return 0;
  }
  for (const auto& r : c.rules) {
    if (r.num_bits) fuzz::check(*r.num_bits >= nn::kMinUnsignedBits && *r.num_bits <= nn::kMaxBits);
    for (int64_t l : r.layers) fuzz::check(l >= 0);
    fuzz::check(!r.axis || r.set_axis);
    (void)Regex(r.pattern, "fuzz").search(name);  // accepted patterns compile
  }
  const std::string once = c.to_json_string();
  const workflow::QuantConfig again = workflow::QuantConfig::from_json_string(once, "fuzz/round-trip");
  fuzz::check(again.to_json_string() == once);
  fuzz::check(again.rules.size() == c.rules.size() && again.disable == c.disable);
  fuzz::check(again.input.has_value() == c.input.has_value() && (!c.input || *again.input == *c.input));
  fuzz::check(again.weight.has_value() == c.weight.has_value() && (!c.weight || *again.weight == *c.weight));
  return 0;
}
