#!/usr/bin/env python3
"""Python transformers FP32 latency of a BERT checkpoint at seq 128, batch 1/8/32 (the shapes bench_minilm uses;
bench/compare_minilm.sh alternates the two and takes medians).

Usage: bench_transformers.py MODEL_DIR THREADS  (needs transformers + torch; for an apples-to-apples
comparison use Debian's python3-torch, the same ATen build as the C++ side:
  /usr/bin/python3 -m venv --system-site-packages /opt/refvenv && /opt/refvenv/bin/pip install transformers==4.40.2)
"""
import sys
import time

import torch
from transformers import BertModel

from same_allocator import retain_freed_memory


def main():
    model_dir, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    retain_freed_memory()
    model = BertModel.from_pretrained(model_dir).eval()
    g = torch.Generator().manual_seed(0)
    print(f"transformers FP32 (torch {torch.__version__}, {threads} threads), seq 128")
    for b in (1, 8, 32):
        ids = torch.randint(1000, 30000, (b, 128), generator=g)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
            t = []
            for _ in range({1: 21, 8: 9, 32: 5}[b]):  # the round counts bench_minilm uses
                t0 = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                t.append((time.perf_counter() - t0) * 1000)
        t.sort()
        print(f"batch {b:<3} transformers {t[len(t) // 2]:.1f} ms")


if __name__ == "__main__":
    main()
