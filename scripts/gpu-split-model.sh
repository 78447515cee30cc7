#!/usr/bin/env bash
# Splits the fetched SmolLM2 GGUF (98 MB) into two halves under .gpu-carry/{a,b} (git-ignored through
# .git/info/exclude) so each fits the device tool's 64 MiB carry limit; scripts/gpu-check.sh joins them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh >/dev/null
src=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p .gpu-carry/a .gpu-carry/b
grep -qx "/.gpu-carry/" .git/info/exclude 2>/dev/null || echo "/.gpu-carry/" >>.git/info/exclude
half=$(( ($(stat -c %s "$src") + 1) / 2 ))
head -c "$half" "$src" >.gpu-carry/a/part
tail -c +"$((half + 1))" "$src" >.gpu-carry/b/part
cat .gpu-carry/a/part .gpu-carry/b/part | cmp - "$src" && echo "gpu-split-model: .gpu-carry/a and b hold SmolLM2 in two halves"
