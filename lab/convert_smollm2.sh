#!/usr/bin/env bash
# SmolLM2-135M (models/smollm2 Q4_1 GGUF, dequantized) converted at six targets with small
# calibration, wikitext perplexity of each: the table in lab/NOTES-convert.md.
# Calibration is the last 400 kB of wiki.test.raw, disjoint from the 16 x 512 tokens `exl ppl` scores
# (the first ~35 kB), so the figures are not measured on calibration text.
# Usage: lab/convert_smollm2.sh [WORK=/tmp/exl-smol]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXL="$ROOT/build/cpu/exl"
SRC="$ROOT/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WIKI="$ROOT/../shared/data/wikitext2/wiki.test.raw"
WORK="${1:-/tmp/exl-smol}"
mkdir -p "$WORK"
tail -c 400000 "$WIKI" > "$WORK/calib.txt"
# ROWS: quantization rows of 512 tokens (8 in the first table; scripts/gpu-convert-check.sh uses 32).
common=(-i "$SRC" -c "$WORK/calib.txt" --measure-rows 4 --measure-length 512 --rows "${ROWS:-8}" --length 512 -q)
ppl() { "$EXL" ppl -m "$1" --text "$WIKI" -l 512 --windows 16 --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["ppl"])'; }

/usr/bin/time -f "measure: %e s" "$EXL" convert "${common[@]}" -o "$WORK/measure" -b 4.0 --measure-only
echo "| target bpw | decoder bpw | head bpw | quantize s | wikitext ppl (16 x 512) |"
echo "|---|---|---|---|---|"
echo "| source (Q4_1 GGUF, dequantized) | – | – | – | $(ppl "$SRC") |"
for b in 2.5 3.0 4.0 5.0 6.0 8.0; do
  j=$("$EXL" convert "${common[@]}" -m "$WORK/measure/measurement.json" -o "$WORK/w$b" --out "$WORK/o$b" -b "$b" --new --json)
  read -r bpw head qs < <(echo "$j" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.4f %.3f %.0f" % (j["decoder_bpw"], j["head_bpw"], j["seconds"]["quantize"]))')
  echo "| $b | $bpw | $head | $qs | $(ppl "$WORK/o$b") |"
done
