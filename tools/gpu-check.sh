#!/usr/bin/env bash
# The GPU checks in one go: the CUDA test binary (kernel bit-exactness, every reference model fixture on
# the GPU) and the GPU benchmark, from binaries built against a CUDA LibTorch (README "CUDA").
#   tools/gpu-check.sh BIN_DIR [OUT_DIR]
# BIN_DIR holds qdqbert_cuda_tests and bench_cuda (e.g. a build folder's tests/ and bench/ outputs copied
# together). The Python torch on PATH supplies LibTorch's shared libraries when they are not otherwise
# found. Results go to OUT_DIR (default: the current folder): cuda_tests.txt/.json and bench_cuda.txt.
set -uo pipefail
BIN=${1:?usage: tools/gpu-check.sh BIN_DIR [OUT_DIR]}
OUT_DIR=${2:-.}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT_DIR"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null); then
  echo "python torch $(python3 -c 'import torch; print(torch.__version__)') at $TORCH_DIR"
  LIBS=$TORCH_DIR/lib
  # libcudart.so.13 for the binaries themselves (LibTorch's own libraries find theirs by RPATH).
  SITE=$(dirname "$TORCH_DIR")
  CUDART=$(find "$SITE/nvidia" /usr/local/cuda/lib64 /usr/local/cuda/targets -name 'libcudart.so.1*' 2>/dev/null | head -1)
  [ -n "$CUDART" ] && LIBS=$LIBS:$(dirname "$CUDART")
  export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export QDQBERT_TEST_DATA=${QDQBERT_TEST_DATA:-$ROOT/tests/data}

missing=$(ldd "$BIN/qdqbert_cuda_tests" | grep 'not found')
if [ -n "$missing" ]; then
  echo "gpu-check: libraries not found for qdqbert_cuda_tests:"
  echo "$missing"
  exit 2
fi
rc=0
"$BIN/qdqbert_cuda_tests" --gtest_output="json:$OUT_DIR/cuda_tests.json" >"$OUT_DIR/cuda_tests.txt" 2>&1 || rc=1
grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure|differ' "$OUT_DIR/cuda_tests.txt" | head -80
"$BIN/bench_cuda" "${BENCH_ROUNDS:-7}" 2>&1 | tee "$OUT_DIR/bench_cuda.txt" || rc=1
exit $rc
