#!/usr/bin/env bash
# The whole path of the paper on all-MiniLM-L6-v2, as docs/qat-minilm reports it: PTQ study (calibrator
# sweep, sensitivity, partial quantization) -> QAT by distillation with every quantizer on (full int8) and
# with every GEMM in int8 (residual adds in FP32) -> ONNX export of both, checked in ONNX Runtime.
# Steps whose output folder exists are skipped, so an interrupted run resumes.
# usage: tools/minilm-path.sh MODEL_DIR OUT_DIR [THREADS] [FULL_STEPS] [GEMM_STEPS]
#   MODEL_DIR: the FP32 checkpoint (tools/fetch-minilm.sh build/minilm); CLI: $QDQBERT_CLI or the build's.
set -euo pipefail
USAGE="usage: tools/minilm-path.sh MODEL_DIR OUT_DIR [THREADS] [FULL_STEPS] [GEMM_STEPS]"
MODEL=${1:?$USAGE}
OUT=${2:?$USAGE}
THREADS=${3:-2}
FULL_STEPS=${4:-1300}
GEMM_STEPS=${5:-300}
HERE=$(cd "$(dirname "$0")/.." && pwd)
CLI=${QDQBERT_CLI:-$HERE/build/tools/cli/qdqbert-cli}
mkdir -p "$OUT"
[ -f "$OUT/text/eval.txt" ] || "$HERE/tools/make-study-text.sh" "$OUT/text"
head -n 512 "$OUT/text/eval.txt" > "$OUT/eval512.txt"
if [ ! -d "$OUT/study" ]; then
  "$CLI" ptq-study --model "$MODEL" --calib-text "$OUT/text/calib.txt" --eval-text "$OUT/text/eval.txt" \
      --calib-lines 512 --eval-lines 512 --output "$OUT/study" --threads "$THREADS" > /dev/null
fi
echo '{"quantizers": {"add_(local|residual)_input_quantizer$": {"enable": false}}}' > "$OUT/gemm_int8.json"
qat() {  # NAME STEPS [extra qat flags...]
  local name=$1 steps=$2; shift 2
  [ -d "$OUT/$name" ] && return 0
  "$CLI" qat --model "$OUT/study/calibrated" --teacher "$MODEL" --train-text "$OUT/text/calib.txt" \
      --eval-text "$OUT/eval512.txt" --steps "$steps" --eval-every 100 --threads "$THREADS" \
      --output "$OUT/$name" "$@" > /dev/null
}
# The recipe (docs/qat-minilm): distillation on the embedding and every layer's hidden states, weights at
# lr 1e-4, and every activation range learned by LSQ (the output's own derivative with respect to the step
# size, on log(amax), at lr 3e-2), which can trade clipping for resolution where the toolkit's Clip cannot.
RECIPE=(--lr 1e-4 --loss cosine+hidden --learn-amax --range-learning lsq --amax-lr 3e-2)
qat qat-full "$FULL_STEPS" "${RECIPE[@]}"
qat qat-gemm "$GEMM_STEPS" "${RECIPE[@]}" --quant-config "$OUT/gemm_int8.json"
"$CLI" embed --model "$MODEL" --quant-config "$HERE/tests/data/minilm/fp32.json" --text-file "$OUT/eval512.txt" \
    --output "$OUT/fp32.safetensors" --threads "$THREADS" > /dev/null
for name in qat-full qat-gemm; do
  qc=(); [ -f "$OUT/$name/quant_config.json" ] && qc=(--quant-config "$OUT/$name/quant_config.json")
  "$CLI" export-onnx --model "$OUT/$name" --task base "${qc[@]}" --output "$OUT/$name.onnx" > /dev/null
  "$CLI" embed --model "$OUT/$name" "${qc[@]}" --export-mode --text-file "$OUT/eval512.txt" \
      --output "$OUT/$name.libtorch.safetensors" --threads "$THREADS" > /dev/null
  echo "$name ONNX Runtime vs LibTorch: $(python3 "$HERE/tests/onnx/check_embeddings.py" "$OUT/$name.onnx" \
      "$OUT/$name.libtorch.safetensors" "$OUT/fp32.safetensors" || true)"
done
echo "reports: $OUT/study/report.md $OUT/qat-full/report.md $OUT/qat-gemm/report.md"
