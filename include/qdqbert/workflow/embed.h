#pragma once
/// \file
/// Sentence embeddings with a QDQBertModel (sentence-transformers recipe: mean over the attention mask,
/// L2-normalised), plus reading UTF-8 text files line by line with clear errors.

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "qdqbert/models/qdqbert.h"
#include "qdqbert/tokenization/tokenizer.h"

namespace qdqbert::workflow {

/// Reads a UTF-8 text file, one entry per line (trailing "\r" removed). Errors name the file and the
/// line (and byte) of invalid UTF-8; an empty file is an error.
std::vector<std::string> read_text_lines(const std::string& path);

struct EmbedOptions {
  int64_t max_length = 128;
  int64_t batch_size = 32;
  /// Run the lines in batches of like token count (token_count_order), still returning them in the order
  /// given: far less padding on text of mixed lengths (on the fortunes, 2.2x as fast). false:
  /// batches of consecutive lines. Which batch a line runs in changes its float32 results in the last bits
  /// at most, which in a quantized model can move a value to the next int8 level.
  bool length_sorted = true;
  /// Keep every token's last hidden state ([lines, length, hidden] floats: at length 128 and hidden 384,
  /// 196 KB a line). false leaves Embeddings::last_hidden_state undefined (sentence embeddings of a large
  /// text, 1.5 KB a line).
  bool hidden_states = true;
  /// Called after each batch with (lines done, total).
  std::function<void(int64_t, int64_t)> progress;
};

struct Embeddings {
  at::Tensor input_ids, attention_mask;  ///< [N, L] padded to the longest line
  at::Tensor last_hidden_state;          ///< [N, L, H] (undefined without EmbedOptions::hidden_states)
  at::Tensor sentence_embedding;         ///< [N, H]
};

/// The encode step: `lines` tokenized in order into batches of `batch_size` (truncation to `max_length`,
/// each batch padded to its longest line), as embed, calibration and distillation feed the model.
std::vector<ModelInputs> encode_batches(const tokenization::Tokenizer& tokenizer,
                                        const std::vector<std::string>& lines, int64_t max_length, int64_t batch_size);

/// `lines` in order of their token count after truncation to `max_length` (stable, shortest first), so
/// that encode_batches pads each batch little. For measurements over a set of sentences whose result does
/// not depend on their order (cosine statistics, recall@k): the PTQ study evaluates in this order.
/// `group` > 0 sorts each run of `group` consecutive lines on its own (the last run may be shorter) — for
/// training on shuffled lines: batches of like length that still mix the text (rare kinds of line, e.g.
/// ASCII art, spread over the groups instead of filling a few batches of their own).
std::vector<std::string> sort_by_token_count(const tokenization::Tokenizer& tokenizer,
                                             const std::vector<std::string>& lines, int64_t max_length,
                                             int64_t group = 0);
/// The order of sort_by_token_count as indices into `lines`: sorted[i] = lines[order[i]].
std::vector<size_t> token_count_order(const tokenization::Tokenizer& tokenizer, const std::vector<std::string>& lines,
                                      int64_t max_length, int64_t group = 0);

/// Runs `model` (a QDQBertModel or any TaskModel whose output has last_hidden_state) on each batch without
/// gradients and pools; the rows are padded with `pad_token_id` / zeros to the longest batch.
Embeddings embed_batches(TaskModel& model, const std::vector<ModelInputs>& batches, int64_t pad_token_id,
                         const std::function<void(int64_t, int64_t)>& progress = {});

/// encode_batches + embed_batches (in batches of like token count unless options.length_sorted is false);
/// row i of every result is lines[i].
Embeddings embed(TaskModel& model, const tokenization::Tokenizer& tokenizer, const std::vector<std::string>& lines,
                 const EmbedOptions& options = {});

/// Mean over the attention mask, L2-normalised.
at::Tensor mean_pool_normalize(const at::Tensor& last_hidden_state, const at::Tensor& attention_mask);

}  // namespace qdqbert::workflow
