#pragma once
/// \file
/// Facts about the math libraries LibTorch runs on, and advice where they cost speed.
///
/// Debian's LibTorch calls OpenBLAS for its matrix multiplies. With `libopenblas0-pthread` (the variant
/// apt picks by default) OpenBLAS keeps its own thread pool beside LibTorch's OpenMP pool; both spin
/// while waiting, and on few cores they take turns stealing the CPU from each other. Measured on
/// all-MiniLM-L6-v2 (seq 128, 2 threads, 2 cores, bench/compare_minilm.sh): the FP32 forward takes 74 ms at
/// batch 1 with the pthread build and 24 ms with `libopenblas0-openmp`, which shares LibTorch's OpenMP pool.

#include <string>

namespace qdqbert {

/// How the BLAS under LibTorch is threaded: "openmp", "pthreads" or "sequential" for OpenBLAS (asked
/// through `openblas_get_parallel`), "unknown" for anything else (MKL in PyPI's torch, reference BLAS).
std::string blas_threading();

/// The advice for the running process: empty when nothing is wrong, else one paragraph naming the
/// problem and the fix (OpenBLAS with pthreads while LibTorch uses more than one thread).
std::string blas_threading_advice();

/// Keeps the memory that LibTorch frees in the process for reuse instead of handing it back to the kernel
/// (glibc malloc: large blocks come from the heap instead of their own mmap, and the heap's top is not
/// trimmed). Every forward and backward allocates and frees activations of several MiB. By default glibc
/// returns such blocks to the kernel at once, so the next call page-faults on each of their 4 KiB pages
/// again and the kernel zeroes them: measured on all-MiniLM-L6-v2 (seq 128, 2 threads, bench_minilm), this
/// is about a quarter of the FP32 forward at batch 8 and 32, and more of the fake-quant forward, which
/// allocates more. The cost: the process keeps its peak heap size until it exits.
/// Process-wide, so the library never calls it by itself: the apps (qdqbert-cli, squad_qa) and the
/// benchmarks call it at startup, unless QDQBERT_RETURN_FREED_MEMORY=1 is set. Returns whether the setting
/// took effect (false with another C library, or when that variable is set).
bool retain_freed_memory();

/// Issues blas_threading_advice() once per process as a warning (TORCH_WARN) when it is not empty.
/// The apps (qdqbert-cli, squad_qa) call it once the thread count is set; a C++ application should do the
/// same at startup (the library's loaders do not warn). Set QDQBERT_NO_BLAS_WARNING=1 to silence it.
void warn_blas_threading_once();

}  // namespace qdqbert
