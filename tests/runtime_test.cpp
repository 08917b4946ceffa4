// BLAS threading detection and the oversubscription advice.
#include "qdqbert/runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
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

}  // namespace
