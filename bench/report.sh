#!/usr/bin/env bash
# Every benchmark in one go, one table of ratios, each measured in this run (baseline and subject in the
# same process or alternating processes, same thread count): fake quant against a copy and torch's op,
# forwards (ours FP32 vs transformers, fake-quant vs FP32, ONNX Runtime int8 vs FP32) on all-MiniLM-L6-v2 and
# bert-base, the training step, distillation QAT and embed in batches of like length vs as they come, checkpoint
# loading, and the tokenizer against HF tokenizers (identical ids checked). The raw outputs stay in OUT_DIR.
# Benchmarks measure; ctest checks behaviour.
# usage: bench/report.sh BUILD_DIR MINILM_DIR PYTHON_WITH_TRANSFORMERS [THREADS] [OUT_DIR]
#   e.g. bench/report.sh build build/minilm /opt/refvenv/bin/python   (about 6 minutes on 2 cores)
set -euo pipefail
BUILD=${1:?usage: bench/report.sh BUILD_DIR MINILM_DIR PYTHON [THREADS] [OUT_DIR]}
MODEL=${2:?all-MiniLM-L6-v2 folder (tools/fetch-minilm.sh DIR)}
PY=${3:?python with transformers and tokenizers}
THREADS=${4:-2}
OUT=${5:-$(mktemp -d /tmp/qdqbert-report.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
mkdir -p "$OUT"
for b in bench/bench_fake_quant bench/bench_minilm bench/bench_model bench/bench_train_step bench/bench_load \
         bench/bench_batching bench_tokenizer; do
  [ -x "$BUILD/$b" ] || { echo "report: $BUILD/$b is not built (ninja -C $BUILD)" >&2; exit 1; }
done
step() { echo "report: $1" >&2; }

step "fake quant kernels (bench_fake_quant, 16M floats, 1 thread)"
"$BUILD/bench/bench_fake_quant" --benchmark_filter='^BM_(Clone|QdqPerTensorPrepared|TorchPerTensor)/16777216' \
  > "$OUT/fake_quant.txt" 2> "$OUT/fake_quant.err"
step "all-MiniLM-L6-v2 forwards: ours FP32 alone, then FP32 / fake-quant interleaved, ONNX Runtime, transformers"
"$BUILD/bench/bench_minilm" "$MODEL" "$THREADS" fp32 > "$OUT/minilm_fp32.txt" 2> "$OUT/minilm_fp32.err"
"$BUILD/bench/bench_minilm" "$MODEL" "$THREADS" "$PY" > "$OUT/minilm.txt" 2> "$OUT/minilm.err"
step "bert-base forwards (bench_model)"
"$BUILD/bench/bench_model" "$THREADS" none > "$OUT/bert_base.txt" 2> "$OUT/bert_base.err"
step "training step, all-MiniLM-L6-v2 batch 8: ours FP32, transformers, ours QAT (one model per process)"
"$BUILD/bench/bench_train_step" "$MODEL" "$THREADS" 8 3 fp32 > "$OUT/train_fp32.txt" 2> "$OUT/train_fp32.err"
"$PY" "$HERE/bench_transformers_train.py" "$MODEL" "$THREADS" 8 > "$OUT/train_hf.txt" 2> "$OUT/train_hf.err"
"$BUILD/bench/bench_train_step" "$MODEL" "$THREADS" 8 3 qat > "$OUT/train_qat.txt" 2> "$OUT/train_qat.err"
step "loading (bench_load)"
"$BUILD/bench/bench_load" "$MODEL" "$THREADS" > "$OUT/load.txt" 2> "$OUT/load.err"
step "tokenizer against HF tokenizers (one thread, fortunes text)"
if [ -d /usr/share/games/fortunes ]; then
  "$ROOT/tools/make-study-text.sh" "$OUT/text" > /dev/null
  cat "$OUT/text/calib.txt" "$OUT/text/eval.txt" > "$OUT/text/all.txt"
  "$BUILD/bench_tokenizer" --compare "$MODEL" "$OUT/text/all.txt" "$OUT/tokenizer_ids.txt" 5 > "$OUT/tokenizer.txt"
  "$PY" "$HERE/tokenizer_hf.py" "$MODEL" "$OUT/text/all.txt" "$OUT/tokenizer_ids.txt" 5 >> "$OUT/tokenizer.txt"
  step "distillation QAT (one epoch) and embed of 1024 fortunes: batches as they come vs of like length"
  "$BUILD/bench/bench_batching" "$MODEL" "$OUT/text/calib.txt" "$THREADS" 1024 2 > "$OUT/batching.txt" \
    2> "$OUT/batching.err"
else
  echo "(tokenizer skipped: apt-get install fortunes)" > "$OUT/tokenizer.txt"
  echo "(batching skipped: apt-get install fortunes)" > "$OUT/batching.txt"
fi

python3 - "$OUT" "$THREADS" <<'PY'
import os, re, sys
out, threads = sys.argv[1], sys.argv[2]
rows = []
def row(what, detail, ratio):
    rows.append((what, detail, ratio))
def lines(name):
    with open(os.path.join(out, name)) as f:
        return f.read().splitlines()

# fake quant: Google Benchmark's console lines, real time per iteration in us
t = {}
for l in lines("fake_quant.txt"):
    l = re.sub(r"\x1b\[[0-9;]*m", "", l)  # its console reporter colours even when asked not to
    m = re.match(r"(BM_\w+)/16777216/real_time\s+([\d.]+) us", l)
    if m: t[m.group(1)] = float(m.group(2))
if {"BM_Clone", "BM_QdqPerTensorPrepared", "BM_TorchPerTensor"} <= t.keys():
    fq = t["BM_QdqPerTensorPrepared"]
    row("fake quant, 16M floats, 1 thread: per tensor / `x.clone()`", f"{fq / 1e3:.1f} vs {t['BM_Clone'] / 1e3:.1f} ms", fq / t["BM_Clone"])
    row("fake quant / `torch::fake_quantize_per_tensor_affine`", f"{fq / 1e3:.1f} vs {t['BM_TorchPerTensor'] / 1e3:.1f} ms", fq / t["BM_TorchPerTensor"])

# MiniLM: our table, then ORT's, then transformers' lines
alone = {int(l.split()[0]): float(l.split()[1]) for l in lines("minilm_fp32.txt") if l[:1].isdigit()}
ours, ort, hf, section = {}, {}, {}, None
for l in lines("minilm.txt"):
    if l.startswith("all-MiniLM"): section = "ours"
    elif l.startswith("onnxruntime"): section = "ort"
    f = l.split()
    if l.startswith("batch") and "transformers" in l: hf[int(f[1])] = float(f[3])
    elif f and f[0].isdigit() and section == "ours": ours[int(f[0])] = (float(f[1]), float(f[2]))
    elif f and f[0].isdigit() and section == "ort": ort[int(f[0])] = (float(f[1]), float(f[2]))
for b in sorted(ours):
    fp, fq = ours[b]
    if b in hf and b in alone:
        row(f"MiniLM forward b{b}: ours FP32 / transformers FP32", f"{alone[b]:.1f} vs {hf[b]:.1f} ms", alone[b] / hf[b])
    row(f"MiniLM forward b{b}: fake-quant / FP32 (ours)", f"{fq:.1f} vs {fp:.1f} ms", fq / fp)
    if b in ort: row(f"MiniLM forward b{b}: ORT int8 Q/DQ / ORT FP32", f"{ort[b][0]:.1f} vs {ort[b][1]:.1f} ms", ort[b][0] / ort[b][1])
for l in lines("bert_base.txt"):
    f = l.split()
    if f and f[0].isdigit():
        row(f"bert-base forward b{f[0]}: fake-quant / FP32", f"{float(f[1]):.1f} vs {float(f[2]):.1f} ms", float(f[1]) / float(f[2]))

# training step
tf = [l.split() for l in lines("train_fp32.txt") if l.startswith("batch")]
tq = [l.split() for l in lines("train_qat.txt") if l.startswith("batch")]
th = [l.split() for l in lines("train_hf.txt") if l.startswith("batch")]
if tf and tq and th:
    fp, qat, hfm = float(tf[0][2]), float(tq[0][3]), float(th[0][2])
    row("MiniLM train step b8: ours FP32 / transformers FP32", f"{fp:.0f} vs {hfm:.0f} ms", fp / hfm)
    row("MiniLM train step b8: QAT / FP32 (ours)", f"{qat:.0f} vs {fp:.0f} ms", qat / fp)

# loading: "<name> file_mib load_ms peak_mib ratio"
for l in lines("load.txt"):
    m = re.match(r"(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x", l)
    if m: row(f"load {m.group(1).strip()}: peak RSS added / file", f"{float(m.group(4)):.1f} of {float(m.group(2)):.1f} MiB, {float(m.group(3)):.0f} ms", float(m.group(5)))

# tokenizer
tq = [l.split() for l in lines("tokenizer.txt") if l.startswith("qdqbert")]
th = [l.split() for l in lines("tokenizer.txt") if l.startswith("hf")]
if tq and th and "identical" in " ".join(th[0]):
    a, b = float(tq[0][tq[0].index("median") + 1]), float(th[0][th[0].index("median") + 1])
    row(f"tokenizer, {tq[0][1]} lines, 1 thread: qdqbert / HF tokenizers (ids identical)", f"{a * 1000:.0f} vs {b * 1000:.0f} ms", a / b)

# batching: "| shuffled (as they come) | padded/real | s/step |", "| length (...) | ... |" for qat, then
# "| embed input (...) | padded/real | s |", "| embed length (...) | ... |" for embed
def table(*kinds):
    t = {}
    for l in lines("batching.txt"):
        cells = l.split("|")
        for k in kinds:
            if l.startswith("| " + k + " "):
                t[k] = [float(x) for x in cells[2:4]]
    return t if len(t) == len(kinds) else None
qb = table("shuffled", "length")
if qb:
    (ps, ts), (pl, tl) = qb["shuffled"], qb["length"]
    row("MiniLM distillation QAT b32, 1024 fortunes: s/step, batches of like length / as they come",
        f"{tl:.3f} vs {ts:.3f} s (padded / real tokens {pl:.2f} vs {ps:.2f})", tl / ts)
eb = table("embed input", "embed length")
if eb:
    (pi, ti), (pl, tl) = eb["embed input"], eb["embed length"]
    row("MiniLM embed (fake quant) b32, 1024 fortunes: s, batches of like length / of consecutive lines",
        f"{tl:.2f} vs {ti:.2f} s (padded / real tokens {pl:.2f} vs {pi:.2f})", tl / ti)

print(f"qdqbert benchmark report ({threads} threads; ratio < 1: the first is faster or smaller)\n")
print("| measurement | times | ratio |")
print("|---|---|---|")
for what, detail, ratio in rows:
    print(f"| {what} | {detail} | {ratio:.2f}x |")
print(f"\nraw outputs: {out}")
PY
