#!/usr/bin/env bash
# Replays every corpus of tests/fuzz/corpus/<target> through its target, then fuzzes each target for
# SECONDS_EACH seconds (default 20) from that corpus, under ASan + UBSan. Any crash, sanitizer report,
# leak or slow input (-timeout) fails the run; libFuzzer writes the input to $BUILD/artifacts/.
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_EACH]
set -euo pipefail
BUILD=$1
SECONDS_EACH=${2:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$BUILD/artifacts" "$BUILD/new-corpus"
for corpus in "$HERE"/corpus/*/; do
  t=$(basename "$corpus")
  bin="$BUILD/${t}_fuzz"
  echo "== $t: replay $(ls "$corpus" | wc -l) inputs"
  "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$BUILD/artifacts/$t-" "$corpus"
  if [ "$SECONDS_EACH" -gt 0 ]; then
    echo "== $t: fuzz for $SECONDS_EACH s"
    mkdir -p "$BUILD/new-corpus/$t"
    # New inputs go to a scratch corpus (first dir), so the committed seeds are never modified.
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$BUILD/artifacts/$t-" "$BUILD/new-corpus/$t" "$corpus" 2>&1 | tail -n 12
    # libFuzzer's exit status is lost in the pipe: a finding leaves an artifact.
    if compgen -G "$BUILD/artifacts/$t-*" >/dev/null; then
      echo "fuzzing $t found a failing input: $(ls "$BUILD/artifacts/$t-"*)" >&2
      exit 1
    fi
  fi
done
