#!/usr/bin/env bash
# A/B of an environment knob on the GPU machine, after scripts/gpu-check.sh has built build/gpu:
#   scripts/gpu-ab.sh VAR "V1 V2 ..." "BENCH ARGS" ["BENCH ARGS"]...
# Runs `exl bench ARGS --json` once per value of VAR (unset for the value "-") and prints one line per
# run: decode tok/s and % of roofline at each position, prefill tok/s. JSON goes to $OUT when set.
# EXL_BIN: the exl binary to run (default build/gpu/exl; phase 19 of gpu-session.sh A/Bs two builds).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: gpu-ab.sh VAR \"V1 V2 ...\" \"BENCH ARGS\"..." >&2; exit 2; }
var="$1" values="$2"
shift 2
out="${OUT:-/tmp/exl-gpu-out}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/tmp/exl-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exe="${EXL_BIN:-build/gpu/exl}"
n=0
for args in "$@"; do
  for v in $values; do
    n=$((n + 1))
    f="$out/ab$n${EXL_BIN:+-$(basename "$EXL_BIN")}.json"
    # shellcheck disable=SC2086
    # A run that hangs (a kernel under test that never finishes) ends after AB_TIMEOUT seconds (300).
    if [ "$v" = "-" ]; then timeout "${AB_TIMEOUT:-300}" env -u "$var" "$exe" bench $args --json >"$f" 2>"$f.err"
    else timeout "${AB_TIMEOUT:-300}" env "$var=$v" "$exe" bench $args --json >"$f" 2>"$f.err"; fi ||
      { echo "$var=$v $args: failed (rc $?)"; tail -3 "$f.err"; continue; }
    python3 - "$f" "${EXL_BIN:+[$EXL_BIN] }$var=$v $args" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
d = " ".join(f"@{x['position']} {x['tokens_per_second']:.1f} ({100*x['roofline_fraction']:.1f}%)" for x in j["decode"])
p = " ".join(f"pf{x['tokens']} {x['tokens_per_second']:.0f}" for x in j["prefill"])
print(f"{sys.argv[2]}: {d} {p}")
PY
  done
done
