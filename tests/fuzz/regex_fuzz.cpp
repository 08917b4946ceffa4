// libFuzzer target: qdqbert::Regex (the quant-config and name-filter pattern matcher) on an arbitrary
// pattern and text (split at the first 0x00 byte). Matching must stay linear: libFuzzer's -timeout
// catches any input that is slow. Invariants: a full match is also a match, and ".*" around a pattern
// that matches keeps matching in full.
#include "fuzz_util.h"
#include "qdqbert/error.h"
#include "qdqbert/regex.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qdqbert;
  const auto [pattern, text] = fuzz::split_at_nul(data, size);
  try {
    const Regex re(pattern, "fuzz");
    const bool found = re.search(text), full = re.full_match(text);
    fuzz::check(!full || found);
    if (found && text.find('\n') == std::string::npos) {
      fuzz::check(Regex(".*(?:" + pattern + ").*", "fuzz").full_match(text) ||
                  pattern.find_first_of("^$") != std::string::npos);
    }
  } catch (const Error&) {
  }
  return 0;
}
