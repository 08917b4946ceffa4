#!/usr/bin/env python3
"""Sentence embeddings from an exported qdqbert encoder in ONNX Runtime, against LibTorch.

Usage: check_embeddings.py MODEL.onnx LIBTORCH.safetensors FP32.safetensors [--atol 1e-3] [--cos-atol 0.002]
LIBTORCH.safetensors: `qdqbert-cli embed --export-mode` of the same model and text (input_ids,
attention_mask, sentence_embedding); FP32.safetensors: `embed` of the FP32 model on the same text.
Runs the graph in ONNX Runtime (CPU, ORT_ENABLE_BASIC), mean-pools and L2-normalises last_hidden_state
over the attention mask as embed does, and checks (1) every embedding element within --atol of LibTorch
and (2) the cosine-to-FP32 figures (mean, p5, min) of ORT and of LibTorch within --cos-atol of each other.
Prints one JSON line; exits 1 when a bound is exceeded.
"""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from check_onnx import load_safetensors  # noqa: E402


def cosine_figures(a, b):
    cos = np.sort(np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1))
    return {"mean": float(cos.mean()), "p5": float(cos[int(np.floor(0.05 * (len(cos) - 1)))]), "min": float(cos[0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("libtorch")
    ap.add_argument("fp32")
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--cos-atol", type=float, default=0.002)
    a = ap.parse_args()
    lt = load_safetensors(a.libtorch)
    fp = load_safetensors(a.fp32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    ids, mask = lt["input_ids"].astype(np.int64), lt["attention_mask"].astype(np.int64)
    feeds = {}
    for i in sess.get_inputs():
        feeds[i.name] = {"input_ids": ids, "attention_mask": mask}.get(i.name, np.zeros_like(ids))
    hidden = sess.run(["last_hidden_state"], feeds)[0].astype(np.float64)
    m = mask[..., None].astype(np.float64)
    mean = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    emb = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    diff = float(np.max(np.abs(emb - lt["sentence_embedding"].astype(np.float64))))
    ort_cos = cosine_figures(emb, fp["sentence_embedding"])
    lt_cos = cosine_figures(lt["sentence_embedding"], fp["sentence_embedding"])
    cos_diff = max(abs(ort_cos[k] - lt_cos[k]) for k in ort_cos)
    ok = diff <= a.atol and cos_diff <= a.cos_atol
    print(json.dumps({"max_abs_diff": diff, "cosine_ort": ort_cos, "cosine_libtorch": lt_cos,
                      "cosine_figure_diff": cos_diff, "sentences": int(ids.shape[0]), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
