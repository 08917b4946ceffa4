#!/usr/bin/env bash
# Our FP32 / fake-quant forward against Python transformers FP32 on all-MiniLM-L6-v2, robust to the
# run-to-run drift of a shared 2-core VM (+-20% between identical runs): our FP32 model alone (one model
# per process, as on the Python side), transformers, and our FP32 and fake-quant models interleaved in
# one process alternate REPEATS times, each reporting per-batch medians; this prints the median of those
# medians: FP32 / transformers from the first two, fake-quant / FP32 from the third.
# usage: bench/compare_minilm.sh MODEL_DIR BENCH_MINILM_BINARY PYTHON_WITH_TRANSFORMERS [THREADS] [REPEATS]
set -euo pipefail
MODEL=${1:?usage: compare_minilm.sh MODEL_DIR BENCH_MINILM PYTHON [THREADS] [REPEATS]}
BENCH=${2:?bench_minilm binary}
PY=${3:?python with transformers}
THREADS=${4:-2}
REPEATS=${5:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for ((i = 1; i <= REPEATS; i++)); do
  "$BENCH" "$MODEL" "$THREADS" fp32 | awk '$1 ~ /^[0-9]+$/ { print "alone", $1, $2 }' >> "$LOG"
  "$PY" "$HERE/bench_transformers.py" "$MODEL" "$THREADS" | awk '$1 == "batch" { print "hf", $2, $4 }' >> "$LOG"
  "$BENCH" "$MODEL" "$THREADS" none | awk '$1 ~ /^[0-9]+$/ { print "ours", $1, $2, $3 }' >> "$LOG"
  echo "compare_minilm: round $i/$REPEATS done" >&2
done
python3 - "$LOG" "$REPEATS" "$THREADS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"all-MiniLM-L6-v2, seq 128, {sys.argv[3]} threads, median of {sys.argv[2]} alternating runs (ms)")
print(f"{'batch':<6} {'transformers':>12} {'ours FP32':>10} {'FP32/hf':>8} {'FP32 (pair)':>12} {'fake-quant':>11} {'fq/FP32':>8}")
for b in sorted({int(r[1]) for r in rows}):
    med = lambda kind, col: statistics.median(float(r[col]) for r in rows if r[0] == kind and int(r[1]) == b)
    hf, alone, fp, fq = med("hf", 2), med("alone", 2), med("ours", 2), med("ours", 3)
    print(f"{b:<6} {hf:>12.1f} {alone:>10.1f} {alone / hf:>7.2f}x {fp:>12.1f} {fq:>11.1f} {fq / fp:>7.2f}x")
PY
