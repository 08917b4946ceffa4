// BLAS threading detection and the oversubscription advice.
#include "qdqbert/runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <set>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string>

namespace {

struct ThreadsGuard {
  int saved = at::get_num_threads();
  ~ThreadsGuard() { at::set_num_threads(saved); }
};

TEST(Runtime, BlasThreadingIsKnownValue) {
  const std::string t = qdqbert::blas_threading();
  EXPECT_TRUE((std::set<std::string>{"openmp", "pthreads", "sequential", "unknown"}.count(t))) << t;
  // .ci/run selects the OpenMP OpenBLAS and says so; a machine set up another way skips this check.
  if (const char* want = std::getenv("QDQBERT_EXPECT_BLAS_THREADING")) {
    EXPECT_EQ(t, want);
  }
}

TEST(Runtime, AdviceOnlyForPthreadsWithSeveralThreads) {
  ThreadsGuard g;
  at::set_num_threads(1);
  EXPECT_EQ(qdqbert::blas_threading_advice(), "");
  at::set_num_threads(2);
  const std::string advice = qdqbert::blas_threading_advice();
  if (qdqbert::blas_threading() == "pthreads") {
    EXPECT_NE(advice.find("libopenblas0-openmp"), std::string::npos) << advice;
  } else {
    EXPECT_EQ(advice, "");
  }
}

#if defined(__GLIBC__)
// After retain_freed_memory, a freed 64 MiB block stays in the heap for the next allocation instead of
// being unmapped (glibc maps blocks above its threshold, at most 32 MiB, on their own and unmaps them at
// free). The setting is process-wide and only changes where memory comes from, so the rest of the suite
// is unaffected.
TEST(Runtime, RetainFreedMemoryKeepsLargeBlocksForReuse) {
  ::setenv("QDQBERT_RETURN_FREED_MEMORY", "1", 1);
  EXPECT_FALSE(qdqbert::retain_freed_memory());  // the opt-out
  ::unsetenv("QDQBERT_RETURN_FREED_MEMORY");
  ASSERT_TRUE(qdqbert::retain_freed_memory());
  constexpr size_t kBytes = size_t{64} << 20;
  const size_t mapped_before = mallinfo2().hblkhd;
  char* p = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBytes);
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before);  // not a mapping of its own
  std::free(p);
  EXPECT_GE(mallinfo2().fordblks, kBytes);  // kept free in the heap
}
#endif

}  // namespace
