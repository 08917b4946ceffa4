#!/usr/bin/env python3
"""How much embedding error an evaluation set's recall@k tolerates, and how the measured error compares.

Usage: recall_sensitivity.py FP32.safetensors QUANT.safetensors [--k 10] [--seed 0]
       recall_sensitivity.py --self-test
FP32/QUANT.safetensors: `qdqbert-cli embed --output` of the FP32 and of the quantized model on the same text
(their sentence_embedding tensors are used). Prints a Markdown table and one JSON line:
- the measured error: cosine mean to FP32, recall@k (each sentence's k nearest neighbours by FP32 vs by the
  quantized embeddings, itself excluded) and top-1 unchanged, as `compare_embeddings` reports them;
- the same error scaled down until the cosine mean reaches 0.995 / 0.998 / 0.999: the recall that the
  measured kind of error would give at that cosine;
- isotropic Gaussian noise with those cosine means (seeded): the recall of error spread evenly over all
  directions;
- the gap between each sentence's k-th and (k+1)-th FP32 similarity (median, p10): how near-tied the
  neighbour boundary is;
- alignment: the error's mean squared effect on the similarities to the corpus, d^T M d with M the mean
  of e e^T over the FP32 embeddings, times the dimension, over |d|^2. Isotropic error gives 1; above 1
  the error lies along the directions the sentences occupy, which is where it reorders neighbours.
"""
import argparse
import json
import struct
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests/onnx")
COSINES = (0.995, 0.998, 0.999)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def similarities(e):
    """Cosine similarities between the unit rows of e, each row's own at -inf."""
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    return s


def neighbours(e, k):
    s = similarities(e)
    return np.argpartition(-s, k, axis=1)[:, :k], np.argmax(s, axis=1)


def fidelity(a, b, k, reference=None):
    """cosine mean, recall@k, top-1 unchanged of unit embeddings b against a; `reference` = neighbours(a, k)
    when the caller compares several b against one a."""
    na, ta = reference if reference is not None else neighbours(a, k)
    nb, tb = neighbours(b, k)
    recall = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(na, nb)])
    return float(np.mean(np.sum(a * b, axis=1))), float(recall), float(np.mean(ta == tb))


def scaled_to_cosine(a, d, target):
    """unit(a + t d) with t chosen by bisection so that the cosine mean to a is target."""
    cos = lambda t: np.mean(np.sum(a * unit(a + t * d), axis=1))
    lo, hi = 0.0, 1.0
    while cos(hi) > target:
        hi *= 2
        if hi > 1e6:
            raise ValueError(f"the error never lowers the cosine mean to {target}")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cos(mid) > target else (lo, mid)
    return unit(a + (lo + hi) / 2 * d)


def boundary_gap(a, k):
    s = -np.sort(-similarities(a), axis=1)
    gap = s[:, k - 1] - s[:, k]
    return float(np.median(gap)), float(np.percentile(gap, 10))


def alignment(a, d):
    m = a.T @ a / a.shape[0]
    return float(np.mean(np.sum((d @ m) * d, axis=1)) * a.shape[1] / np.mean(np.sum(d * d, axis=1)))


def analyse(a, b, k, seed):
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"the embeddings differ in shape: {a.shape} vs {b.shape}")
    if a.shape[0] <= k:
        raise ValueError(f"recall@{k} needs more than {k} sentences, got {a.shape[0]}")
    a, b = unit(a.astype(np.float64)), unit(b.astype(np.float64))
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(a.shape)
    ref = neighbours(a, k)
    rows = [("measured", *fidelity(a, b, k, ref))]
    for c in COSINES:
        rows.append((f"measured error, scaled to cosine {c}", *fidelity(a, scaled_to_cosine(a, b - a, c), k, ref)))
    for c in (0.99,) + COSINES:
        rows.append((f"isotropic noise at cosine {c}", *fidelity(a, scaled_to_cosine(a, noise, c), k, ref)))
    median_gap, p10_gap = boundary_gap(a, k)
    return {"k": k, "sentences": a.shape[0], "rows": [dict(zip(("error", "cosine_mean", "recall", "top1"), r)) for r in rows],
            "gap_median": median_gap, "gap_p10": p10_gap, "alignment": alignment(a, b - a),
            "alignment_isotropic": alignment(a, noise)}


def print_report(r):
    k = r["k"]
    print(f"| error | cosine mean | recall@{k} | top-1 unchanged |\n|---|---|---|---|")
    for row in r["rows"]:
        print(f"| {row['error']} | {row['cosine_mean']:.4f} | {row['recall']:.3f} | {row['top1']:.3f} |")
    print(f"\n{r['sentences']} sentences; gap between the {k}th and {k + 1}th FP32 neighbour's similarity: median "
          f"{r['gap_median']:.4f}, p10 {r['gap_p10']:.4f}; alignment of the measured error {r['alignment']:.2f} "
          f"(isotropic {r['alignment_isotropic']:.2f})")
    print(json.dumps(r))


def self_test():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((30, 64)) + 3 * rng.standard_normal(64)  # clustered and anisotropic
    a = unit(centres[rng.integers(0, 30, 300)] + 0.8 * rng.standard_normal((300, 64)))
    cos, recall, top1 = fidelity(a, a, 10)
    assert abs(cos - 1) < 1e-12 and recall == 1 and top1 == 1
    noise = rng.standard_normal(a.shape)
    recalls = []
    for c in (0.999, 0.99, 0.9):
        b = scaled_to_cosine(a, noise, c)
        cos, recall, _ = fidelity(a, b, 10)
        assert abs(cos - c) < 1e-9, (cos, c)
        recalls.append(recall)
    assert recalls[0] > recalls[1] > recalls[2], recalls
    assert 0.8 < alignment(a, noise) < 1.2, alignment(a, noise)
    top = np.linalg.eigh(a.T @ a)[1][:, -1]
    assert alignment(a, np.outer(rng.standard_normal(300), top)) > 3
    r = analyse(a, scaled_to_cosine(a, noise, 0.99), 10, 0)
    assert abs(r["rows"][0]["cosine_mean"] - 0.99) < 1e-6 and r["rows"][0]["recall"] == recalls[1]
    for bad, what in (((a, a[:5]), "shape"), ((a[:5], a[:5]), "needs more")):
        try:
            analyse(*bad, 10, 0)
            raise AssertionError(f"no error for {what}")
        except ValueError as e:
            assert what in str(e), e
    print("recall_sensitivity self-test: ok")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fp32", nargs="?")
    p.add_argument("quantized", nargs="?")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    if args.self_test:
        return self_test()
    if not args.fp32 or not args.quantized:
        p.error("FP32.safetensors and QUANT.safetensors are required")
    from check_onnx import load_safetensors

    def embeddings(path):
        try:
            t = load_safetensors(path)
        except (OSError, ValueError, KeyError, struct.error) as e:
            raise SystemExit(f"recall_sensitivity: {path}: not a readable safetensors file ({e})")
        if "sentence_embedding" not in t:
            raise SystemExit(f"recall_sensitivity: {path} has no sentence_embedding tensor (write it with embed --output)")
        return t["sentence_embedding"]

    try:
        print_report(analyse(embeddings(args.fp32), embeddings(args.quantized), args.k, args.seed))
    except ValueError as e:
        raise SystemExit(f"recall_sensitivity: {e}")


if __name__ == "__main__":
    main()
