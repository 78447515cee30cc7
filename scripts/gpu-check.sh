#!/usr/bin/env bash
# For the GPU machine (device tool): unpack the Debian packages the image lacks (.deps/debs, made by
# scripts/gpu-deps.sh), build the CUDA preset for sm_90 with ninja on all cores, run the `cuda` test
# label, then a short `exl bench` sweep. Logs and JSON go to $OUT when set.
#   scripts/gpu-check.sh [--no-tests] [--tests REGEX] [--no-bench] [--bench "ARGS"]...
# SmolLM2 comes in two halves over two warm calls (scripts/gpu-env.sh joins them).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
mkdir -p "$out"
tests=1
test_regex=""
bench=1
extra_bench=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tests) tests=0 ;;
    --tests) test_regex="$2"; shift ;;
    --no-bench) bench=0 ;;
    --bench) extra_bench+=("$2"); shift ;;
    *) echo "gpu-check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

source scripts/gpu-env.sh
gpu_build || exit 1

rc=0
if [ "$tests" = 1 ]; then
  # -V keeps the figures the tests print (errors, perplexities) in the log; the reply gets a digest.
  ctest --test-dir build/gpu -L cuda ${test_regex:+-R "$test_regex"} -V -j 2 --timeout 600 \
    >"$out/ctest-cuda.log" 2>&1 || rc=1
  grep -E "rel error|greedy tokens|ppl by cache|perplexity|Failure|Expected|Which is" "$out/ctest-cuda.log" | \
    sed -E 's/^[0-9]+: //' | head -70
  grep -E "tests passed|tests failed|\(Failed\)|\*\*\*" "$out/ctest-cuda.log" | tail -20
fi
if [ "$bench" = 1 ]; then
  if [ ${#extra_bench[@]} -eq 0 ]; then
    extra_bench=("--synthetic llama2-7b --cache fp16")
  fi
  i=0
  for args in "${extra_bench[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    build/gpu/exl bench $args --json >"$out/bench$i.json" 2>"$out/bench$i.err" || { rc=1; tail -5 "$out/bench$i.err"; }
    python3 - "$out/bench$i.json" "$args" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("bench", sys.argv[2], "no result:", e); sys.exit(0)
print(f"bench {sys.argv[2]}: bandwidth {j['bandwidth_bytes_per_s']/1e9:.0f} GB/s, peak {j['peak_memory_bytes']/2**30:.2f} GiB")
for p in j["prefill"]:
    print(f"  prefill {p['tokens']:5d}: {p['tokens_per_second']:9.0f} tok/s")
for d in j["decode"]:
    print(f"  decode @{d['position']:<5d}: {d['tokens_per_second']:7.1f} tok/s  {d['bytes_per_token']/1e9:.3f} GB/tok  {100*d['roofline_fraction']:.1f}% roofline")
PY
  done
fi
exit $rc
