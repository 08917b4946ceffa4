#pragma once
// Shared by the report writers (ptq-study, qat): number formatting and the JSON of a fidelity result.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "qdqbert/workflow/fidelity.h"

namespace qdqbert::workflow {

inline std::string fixed(double v, int precision = 4) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.*f", precision, v);
  return b;
}

inline nlohmann::ordered_json fidelity_json(const EmbeddingFidelity& f) {
  return {{"cosine_mean", f.cosine_mean}, {"cosine_p5", f.cosine_p5},   {"cosine_min", f.cosine_min},
          {"max_abs_diff", f.max_abs_diff}, {"recall_at_k", f.recall_at_k}, {"k", f.k},
          {"top1_unchanged", f.top1_unchanged}};
}

/// "| 0.9912 | 0.9803 | 0.9511 | 0.962 | 0.931 |": cosine mean, p5, min, recall@k, top-1 unchanged.
inline std::string fidelity_cells(const EmbeddingFidelity& f) {
  return "| " + fixed(f.cosine_mean) + " | " + fixed(f.cosine_p5) + " | " + fixed(f.cosine_min) + " | " +
         fixed(f.recall_at_k, 3) + " | " + fixed(f.top1_unchanged, 3) + " |";
}
inline const char* fidelity_header() { return "| cosine mean | cosine p5 | cosine min | recall@10 | top-1 unchanged |"; }
inline const char* fidelity_rule() { return "|---|---|---|---|---|"; }

}  // namespace qdqbert::workflow
