// BatchEncoding -> int64 tensors (kept apart from the torch-free tokenizer sources).
#include "qdqbert/tokenization/tensors.h"

#include <ATen/ATen.h>

#include "qdqbert/error.h"

namespace qdqbert::tokenization {

EncodingTensors to_tensors(const BatchEncoding& batch) {
  const int64_t rows = static_cast<int64_t>(batch.size());
  const int64_t len = rows ? static_cast<int64_t>(batch.encodings[0].size()) : 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (static_cast<int64_t>(batch.encodings[static_cast<size_t>(r)].size()) != len) {
      fail("tokenizer: to_tensors needs rows of equal length (row 0 has ", len, " tokens, row ", r, " has ",
           batch.encodings[static_cast<size_t>(r)].size(), "); request padding");
    }
  }
  const auto opts = at::TensorOptions().dtype(at::kLong);
  EncodingTensors t;
  auto fill = [&](std::vector<int64_t> Encoding::*field) {
    at::Tensor x = at::empty({rows, len}, opts);
    int64_t* p = x.data_ptr<int64_t>();
    for (const auto& e : batch.encodings) p = std::copy((e.*field).begin(), (e.*field).end(), p);
    return x;
  };
  t.input_ids = fill(&Encoding::input_ids);
  t.token_type_ids = fill(&Encoding::token_type_ids);
  t.attention_mask = fill(&Encoding::attention_mask);
  t.special_tokens_mask = fill(&Encoding::special_tokens_mask);
  t.offset_mapping = at::empty({rows, len, 2}, opts);
  int64_t* o = t.offset_mapping.data_ptr<int64_t>();
  for (const auto& e : batch.encodings) {
    for (const auto& [s, f] : e.offset_mapping) {
      *o++ = s;
      *o++ = f;
    }
  }
  t.overflow_to_sample_mapping = at::empty({rows}, opts);
  std::copy(batch.overflow_to_sample_mapping.begin(), batch.overflow_to_sample_mapping.end(),
            t.overflow_to_sample_mapping.data_ptr<int64_t>());
  return t;
}

}  // namespace qdqbert::tokenization
