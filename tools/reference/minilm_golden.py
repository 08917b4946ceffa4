#!/usr/bin/env python3
"""Writes tests/data/minilm/golden.safetensors with the real Python transformers (FP32 reference).

Run by hand when the test data must change (never in CI):
  /usr/bin/python3 -m venv --system-site-packages /opt/refvenv   # Debian's python3-torch (1.13)
  /opt/refvenv/bin/pip install "transformers==4.40.2"
  tools/fetch-minilm.sh /tmp/minilm
  /opt/refvenv/bin/python tools/reference/minilm_golden.py /tmp/minilm tests/data/minilm

For every line of sentences.txt (batched, padded to the longest line, truncated to 128 tokens) it stores
the Python tokenizer's input_ids / attention_mask, FP32 last_hidden_state, pooler_output and the
mean-pooled, L2-normalised sentence embedding (sentence-transformers' recipe for all-MiniLM-L6-v2).
"""
import json
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    with open(out_dir + "/sentences.txt", encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    tok = AutoTokenizer.from_pretrained(model_dir)
    slow = transformers.BertTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir).eval()
    torch.set_num_threads(1)
    enc = tok(lines, padding="longest", truncation=True, max_length=128, return_tensors="pt")
    slow_enc = slow(lines, padding="longest", truncation=True, max_length=128, return_tensors="pt")
    assert torch.equal(enc["input_ids"], slow_enc["input_ids"]), "fast and slow tokenizers disagree"
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    token_type_ids=enc["token_type_ids"])
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(mean, p=2, dim=1)
    save_file({
        "input_ids": enc["input_ids"].contiguous(),
        "attention_mask": enc["attention_mask"].contiguous(),
        "token_type_ids": enc["token_type_ids"].contiguous(),
        "last_hidden_state": out.last_hidden_state.contiguous(),
        "pooler_output": out.pooler_output.contiguous(),
        "sentence_embedding": emb.contiguous(),
    }, out_dir + "/golden.safetensors", metadata={"format": "pt"})
    info = {"transformers": transformers.__version__, "torch": torch.__version__, "lines": len(lines),
            "padded_length": int(enc["input_ids"].shape[1]), "max_length": 128}
    print(json.dumps(info))


if __name__ == "__main__":
    main()
