#!/usr/bin/env python3
"""HF tokenizers (Rust, one thread) on the lines bench_tokenizer --compare tokenized: the same checkpoint's
tokenizer.json, no special tokens, no truncation or padding, encode_batch with TOKENIZERS_PARALLELISM=false
(sequential in Rust, no per-line Python call). Prints the median of ROUNDS passes and checks that every
line's ids equal qdqbert's (IDS_FILE); exits 1 on the first difference, naming the line.

Usage: tokenizer_hf.py MODEL_DIR TEXT_FILE IDS_FILE [ROUNDS]"""
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before the import: one thread
from tokenizers import Tokenizer  # noqa: E402


def main():
    model, text_file, ids_file = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    with open(text_file, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        enc = tok.encode_batch(lines, add_special_tokens=False)
        times.append(time.perf_counter() - t0)
    times.sort()
    with open(ids_file) as f:
        ours = f.read().split("\n")
    for i, (line, e) in enumerate(zip(lines, enc)):
        want = " ".join(str(x) for x in e.ids)
        if i >= len(ours) or ours[i] != want:
            print(f"tokenizer_hf: ids differ on line {i + 1}: {line[:80]!r}", file=sys.stderr)
            sys.exit(1)
    tokens = sum(len(e.ids) for e in enc)
    print(f"hf {len(lines)} lines {tokens} tokens median {times[len(times) // 2]:.4f} s identical ids")


if __name__ == "__main__":
    main()
