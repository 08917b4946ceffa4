// Tokenizer output as LibTorch tensors (tokenization/tensors.h): the one tokenizer test that needs torch,
// kept apart so that tokenizer_test.cpp stays torch-free and also runs under ASan + UBSan (tests/fuzz).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "qdqbert/error.h"
#include "qdqbert/tokenization/bert_tokenizer.h"
#include "qdqbert/tokenization/tensors.h"
#include "test_config.h"

namespace tok = qdqbert::tokenization;

namespace {

tok::BertTokenizer uncased() {
  return tok::BertTokenizer::from_vocab_file(std::string(QDQBERT_TEST_DATA_DIR) + "/tokenizer/vocab_uncased.txt");
}

TEST(TokenizerApi, TensorsOnRequest) {
  const auto t = uncased();
  tok::EncodeOptions o;
  o.padding = tok::Padding::Longest;
  const tok::BatchEncoding b = t.encode_batch({"short", "a somewhat longer text"}, {}, o);
  const tok::EncodingTensors x = tok::to_tensors(b);
  ASSERT_EQ(x.input_ids.dim(), 2);
  EXPECT_EQ(x.input_ids.size(0), 2);
  EXPECT_EQ(x.input_ids.size(1), static_cast<int64_t>(b[1].size()));
  EXPECT_EQ(x.offset_mapping.size(2), 2);
  EXPECT_EQ(x.attention_mask.sum().item<int64_t>(),
            static_cast<int64_t>(std::count(b[0].attention_mask.begin(), b[0].attention_mask.end(), 1) +
                                 std::count(b[1].attention_mask.begin(), b[1].attention_mask.end(), 1)));
  EXPECT_EQ(x.input_ids[1][0].item<int64_t>(), t.cls_token_id());
  o.padding = tok::Padding::None;
  EXPECT_THROW(tok::to_tensors(t.encode_batch({"short", "a somewhat longer text"}, {}, o)), qdqbert::Error);
}

}  // namespace
