#pragma once
/// \file
/// SQuAD v1.1 / v2.0 files as the Hugging Face `squad` / `squad_v2` loaders see them: one Example per
/// question, answers in file order (duplicates kept), empty for unanswerable v2 questions.
/// Torch-free; errors are qdqbert::Error naming the file and question id.

#include <cstdint>
#include <string>
#include <vector>

namespace qdqbert::squad {

/// One gold answer. `answer_start` is a character (Unicode code point) index into the context, like
/// Python string indices.
struct Answer {
  std::string text;
  int64_t answer_start = 0;
};

/// One question with its paragraph (a row of the HF `squad` dataset: id, title, context, question,
/// answers).
struct Example {
  std::string id;
  std::string title;
  std::string context;
  std::string question;
  std::vector<Answer> answers;
  /// v2 only: `is_impossible` as written in the file (false when absent).
  bool is_impossible = false;
};

struct Dataset {
  std::string version;  ///< the file's "version" field ("1.1", "v2.0", ...; empty when absent)
  std::vector<Example> examples;
  /// True when any question is unanswerable or carries `is_impossible` (a v2 file).
  bool has_negative() const;
};

struct ReadOptions {
  /// Check that context[answer_start : answer_start + len(text)] == text for every answer.
  bool check_answer_start = true;
  /// Accept a file without questions (otherwise an error).
  bool allow_empty = false;
};

/// Reads a SQuAD v1.1 or v2.0 JSON file.
Dataset read_squad(const std::string& path, const ReadOptions& options = {});
/// Parses SQuAD JSON text; `source` names it in error messages.
Dataset parse_squad(const std::string& json_text, const std::string& source = "<string>",
                    const ReadOptions& options = {});

}  // namespace qdqbert::squad
