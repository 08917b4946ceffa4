// One measured io::from_pretrained in a fresh process, for load_stream_test.cpp's peak-RSS test.
// usage: qdqbert_load_probe WARMUP_DIR DIR
// Loads WARMUP_DIR (a tiny checkpoint of the same layout, so LibTorch's code pages and the allocator are
// warm) and drops it, resets the peak RSS (/proc/self/clear_refs "5", Linux >= 4.0), loads DIR and prints
// "<peak RSS added, KiB> <the model's tensors, KiB> <1 if the peak was reset, else 0>".
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include "peak_rss.h"
#include "qdqbert/io/checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: qdqbert_load_probe WARMUP_DIR DIR\n");
    return 2;
  }
  try {
    qdqbert::io::PretrainedOptions options;
    options.log_summary = false;
    qdqbert::io::from_pretrained(argv[1], options);
    const int64_t before = qdqbert::testing::status_kib("VmRSS");
    const bool reset = qdqbert::testing::reset_peak_rss();
    auto model = qdqbert::io::from_pretrained(argv[2], options);
    const int64_t peak = qdqbert::testing::status_kib("VmHWM");
    std::set<const void*> seen;  // tied weights once
    int64_t bytes = 0;
    for (const auto& t : model->module().parameters()) {
      if (seen.insert(t.data_ptr()).second) bytes += t.numel() * t.element_size();
    }
    for (const auto& t : model->module().buffers()) {
      if (t.defined() && seen.insert(t.data_ptr()).second) bytes += t.numel() * t.element_size();
    }
    std::printf("%lld %lld %d\n", static_cast<long long>(peak - before), static_cast<long long>(bytes / 1024),
                reset ? 1 : 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qdqbert_load_probe: %s\n", e.what());
    return 1;
  }
  return 0;
}
