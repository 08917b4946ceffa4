#!/usr/bin/env python3
"""Generates a synthetic SQuAD v1.1 dataset whose answers are learnable (templated facts), a WordPiece
vocabulary covering it, and a tiny QDQBERT config, so the whole PTQ/QAT workflow can run end to end
without downloads.

Usage: synthetic_squad.py OUT_DIR [--train N] [--dev N] [--seed S] [--vocab CHECKPOINT/vocab.txt]
Writes OUT_DIR/train.json, OUT_DIR/dev.json and, without --vocab, OUT_DIR/model/{config.json, vocab.txt,
tokenizer_config.json} (a random-init model over a vocabulary made from the data). With --vocab the data is
for that pretrained checkpoint: no model folder is written, and every word must tokenize without [UNK]
under the checkpoint's own WordPiece vocabulary (checked here; the made-up names become word pieces). Each context states 3-5 facts about made-up people and places; each question
asks for one of them (a city, a year, a job, a colour or a country), so the answer must be found by
matching the question's subject in the context.
"""
import argparse
import json
import os
import random

SYL = ["ka", "lo", "mi", "ra", "to", "ve", "shi", "nu", "da", "po", "le", "zu", "bi", "ro", "sa", "fe"]
JOBS = ["teacher", "farmer", "doctor", "pilot", "painter", "baker", "engineer", "singer", "lawyer", "writer",
        "sailor", "nurse", "miner", "tailor", "chemist", "judge"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "pink"]


def words(rng, n, k=2):
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(SYL) for _ in range(k)))
    return sorted(out)


def words_of(datasets):
    """Every lowercased word of the contexts and questions, punctuation split off."""
    tokens = set()
    for d in datasets:
        for art in d["data"]:
            for par in art["paragraphs"]:
                text = par["context"] + " " + " ".join(q["question"] for q in par["qas"])
                for w in text.lower().replace(".", " . ").replace("?", " ? ").split():
                    tokens.add(w)
    return tokens


def check_vocab(path, datasets):
    """Greedy longest-match WordPiece over the checkpoint's vocabulary: no word may become [UNK]."""
    with open(path, encoding="utf-8") as f:
        vocab = {line.rstrip("\n") for line in f}
    unknown = []
    for w in sorted(words_of(datasets)):
        start = 0
        while start < len(w):
            end = len(w)
            while end > start and (w[start:end] if start == 0 else "##" + w[start:end]) not in vocab:
                end -= 1
            if end == start:
                unknown.append(w)
                break
            start = end
    if unknown:
        raise SystemExit(f"{len(unknown)} words of the data are [UNK] under {path}: {unknown[:10]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--dev", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--vocab", help="vocab.txt of a pretrained (uncased) checkpoint to generate data for")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    people = [w.capitalize() for w in words(rng, 60)]
    cities = [w.capitalize() + "ton" for w in words(rng, 40)]
    countries = [w.capitalize() + "ia" for w in words(rng, 30, 3)]
    years = [str(y) for y in range(1900, 2000)]

    facts = [  # (statement, question, answer slot)
        ("{p} was born in {city}.", "Where was {p} born?", "city"),
        ("{p} was born in {year}.", "When was {p} born?", "year"),
        ("{p} works as a {job}.", "What is the job of {p}?", "job"),
        ("The favourite colour of {p} is {colour}.", "What is the favourite colour of {p}?", "colour"),
        ("{p} lives in {country}.", "In which country does {p} live?", "country"),
    ]

    def make(n, split):
        data, qid = [], 0
        paragraphs = []
        while qid < n:
            chosen = rng.sample(people, rng.randint(3, 5))
            sentences, qas = [], []
            for p in chosen:
                st, q, slot = rng.choice(facts)
                value = {"city": rng.choice(cities), "year": rng.choice(years), "job": rng.choice(JOBS),
                         "colour": rng.choice(COLOURS), "country": rng.choice(countries)}[slot]
                sentences.append((st.format(p=p, **{slot: value}), q.format(p=p), value))
            context = ""
            for s, q, value in sentences:
                start = len(context) + s.index(value)
                context += s + " "
                qas.append({"id": f"{split}-{qid}", "question": q,
                            "answers": [{"text": value, "answer_start": start}]})
                qid += 1
            paragraphs.append({"context": context.strip(), "qas": qas})
        data.append({"title": "synthetic", "paragraphs": paragraphs})
        return {"version": "1.1", "data": data}

    os.makedirs(a.out, exist_ok=True)
    train, dev = make(a.train, "train"), make(a.dev, "dev")
    for name, d in (("train.json", train), ("dev.json", dev)):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(d, f)
    if a.vocab:
        check_vocab(a.vocab, (train, dev))
        print(json.dumps({"train_questions": a.train, "dev_questions": a.dev, "vocab": a.vocab}))
        return
    os.makedirs(a.out + "/model", exist_ok=True)
    # Vocabulary: every word lowercased (uncased model), punctuation, digits, special tokens.
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = words_of((train, dev))
    vocab += sorted(tokens) + list(".,?!'-") + [str(i) for i in range(10)] + ["##" + str(i) for i in range(10)]
    with open(a.out + "/model/vocab.txt", "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(a.out + "/model/tokenizer_config.json", "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 128}, f)
    config = {"architectures": ["QDQBertForQuestionAnswering"], "vocab_size": len(vocab), "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
              "max_position_embeddings": 128, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "type_vocab_size": 2, "initializer_range": 0.02,
              "layer_norm_eps": 1e-12, "pad_token_id": 0, "model_type": "qdqbert"}
    with open(a.out + "/model/config.json", "w") as f:
        json.dump(config, f, indent=2)
    print(json.dumps({"train_questions": a.train, "dev_questions": a.dev, "vocab": len(vocab)}))


if __name__ == "__main__":
    main()
