// OpenBLAS threading detection: openblas_get_parallel is looked up in the process (LibTorch's own
// dependency), so nothing links against OpenBLAS directly and other BLAS builds just report "unknown".
#include "qdqbert/runtime.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>
#include <cstdlib>
#include <mutex>

namespace qdqbert {

std::string blas_threading() {
  using GetParallel = int (*)();
  auto fn = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  if (fn == nullptr) return "unknown";
  switch (fn()) {
    case 0:
      return "sequential";
    case 1:
      return "pthreads";
    case 2:
      return "openmp";
    default:
      return "unknown";
  }
}

std::string blas_threading_advice() {
  if (at::get_num_threads() <= 1 || blas_threading() != "pthreads") return {};
  return "qdqbert: LibTorch's matrix multiplies run on OpenBLAS built with pthreads, whose thread pool "
         "competes with LibTorch's OpenMP pool for the same cores (measured: BERT forwards 1.5-3.5x slower on "
         "2 cores). Install the OpenMP build and select it: apt-get install libopenblas0-openmp && "
         "update-alternatives --set libopenblas.so.0-x86_64-linux-gnu "
         "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 (or run with one thread). "
         "QDQBERT_NO_BLAS_WARNING=1 silences this.";
}

bool retain_freed_memory() {
  const char* off = std::getenv("QDQBERT_RETURN_FREED_MEMORY");
  if (off != nullptr && std::string(off) != "0") return false;
#if defined(__GLIBC__)
  // No block gets its own mapping (M_MMAP_MAX 0), and up to 2 GiB free at the heap's top stays mapped.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

void warn_blas_threading_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* off = std::getenv("QDQBERT_NO_BLAS_WARNING");
    if (off != nullptr && std::string(off) != "0") return;
    const std::string advice = blas_threading_advice();
    if (!advice.empty()) TORCH_WARN(advice);
  });
}

}  // namespace qdqbert
