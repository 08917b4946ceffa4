#pragma once
// Helpers shared by the squad-* subcommands (header-only, internal to qdqbert-cli).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "qdqbert/json.h"
#include "qdqbert/squad/metrics.h"

namespace qdqbert::cli::squad_cmd {

inline nlohmann::json read_json_file(const std::string& path, const char* what) {
  return parse_json_document(io::read_file(path, what), std::string(what) + " " + path);
}

/// Predictions as `{id: text}` (the official scripts' and squad-postprocess's layout) or as the HF
/// metric's list `[{id, prediction_text, no_answer_probability?}]`, in file order.
inline std::vector<squad::Prediction> parse_predictions(const nlohmann::json& j, const std::string& path) {
  std::vector<squad::Prediction> out;
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      QDQBERT_CHECK(it.value().is_string(), "predictions file ", path, ": question id \"", it.key(),
                    "\" must map to a string, got ", it.value().dump());
      out.push_back({it.key(), it.value().get<std::string>(), 0.0});
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      const auto& p = j[i];
      QDQBERT_CHECK(p.is_object() && p.contains("id") && p["id"].is_string() && p.contains("prediction_text") &&
                        p["prediction_text"].is_string(),
                    "predictions file ", path, ": entry ", i, " needs string \"id\" and \"prediction_text\"");
      squad::Prediction pred{p["id"].get<std::string>(), p["prediction_text"].get<std::string>(), 0.0};
      if (p.contains("no_answer_probability")) {
        QDQBERT_CHECK(p["no_answer_probability"].is_number(), "predictions file ", path, ": question id \"", pred.id,
                      "\": no_answer_probability must be a number");
        pred.no_answer_probability = p["no_answer_probability"].get<double>();
      }
      out.push_back(std::move(pred));
    }
  } else {
    fail("predictions file ", path, ": expected {id: text} or a list of {id, prediction_text}");
  }
  return out;
}

inline std::vector<squad::Prediction> read_predictions(const std::string& path) {
  return parse_predictions(read_json_file(path, "predictions file"), path);
}

}  // namespace qdqbert::cli::squad_cmd
