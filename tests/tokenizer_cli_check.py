#!/usr/bin/env python3
"""ctest: `qdqbert-cli tokenize --requests` over every case of tests/data/tokenizer/cases.jsonl.

Runs the CLI once per vocabulary (the request's `vocab` key is ignored by the CLI, so cases are grouped
by it) and checks each output line against the case's `expected`, as the fixture README's table says.
Usage: tokenizer_cli_check.py QDQBERT_CLI DATA_DIR WORK_DIR
"""
import json
import os
import subprocess
import sys


def expected_offset_mapping(mask, types, offs, offs_pair, add_special):
    non_special = sum(1 for m in mask if m == 0)
    if offs_pair is None or not add_special:
        a_count = min(non_special, len(offs))
    else:
        a_count = sum(1 for m, t in zip(mask, types) if m == 0 and t == 0)
    out, k = [], 0
    for m in mask:
        if m == 1:
            out.append([0, 0])
            continue
        out.append(offs[k] if k < a_count else offs_pair[k - a_count])
        k += 1
    return out


def check(case, out):
    exp, call = case["expected"], case["call"]
    errs = []

    def eq(key, got, want):
        if got != want:
            errs.append(f"{key}: got {json.dumps(got)[:300]} want {json.dumps(want)[:300]}")

    eq("tokens", out.get("tokens"), exp["tokens"])
    if "tokens_pair" in exp:
        eq("tokens_pair", out.get("tokens_pair"), exp["tokens_pair"])
    batch = isinstance(call["text"], list)
    expect_error = "error" in exp or "slow_truncation_error_logged" in exp
    if (not batch and call["truncation"] == "only_second" and call["text_pair"] is None
            and call["max_length"] is not None and len(exp["input_ids"]) > call["max_length"]):
        expect_error = True
    if expect_error:
        if "error" not in out or "input_ids" in out:
            errs.append("expected an error line")
        elif "error" in exp and exp["error"].split(": ", 1)[1] not in out["error"]:
            errs.append(f"error text: {out['error']}")
    else:
        for k in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
            eq(k, out.get(k), exp[k])
        for k in ("overflowing_tokens", "num_truncated_tokens", "decoded", "decoded_skip_special"):
            if k in exp:
                eq(k, out.get(k), exp[k])
        if batch:
            want = [expected_offset_mapping(exp["special_tokens_mask"][i], exp["token_type_ids"][i], exp["offsets"][i],
                                            exp["offsets_pair"][i] if "offsets_pair" in exp else None,
                                            call["add_special_tokens"]) for i in range(len(exp["input_ids"]))]
        else:
            want = expected_offset_mapping(exp["special_tokens_mask"], exp["token_type_ids"], exp["offsets"],
                                           exp.get("offsets_pair"), call["add_special_tokens"])
        eq("offset_mapping", out.get("offset_mapping"), want)
    fw = exp.get("fast_windows")
    if fw is None:
        if "windows" in out:
            errs.append("unexpected windows")
    elif "error" in fw:
        got = out.get("windows", {}).get("error", "")
        if fw["error"].split(": ", 1)[1] not in got:
            errs.append(f"windows error: {got!r}")
    else:
        eq("windows", out.get("windows"), fw)
    return errs


def main():
    cli, data, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(data, "cases.jsonl"), encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    by_vocab = {}
    for c in cases:
        by_vocab.setdefault(c["vocab"], []).append(c)
    failures = checked = 0
    for vocab, group in sorted(by_vocab.items()):
        req = os.path.join(work, f"requests_{vocab}.jsonl")
        res = os.path.join(work, f"answers_{vocab}.jsonl")
        with open(req, "w", encoding="utf-8") as f:
            for c in group:
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        subprocess.run([cli, "tokenize", "--tokenizer", os.path.join(data, vocab), "--requests", req,
                        "--output", res], check=True)
        with open(res, encoding="utf-8") as f:
            answers = [json.loads(line) for line in f]
        if len(answers) != len(group):
            print(f"{vocab}: {len(answers)} answers for {len(group)} requests")
            return 1
        for c, out in zip(group, answers):
            checked += 1
            errs = check(c, out)
            if errs:
                failures += 1
                print(c["id"], "\n  " + "\n  ".join(errs))
    print(f"tokenize CLI: {checked} cases checked, {failures} failed")
    return 1 if failures or checked != len(cases) else 0


if __name__ == "__main__":
    sys.exit(main())
