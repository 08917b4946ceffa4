#!/usr/bin/env bash
# Training steps: our FP32 step against Python transformers' FP32 step, and our QAT step against our FP32
# step, on a shared 2-core VM whose speed drifts between runs: our FP32 step, transformers' step and our QAT
# step alternate REPEATS times, each process holding one model as a training run does, each reporting
# per-batch medians; this prints the median of those medians and the ratios.
# usage: bench/compare_train.sh MODEL_DIR|bert-base BENCH_TRAIN_STEP_BINARY PYTHON_WITH_TRANSFORMERS [THREADS] [REPEATS] [BATCHES]
set -euo pipefail
MODEL=${1:?usage: compare_train.sh MODEL_DIR|bert-base BENCH_TRAIN_STEP PYTHON [THREADS] [REPEATS] [BATCHES]}
BENCH=${2:?bench_train_step binary}
PY=${3:?python with transformers}
THREADS=${4:-2}
REPEATS=${5:-3}
BATCHES=${6:-8,32}
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for ((i = 1; i <= REPEATS; i++)); do
  "$BENCH" "$MODEL" "$THREADS" "$BATCHES" 3 fp32 | awk '$1 == "batch" { print "fp32", $2, $3 }' >> "$LOG"
  "$PY" "$HERE/bench_transformers_train.py" "$MODEL" "$THREADS" "$BATCHES" | awk '$1 == "batch" { print "hf", $2, $3 }' >> "$LOG"
  "$BENCH" "$MODEL" "$THREADS" "$BATCHES" 3 qat | awk '$1 == "batch" { print "qat", $2, $4 }' >> "$LOG"
  echo "compare_train: round $i/$REPEATS done" >&2
done
python3 - "$LOG" "$REPEATS" "$THREADS" "$MODEL" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{sys.argv[4]}: QA training step (fwd + bwd + AdamW), seq 128, {sys.argv[3]} threads, median of {sys.argv[2]} alternating runs (ms)")
print(f"{'batch':<6} {'transformers':>12} {'ours FP32':>10} {'FP32/hf':>8} {'ours QAT':>9} {'QAT/FP32':>9}")
for b in sorted({int(r[1]) for r in rows}):
    hf = statistics.median(float(r[2]) for r in rows if r[0] == "hf" and int(r[1]) == b)
    fp = statistics.median(float(r[2]) for r in rows if r[0] == "fp32" and int(r[1]) == b)
    q = statistics.median(float(r[2]) for r in rows if r[0] == "qat" and int(r[1]) == b)
    print(f"{b:<6} {hf:>12.1f} {fp:>10.1f} {fp / hf:>7.2f}x {q:>9.1f} {q / fp:>8.2f}x")
PY
