#pragma once
/// \file
/// Quantizer configuration applied to a model, and the quantizer summary table. The file format and its
/// parser (torch-free): workflow/quant_config_file.h.

#include <ostream>

#include "qdqbert/io/checkpoint.h"
#include "qdqbert/models/qdqbert.h"
#include "qdqbert/nn/quantizer_select.h"
#include "qdqbert/workflow/quant_config_file.h"

namespace qdqbert::workflow {

/// `print_quant_summary`: one row per quantizer — name, enabled, bits, axis, amax (or range), calibrator.
void print_quant_summary(TaskModel& model, std::ostream& os);

}  // namespace qdqbert::workflow
