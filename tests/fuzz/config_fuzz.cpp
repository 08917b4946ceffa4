// libFuzzer target: config.json (Config::from_json_string), quantizer descriptors
// (QuantDescriptor::from_json_string) and the bounded JSON parser itself, on arbitrary bytes. An accepted
// config validates and round-trips through to_json_string; an accepted descriptor round-trips exactly.
#include "fuzz_util.h"
#include "qdqbert/config.h"
#include "qdqbert/error.h"
#include "qdqbert/json.h"
#include "qdqbert/nn/quant_descriptor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 3) {
      case 0: {
        const Config c = Config::from_json_string(text, "fuzz/config.json");
        c.validate();
        const Config again = Config::from_json_string(c.to_json_string(), "fuzz/round-trip");
        fuzz::check(again.hidden_size == c.hidden_size && again.num_labels() == c.num_labels() &&
                    again.layer_norm_eps == c.layer_norm_eps);
        break;
      }
      case 1: {
        const nn::QuantDescriptor d = nn::QuantDescriptor::from_json_string(text);
        fuzz::check(nn::QuantDescriptor::from_json_string(d.to_json_string()) == d);
        break;
      }
      default: {
        const nlohmann::json j = parse_json(text, "fuzz", 16);
        (void)j.dump();
        break;
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
