#!/usr/bin/env python3
"""Runs an exported qdqbert ONNX graph in two independent engines and compares with LibTorch.

Usage: check_onnx.py DIR [--atol A] [--all-atol B] [--expect-q N]
DIR holds model.onnx, inputs.safetensors and expected.safetensors (the LibTorch model's outputs in
full-range torch-native fake-quant mode). Engines: ONNX Runtime (CPU) with ORT_ENABLE_BASIC (exactness
check), onnx.reference.ReferenceEvaluator (pure ONNX semantics), and ONNX Runtime with ORT_ENABLE_ALL
(fused int8 kernels; on CPUs without VNNI these can saturate, so it gets its own measured bound).
Prints one JSON line with every max abs diff; exits 1 when a bound is exceeded.
"""
import argparse
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnx.reference import ReferenceEvaluator

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I8": np.int8}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def run_ort(path, feeds, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def max_diff(got, expected):
    return max(float(np.max(np.abs(got[k].astype(np.float64) - expected[k].astype(np.float64)))) for k in expected)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--all-atol", type=float, default=None)
    ap.add_argument("--expect-q", type=int, default=None)
    a = ap.parse_args()
    path = a.dir + "/model.onnx"
    model = onnx.load(path)
    onnx.checker.check_model(model)
    feeds = load_safetensors(a.dir + "/inputs.safetensors")
    expected = load_safetensors(a.dir + "/expected.safetensors")
    result = {"quantize_linear": sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear"),
              "dequantize_linear": sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear"),
              "outputs": sorted(expected), "onnxruntime": ort.__version__, "onnx": onnx.__version__}
    basic = run_ort(path, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    result["ort_basic_max_abs_diff"] = max_diff(basic, expected)
    # Recent onnx releases implement QuantizeLinear/DequantizeLinear in the reference evaluator from
    # opset 19 on only; the version converter rewrites the graph to opset 19 with the same semantics.
    ref_model = model
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 19:
        ref_model = version_converter.convert_version(model, 19)
    result["reference_evaluator_opset"] = max(o.version for o in ref_model.opset_import if o.domain in ("", "ai.onnx"))
    ref = ReferenceEvaluator(ref_model)
    names = [o.name for o in model.graph.output]
    ref_out = dict(zip(names, ref.run(None, feeds)))
    result["reference_evaluator_max_abs_diff"] = max_diff(ref_out, expected)
    full = run_ort(path, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    result["ort_all_max_abs_diff"] = max_diff(full, expected)
    ok = result["ort_basic_max_abs_diff"] <= a.atol and result["reference_evaluator_max_abs_diff"] <= a.atol
    if a.all_atol is not None:
        ok = ok and result["ort_all_max_abs_diff"] <= a.all_atol
    if a.expect_q is not None:
        ok = ok and result["quantize_linear"] == a.expect_q
    result["ok"] = ok
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
