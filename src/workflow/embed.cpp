#include "qdqbert/workflow/embed.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/tensors.h"
#include "text/utf8.h"

namespace qdqbert::workflow {

std::vector<std::string> read_text_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QDQBERT_CHECK(in.good(), "cannot open text file '", path, "'");
  std::vector<std::string> lines;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto bad = text::find_invalid_utf8(line);
    QDQBERT_CHECK(!bad, "text file '", path, "' line ", n, ": invalid UTF-8 at byte ", bad->byte + 1);
    lines.push_back(line);
  }
  QDQBERT_CHECK(!lines.empty(), "text file '", path, "' is empty");
  return lines;
}

at::Tensor mean_pool_normalize(const at::Tensor& h, const at::Tensor& mask) {
  at::Tensor m = mask.unsqueeze(-1).to(h.dtype());
  at::Tensor mean = (h * m).sum(1) / m.sum(1).clamp_min(1e-9);
  return torch::nn::functional::normalize(mean, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
}

std::vector<size_t> token_count_order(const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                                      int64_t max_length, int64_t group) {
  TORCH_CHECK_VALUE(max_length > 2, "encode: max_length must be > 2, got ", max_length);
  TORCH_CHECK_VALUE(group >= 0, "encode: the sorting group must be >= 0 lines, got ", group);
  tokenization::EncodeOptions eo;
  eo.truncation = tokenization::Truncation::LongestFirst;
  eo.max_length = max_length;
  // Token counts only, a chunk of lines at a time: the encodings of a whole large text would not fit.
  constexpr size_t kChunk = 4096;
  std::vector<size_t> count(lines.size());
  for (size_t begin = 0; begin < lines.size(); begin += kChunk) {
    const auto first = lines.begin() + static_cast<std::ptrdiff_t>(begin);
    const auto enc =
        tok.encode_batch({first, first + static_cast<std::ptrdiff_t>(std::min(kChunk, lines.size() - begin))}, {}, eo);
    for (size_t j = 0; j < enc.size(); ++j) count[begin + j] = enc[j].input_ids.size();
  }
  std::vector<size_t> order(lines.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const size_t step = group > 0 ? static_cast<size_t>(group) : std::max<size_t>(1, order.size());
  for (size_t begin = 0; begin < order.size(); begin += step) {
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
    std::stable_sort(first, first + static_cast<std::ptrdiff_t>(std::min(step, order.size() - begin)),
                     [&](size_t a, size_t b) { return count[a] < count[b]; });
  }
  return order;
}

namespace {
std::vector<std::string> in_order(const std::vector<std::string>& lines, const std::vector<size_t>& order) {
  std::vector<std::string> out;
  out.reserve(order.size());
  for (size_t i : order) out.push_back(lines[i]);
  return out;
}
}  // namespace

std::vector<std::string> sort_by_token_count(const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                                             int64_t max_length, int64_t group) {
  return in_order(lines, token_count_order(tok, lines, max_length, group));
}

std::vector<ModelInputs> encode_batches(const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                                        int64_t max_length, int64_t batch_size) {
  TORCH_CHECK_VALUE(batch_size > 0 && max_length > 2, "encode: batch_size must be > 0 and max_length > 2, got ",
                    batch_size, " and ", max_length);
  tokenization::EncodeOptions eo;
  eo.truncation = tokenization::Truncation::LongestFirst;
  eo.max_length = max_length;
  eo.padding = tokenization::Padding::Longest;
  std::vector<ModelInputs> batches;
  for (size_t s = 0; s < lines.size(); s += static_cast<size_t>(batch_size)) {
    const std::vector<std::string> chunk(lines.begin() + static_cast<std::ptrdiff_t>(s),
                                         lines.begin() + static_cast<std::ptrdiff_t>(
                                                             std::min(lines.size(), s + static_cast<size_t>(batch_size))));
    auto t = tokenization::to_tensors(tok.encode_batch(chunk, {}, eo));
    ModelInputs in;
    in.input_ids = t.input_ids;
    in.attention_mask = t.attention_mask;
    in.token_type_ids = t.token_type_ids;
    batches.push_back(std::move(in));
  }
  return batches;
}

namespace {

// Runs the batches and writes the k-th row, in batch order, to row dest[k] of the result (dest empty: row k),
// padded to the longest batch. The result is allocated once and filled batch by batch, so the peak is the
// result plus one batch's activations.
Embeddings embed_rows(TaskModel& model, const std::vector<ModelInputs>& batches, const std::vector<int64_t>& dest,
                      int64_t pad_token_id, bool hidden_states, const std::function<void(int64_t, int64_t)>& progress) {
  TORCH_CHECK_VALUE(!batches.empty(), "embed: no lines");
  torch::NoGradGuard no_grad;
  int64_t n = 0, longest = 0;
  for (const auto& b : batches) {
    n += b.input_ids.size(0);
    longest = std::max(longest, b.input_ids.size(1));
  }
  TORCH_INTERNAL_ASSERT(dest.empty() || static_cast<int64_t>(dest.size()) == n);
  const at::Tensor where = dest.empty() ? torch::arange(n, torch::kLong) : torch::tensor(dest, torch::kLong);
  Embeddings r;
  int64_t done = 0;
  for (const auto& in : batches) {
    ModelOutput out = model.run(in);
    TORCH_CHECK_VALUE(out.last_hidden_state.defined(), "embed: ", model.class_name(), " gives no last_hidden_state");
    const at::Tensor& h = out.last_hidden_state;
    if (!r.input_ids.defined()) {
      r.input_ids = torch::full({n, longest}, pad_token_id, in.input_ids.options());
      r.attention_mask = torch::zeros({n, longest}, in.attention_mask.options());
      if (hidden_states) r.last_hidden_state = torch::zeros({n, longest, h.size(2)}, h.options());
      r.sentence_embedding = torch::zeros({n, h.size(2)}, h.options());
    }
    const int64_t rows = in.input_ids.size(0);
    const at::Tensor at_rows = where.slice(0, done, done + rows);
    auto put = [&](at::Tensor& into, const at::Tensor& from) {
      into.narrow(1, 0, from.size(1)).index_copy_(0, at_rows.to(into.device()), from.to(into.device()));
    };
    put(r.input_ids, in.input_ids);
    put(r.attention_mask, in.attention_mask);
    if (hidden_states) put(r.last_hidden_state, h);
    put(r.sentence_embedding, mean_pool_normalize(h, in.attention_mask.to(h.device())));
    done += rows;
    if (progress) progress(done, n);
  }
  return r;
}

}  // namespace

Embeddings embed_batches(TaskModel& model, const std::vector<ModelInputs>& batches, int64_t pad_token_id,
                         const std::function<void(int64_t, int64_t)>& progress) {
  return embed_rows(model, batches, {}, pad_token_id, true, progress);
}

Embeddings embed(TaskModel& model, const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                 const EmbedOptions& o) {
  TORCH_CHECK_VALUE(!lines.empty(), "embed: no lines");
  if (!o.length_sorted) {
    return embed_rows(model, encode_batches(tok, lines, o.max_length, o.batch_size), {}, tok.pad_token_id(),
                      o.hidden_states, o.progress);
  }
  // The k-th line run is lines[order[k]]: its row goes back to order[k].
  const auto order = token_count_order(tok, lines, o.max_length);
  return embed_rows(model, encode_batches(tok, in_order(lines, order), o.max_length, o.batch_size),
                    std::vector<int64_t>(order.begin(), order.end()), tok.pad_token_id(), o.hidden_states, o.progress);
}

}  // namespace qdqbert::workflow
