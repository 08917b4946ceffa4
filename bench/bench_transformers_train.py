#!/usr/bin/env python3
"""Python transformers' training step (forward + backward + AdamW, BertForQuestionAnswering, seq 128,
dropout on): the FP32 twin of bench_train_step, which bench/compare_train.sh alternates with it.

Usage: bench_transformers_train.py MODEL_DIR|bert-base THREADS [BATCHES=8,32] [ROUNDS=3]
Prints "batch B ms" lines (median step time). For an apples-to-apples comparison use Debian's python3-torch,
the same ATen build as the C++ side:
  /usr/bin/python3 -m venv --system-site-packages /opt/refvenv && /opt/refvenv/bin/pip install transformers==4.40.2
"""
import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForQuestionAnswering

from same_allocator import retain_freed_memory


def main():
    what, threads = sys.argv[1], int(sys.argv[2])
    batches = [int(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "8,32").split(",")]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(threads)
    retain_freed_memory()
    torch.manual_seed(0)
    if what == "bert-base":
        model = BertForQuestionAnswering(BertConfig())
    else:
        model = BertForQuestionAnswering.from_pretrained(what)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    print(f"# transformers {what} QA training step (torch {torch.__version__}, {threads} threads), seq 128")
    for b in batches:
        g = torch.Generator().manual_seed(2)
        ids = torch.randint(1000, 30000, (b, 128), generator=g)
        mask = torch.ones_like(ids)
        start = torch.randint(0, 128, (b,), generator=g)
        end = torch.randint(0, 128, (b,), generator=g)

        def step():
            t0 = time.perf_counter()
            opt.zero_grad()
            out = model(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
            out.loss.backward()
            opt.step()
            return (time.perf_counter() - t0) * 1000

        step()  # warm-up, as bench_train_step
        t = [step() for _ in range(rounds)]
        print(f"batch {b} {statistics.median(t):.1f}", flush=True)


if __name__ == "__main__":
    main()
