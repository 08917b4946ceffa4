#!/usr/bin/env bash
# Extracts real English prose for the PTQ study from Debian's `fortunes` package (installed by
# .ci/run; never copied into the repository): one fortune per line, whitespace collapsed, lines of
# 8..60 words, then split into disjoint calibration and evaluation files (alternating fortunes).
# usage: tools/make-study-text.sh OUT_DIR  -> OUT_DIR/calib.txt, OUT_DIR/eval.txt
set -euo pipefail
OUT=${1:?usage: tools/make-study-text.sh OUT_DIR}
SRC=/usr/share/games/fortunes
[ -d "$SRC" ] || { echo "make-study-text: $SRC missing (apt-get install fortunes)" >&2; exit 1; }
mkdir -p "$OUT"
files=$(find "$SRC" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
# shellcheck disable=SC2086
awk 'BEGIN { RS = "\n%\n" }
     { gsub(/[ \t\r\n]+/, " "); sub(/^ /, ""); sub(/ $/, "");
       n = split($0, w, " "); if (n >= 8 && n <= 60) print }' $files |
  iconv -f utf-8 -t utf-8 -c | awk 'NR % 2 == 1 { print > "'"$OUT"'/calib.txt" } NR % 2 == 0 { print > "'"$OUT"'/eval.txt" }'
echo "make-study-text: $(wc -l < "$OUT/calib.txt") calibration and $(wc -l < "$OUT/eval.txt") evaluation lines in $OUT"
