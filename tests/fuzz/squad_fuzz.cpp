// libFuzzer target: every SQuAD-side reader on arbitrary bytes: datasets (parse_squad, with and without
// the answer_start check), validation features, logits, and predictions (both layouts squad-eval reads).
#include "fuzz_util.h"
#include "qdqbert/error.h"
#include "qdqbert/json.h"
#include "qdqbert/squad/dataset.h"
#include "qdqbert/squad/features.h"
#include "qdqbert/squad/postprocess.h"
#include "squad_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 5) {
      case 0:
      case 1: {
        squad::ReadOptions o;
        o.check_answer_start = data[0] % 5 == 0;
        const squad::Dataset ds = squad::parse_squad(text, "fuzz.json", o);
        for (const auto& ex : ds.examples) {
          for (const auto& a : ex.answers) fuzz::check(a.answer_start >= 0);
        }
        break;
      }
      case 2:
        (void)squad::parse_validation_features(text, "fuzz.json");
        break;
      case 3: {
        const auto [s, e] = squad::parse_logits(text, "fuzz.json");
        fuzz::check(s.size() == e.size());
        break;
      }
      default:
        (void)cli::squad_cmd::parse_predictions(parse_json(text, "fuzz.json"), "fuzz.json");
        break;
    }
  } catch (const Error&) {
  }
  return 0;
}
