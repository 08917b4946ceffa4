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
  const auto enc = tok.encode_batch(lines, {}, eo);
  std::vector<size_t> order(lines.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const size_t step = group > 0 ? static_cast<size_t>(group) : std::max<size_t>(1, order.size());
  for (size_t begin = 0; begin < order.size(); begin += step) {
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
    std::stable_sort(first, first + static_cast<std::ptrdiff_t>(std::min(step, order.size() - begin)),
                     [&](size_t a, size_t b) { return enc[a].input_ids.size() < enc[b].input_ids.size(); });
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

Embeddings embed_batches(TaskModel& model, const std::vector<ModelInputs>& batches, int64_t pad_token_id,
                         const std::function<void(int64_t, int64_t)>& progress) {
  TORCH_CHECK_VALUE(!batches.empty(), "embed: no lines");
  torch::NoGradGuard no_grad;
  int64_t n = 0, done = 0, longest = 0;
  for (const auto& b : batches) n += b.input_ids.size(0);
  std::vector<at::Tensor> ids, masks, hidden, emb;
  for (const auto& in : batches) {
    ModelOutput out = model.run(in);
    TORCH_CHECK_VALUE(out.last_hidden_state.defined(), "embed: ", model.class_name(), " gives no last_hidden_state");
    ids.push_back(in.input_ids);
    masks.push_back(in.attention_mask);
    hidden.push_back(out.last_hidden_state);
    emb.push_back(mean_pool_normalize(out.last_hidden_state, in.attention_mask));
    longest = std::max(longest, in.input_ids.size(1));
    done += in.input_ids.size(0);
    if (progress) progress(done, n);
  }
  namespace F = torch::nn::functional;
  auto pad_to = [&](std::vector<at::Tensor>& v, int64_t value) {
    for (auto& t : v) {
      const int64_t extra = longest - t.size(1);
      if (extra == 0) continue;
      std::vector<int64_t> pad = t.dim() == 3 ? std::vector<int64_t>{0, 0, 0, extra} : std::vector<int64_t>{0, extra};
      t = F::pad(t, F::PadFuncOptions(pad).value(static_cast<double>(value)));
    }
    return torch::cat(v, 0);
  };
  Embeddings r;
  r.input_ids = pad_to(ids, pad_token_id);
  r.attention_mask = pad_to(masks, 0);
  r.last_hidden_state = pad_to(hidden, 0);
  r.sentence_embedding = torch::cat(emb, 0);
  return r;
}

Embeddings embed(TaskModel& model, const tokenization::Tokenizer& tok, const std::vector<std::string>& lines,
                 const EmbedOptions& o) {
  TORCH_CHECK_VALUE(!lines.empty(), "embed: no lines");
  if (!o.length_sorted) {
    return embed_batches(model, encode_batches(tok, lines, o.max_length, o.batch_size), tok.pad_token_id(), o.progress);
  }
  const auto order = token_count_order(tok, lines, o.max_length);
  Embeddings e = embed_batches(model, encode_batches(tok, in_order(lines, order), o.max_length, o.batch_size),
                               tok.pad_token_id(), o.progress);
  // Row i holds line order[i]: move it back to row order[i].
  std::vector<int64_t> back(order.size());
  for (size_t i = 0; i < order.size(); ++i) back[order[i]] = static_cast<int64_t>(i);
  const at::Tensor rows = torch::tensor(back, torch::kLong);
  for (at::Tensor* t : {&e.input_ids, &e.attention_mask, &e.last_hidden_state, &e.sentence_embedding}) {
    *t = t->index_select(0, rows);
  }
  return e;
}

}  // namespace qdqbert::workflow
