#pragma once
// Internal: Python `_init_weights` over every submodule of a model (shared by the encoder and the heads).
#include <torch/nn/module.h>

#include "qdqbert/config.h"

namespace qdqbert {

/// normal(0, initializer_range) linears and embeddings, zero biases and padding row, LayerNorm 1/0.
void init_module_weights(torch::nn::Module& root, const Config& config);

}  // namespace qdqbert
