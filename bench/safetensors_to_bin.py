"""Writes a safetensors file as the pytorch_model.bin Python's torch.save(OrderedDict) would (bench_load).

usage: /usr/bin/python3 safetensors_to_bin.py MODEL.safetensors PYTORCH_MODEL.bin
Needs Debian's python3-torch (torch.save itself); numpy comes with it. F32/F16/F64/I64/I32 tensors only.
"""
import collections
import json
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def main(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    state = collections.OrderedDict()
    for key in sorted(header):
        if key == "__metadata__":
            continue
        entry = header[key]
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        count = (end - begin) // np.dtype(dtype).itemsize
        array = np.frombuffer(data, dtype=dtype, count=count, offset=8 + n + begin).copy()
        state[key] = torch.from_numpy(array).reshape(entry["shape"])
    torch.save(state, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
