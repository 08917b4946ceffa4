#!/usr/bin/env bash
# The paper's workflow on synthetic SQuAD, end to end:
#   FP32 fine-tune from random init -> PTQ with each calibrator -> QAT -> EM/F1 table (Markdown).
# usage: run_workflow.sh WORKDIR [SQUAD_QA_BINARY] [--reduced]
# --reduced is the CI version (< 3 minutes): fewer questions and epochs, max calibration only, and it
# asserts that the FP32 model learns (F1 well above chance) and that max PTQ stays within 5 F1 of FP32.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:?usage: run_workflow.sh WORKDIR [SQUAD_QA] [--reduced]}
BIN=${2:-$HERE/../../build/examples/squad_qa}
MODE=${3:-full}
if [ "$MODE" = "--reduced" ]; then
  TRAIN=1200; DEV=150; EPOCHS=4; CALIBS="max"; QAT_EPOCHS=0.5
else
  TRAIN=4000; DEV=400; EPOCHS=8; CALIBS="max percentile mse entropy"; QAT_EPOCHS=1
fi
THREADS=${QDQBERT_THREADS:-2}
rm -rf "$W" && mkdir -p "$W"
python3 "$HERE/synthetic_squad.py" "$W/data" --train "$TRAIN" --dev "$DEV" > /dev/null
COMMON=(--train-file "$W/data/train.json" --predict-file "$W/data/dev.json" --max-seq-length 64 --doc-stride 32
        --per-device-train-batch-size 32 --threads "$THREADS" --seed 7)
echo "== FP32 fine-tune from random init"
"$BIN" --model "$W/data/model" --init-from-config --output-dir "$W/fp32" --do-train --do-eval --quant-disable \
  --learning-rate 1e-3 --num-train-epochs "$EPOCHS" --warmup-ratio 0.1 "${COMMON[@]}" | grep -E "^eval"
for c in $CALIBS; do
  echo "== PTQ, calibrator $c"
  "$BIN" --model "$W/fp32" --output-dir "$W/ptq_$c" --do-calib --do-eval --calibrator "$c" --percentile 99.99 \
    --num-calib-batch 4 "${COMMON[@]}" | grep -E "^(eval|calibrated)"
done
echo "== QAT from the max-calibrated model"
"$BIN" --model "$W/ptq_max" --output-dir "$W/qat" --do-train --do-eval --learning-rate 1e-4 \
  --num-train-epochs "$QAT_EPOCHS" "${COMMON[@]}" | grep -E "^eval"
python3 - "$W" "$MODE" "$CALIBS" <<'PY'
import json, sys
w, mode, calibs = sys.argv[1], sys.argv[2], sys.argv[3].split()
def res(d):
    return json.load(open(f"{w}/{d}/eval_results.json"))
rows = [("FP32 (fine-tuned from random init)", res("fp32"))]
rows += [(f"PTQ int8, {c} calibration", res(f"ptq_{c}")) for c in calibs]
rows += [("QAT int8 (from max PTQ)", res("qat"))]
lines = ["| model | EM | F1 |", "|---|---|---|"]
lines += [f"| {n} | {r['exact_match']:.2f} | {r['f1']:.2f} |" for n, r in rows]
table = "\n".join(lines)
open(f"{w}/results.md", "w").write(table + "\n")
print(table)
if mode == "--reduced":
    fp32, ptq = res("fp32")["f1"], res("ptq_max")["f1"]
    assert fp32 >= 25.0, f"FP32 model did not learn: F1 {fp32:.2f} (chance is a few points)"
    assert abs(ptq - fp32) <= 5.0, f"max PTQ F1 {ptq:.2f} is more than 5 points from FP32 {fp32:.2f}"
    print(f"reduced workflow OK: FP32 F1 {fp32:.2f}, max PTQ F1 {ptq:.2f}")
PY
