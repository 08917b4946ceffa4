#!/usr/bin/env python3
"""ONNX Runtime latency of exported qdqbert graphs (called by bench_model with the folder it wrote).

Usage: bench_onnx.py DIR THREADS — DIR holds qdq.onnx (int8 Q/DQ) and fp32.onnx (same model, no Q/DQ).
Prints median latency (ms) for batch 1 and 8 at seq 128, and the ORT_ENABLE_ALL vs ORT_ENABLE_BASIC
max abs difference of the int8 graph (the saturation issue of non-VNNI CPUs).
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path, threads, level):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = level
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def median_ms(sess, feeds, iters):
    sess.run(None, feeds)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        t.append((time.perf_counter() - t0) * 1000)
    return float(np.median(t))


def main():
    d, threads = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, {threads} threads, seq 128")
    print(f"{'batch':<6} {'ORT int8 QDQ ms':>16} {'ORT fp32 ms':>12} {'ratio':>7}")
    for b in (1, 8, 32) if len(sys.argv) > 3 else (1, 8):
        feeds = {"input_ids": rng.integers(1000, 30000, (b, 128), dtype=np.int64),
                 "attention_mask": np.ones((b, 128), dtype=np.int64),
                 "token_type_ids": np.zeros((b, 128), dtype=np.int64)}
        iters = 10 if b == 1 else 4 if b == 8 else 2
        q = median_ms(session(d + "/qdq.onnx", threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), feeds, iters)
        f = median_ms(session(d + "/fp32.onnx", threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), feeds, iters)
        print(f"{b:<6} {q:>16.1f} {f:>12.1f} {q / f:>6.2f}x")
    feeds = {"input_ids": rng.integers(1000, 30000, (1, 128), dtype=np.int64),
             "attention_mask": np.ones((1, 128), dtype=np.int64), "token_type_ids": np.zeros((1, 128), dtype=np.int64)}
    basic = session(d + "/qdq.onnx", threads, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC).run(None, feeds)
    full = session(d + "/qdq.onnx", threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL).run(None, feeds)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(basic, full))
    scale = max(float(np.max(np.abs(a))) for a in basic)
    print(f"int8 graph, ORT_ENABLE_ALL vs ORT_ENABLE_BASIC: max abs diff {diff:.4g} (output max |x| {scale:.4g})")


if __name__ == "__main__":
    main()
