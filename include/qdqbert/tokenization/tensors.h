#pragma once
/// \file
/// Tensors from a tokenizer's BatchEncoding (`return_tensors="pt"` of the Python call). The only
/// tokenization header that needs LibTorch; the tokenizers themselves stay torch-free.

#include <ATen/core/Tensor.h>

#include "qdqbert/tokenization/encoding.h"

namespace qdqbert::tokenization {

/// int64 tensors shaped [rows, seq_len] (offset_mapping: [rows, seq_len, 2]; overflow_to_sample_mapping:
/// [rows]). Rows must have equal lengths (pad with Padding::Longest or MaxLength), else qdqbert::Error.
struct EncodingTensors {
  at::Tensor input_ids, token_type_ids, attention_mask, special_tokens_mask, offset_mapping, overflow_to_sample_mapping;
};

EncodingTensors to_tensors(const BatchEncoding& batch);

}  // namespace qdqbert::tokenization
