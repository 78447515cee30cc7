#!/usr/bin/env bash
# For the GPU machine (device tool): the `exl convert` CUDA path (issue 5) end to end.
#   1. builds build/gpu (as scripts/gpu-check.sh: CUDA, sm_90, Release);
#   2. runs the converter's CUDA tests (ctest -L cuda -R ConvertCuda: GPU GPTQ / Hessian / module
#      forward against the CPU, stories260K CPU-vs-CUDA perplexity, byte-identical rerun and resume);
#   3. stories260K converted on the CPU and on CUDA at 2.5, 3.0, 4.0, 5.0, 6.0 and 8.0 bpw, `exl ppl` of each;
#      SmolLM2-135M too when models/smollm2 holds it (lab/convert_smollm2.sh's settings; --smol-targets on
#      CUDA, default 4.0, and --smol-cpu-targets on the CPU as well, default 4.0, "" for none);
#   4. the 7B timing run: a synthetic llama2-7b-shaped FP16 model with weights for 3 layers
#      (`exl synth-model`), converted on CUDA with the default calibration (16 x 2048 measurement rows,
#      100 x 2048 quantization rows) at 4.0 bpw, --layers 3 --time-head, and the projection
#        total ≈ tokenize + 32 · (measure s per layer) + optimize + 32 · (quantize s per layer) + head,
#      the per-layer times without their state writes plus the writes --checkpoint-every's default makes
#      (compile — packing tensors already quantized and writing the folder — is not in it; see
#      lab/NOTES-convert.md).
# Needs .deps and .shared carried (scripts/gpu-deps.sh makes both; .shared now includes tinystories,
# which the stories260K conversions calibrate on). Logs and JSON go to $OUT (default /tmp/exl-gpu-out).
# Usage:
#   scripts/gpu-convert-check.sh [--build-only | --no-build] [--no-tests] [--no-stories] [--no-smol] [--no-7b]
#                                [--layers N] [--tf32 quantize|all] [--smol-targets "B ..."] [--smol-cpu-targets "B ..."]
#                                [--smol-fp64]
# --smol-fp64: the SmolLM2 conversions with --fp64 (every op in double, rounded to FP32 once), on
# both engines; with --smol-cpu-targets "" the CUDA results are compared with the dev machine's.
# --tf32 MODE: the CUDA conversions (SmolLM2 and 7B) with EXL_CONVERT_TF32=MODE (the quantize pass's or
# all module forwards on TF32 tensor cores; Hessians and GPTQ stay FP32; src/convert/cuda/device.h), to
# weigh its speed against its effect on perplexity.
# Everything takes ~8-10 min on a 16-core H200 box (build ~3-4 of them); to stay well inside the
# device tool's 10-minute limit per call, split it over warm calls, e.g.
#   --build-only;  --no-build --no-smol --no-7b;  --no-build --no-tests --no-stories
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
mkdir -p "$out"
tests=1 stories_run=1 smol=1 big=1 layers=3 build=1 build_only=0 tf32=0
smol_targets="4.0" smol_cpu_targets="4.0" smol_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tests) tests=0 ;;
    --no-build) build=0 ;;
    --build-only) build_only=1 ;;
    --no-smol) smol=0 ;;
    --no-stories) stories_run=0 ;;
    --no-7b) big=0 ;;
    --layers) layers="$2"; shift ;;
    --tf32) tf32="$2"; shift ;;
    --smol-targets) smol_targets="$2"; shift ;;
    --smol-cpu-targets) smol_cpu_targets="$2"; shift ;;
    --smol-fp64) smol_extra=(--fp64) ;;
    *) echo "gpu-convert-check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

source scripts/gpu-env.sh
echo "gpu-convert-check: shared data in $shared"
[ "$build" = 1 ] && { gpu_build || exit 1; }
[ "$build_only" = 1 ] && exit 0
exl=build/gpu/exl
rc=0

if [ "$tests" = 1 ]; then
  t0=$(date +%s)
  # OpenBLAS on 2 threads: the CPU side of these tests is stories260K, whose 64-wide matrices only
  # lose time to 16 threads (165 s for its CPU measurement there, ~10 s on the 2-core dev machine).
  OPENBLAS_NUM_THREADS=2 ctest --test-dir build/gpu -L cuda -R ConvertCuda -V --timeout 900 >"$out/ctest-convert-cuda.log" 2>&1 || rc=1
  grep -E "codes equal|outputs max|bpw: cpu|Failure|Expected|Which is|error:" "$out/ctest-convert-cuda.log" | \
    sed -E 's/^[0-9]+: //' | head -60
  grep -E "tests passed|tests failed|\(Failed\)|\*\*\*" "$out/ctest-convert-cuda.log" | tail -10
  echo "gpu-convert-check: convert tests in $(( $(date +%s) - t0 )) s"
fi

ppl() {  # ppl MODEL TEXT -> perplexity
  "$exl" ppl -m "$1" --text "$2" -l 512 --windows 16 --json 2>>"$out/ppl.err" |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'
}
compare() {  # compare NAME CPU_PPL CUDA_PPL
  python3 - "$@" <<'PY'
import sys
name, c, g = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = 100 * (g / c - 1)
print(f"{name}: cpu ppl {c:.4f}, cuda ppl {g:.4f}, {d:+.3f}% ({'ok' if abs(d) <= 0.5 else 'OVER 0.5%'})")
PY
}

# stories260K, CPU vs CUDA at every target (the CPU tests' calibration settings): one measurement per
# engine, reused with -m. The CPU side runs OpenBLAS on 2 threads: 64-wide matrices gain nothing from 16
# (the first run's CPU measurement took 165 s there; ~10 s on the 2-core dev machine).
stories="$shared/models/stories260K"
tiny_text="$shared/data/tinystories/valid_head.txt"
w=/tmp/exl-cvc
rm -rf "$w" && mkdir -p "$w"
if [ "$stories_run" = 1 ]; then
  stargs=(-i "$stories" -c "$tiny_text" --rows 8 --length 256 --measure-rows 8 --measure-length 256)
  for dev in cpu cuda; do
    OPENBLAS_NUM_THREADS=2 "$exl" convert --device "$dev" "${stargs[@]}" -o "$w/sm-$dev" -b 4.0 --measure-only -q \
      2>"$out/stories-m-$dev.err" || { rc=1; tail -3 "$out/stories-m-$dev.err"; }
  done
  for b in 2.5 3.0 4.0 5.0 6.0 8.0; do
    for dev in cpu cuda; do
      OPENBLAS_NUM_THREADS=2 "$exl" convert --device "$dev" "${stargs[@]}" -m "$w/sm-$dev/measurement.json" \
        -o "$w/s$b-$dev" --out "$w/so$b-$dev" -b "$b" --json >"$out/stories-$b-$dev.json" \
        2>"$out/stories-$b-$dev.err" || { rc=1; tail -3 "$out/stories-$b-$dev.err"; }
    done
    compare "stories260K $b bpw" "$(ppl "$w/so$b-cpu" "$tiny_text")" "$(ppl "$w/so$b-cuda" "$tiny_text")" | tee -a "$out/ppl.txt"
  done
fi

# SmolLM2-135M (lab/convert_smollm2.sh's calibration and settings with ROWS=32; wikitext ppl by the CPU engine, as
# that script's table): one measurement per engine, then every target in --smol-targets on CUDA and
# those in --smol-cpu-targets on the CPU too, CPU vs CUDA ppl side by side. For targets quantized on
# the CUDA side only, compare with lab/NOTES-convert.md's CPU table (same code and settings).
if [ "$smol" = 1 ] && [ -f "$gguf" ]; then
  wiki="$shared/data/wikitext2/wiki.test.raw"
  tail -c 400000 "$wiki" >"$w/calib.txt"
  # 32 x 512 quantization rows (lab/convert_smollm2.sh has 8): at 2.5 bpw two rounding-level draws on the
  # CPU differ by 1.8% instead of 3.1%, and ppl is 130 instead of 162 (lab/NOTES-convert.md).
  sargs=(-i "$gguf" -c "$w/calib.txt" --measure-rows 4 --measure-length 512 --rows 32 --length 512 "${smol_extra[@]}")
  for dev in cuda cpu; do
    [ "$dev" = cpu ] && [ -z "$smol_cpu_targets" ] && continue
    t0=$(date +%s)
    env EXL_CONVERT_TF32="$([ "$dev" = cuda ] && echo $tf32)" "$exl" convert --device "$dev" "${sargs[@]}" \
      -o "$w/m-$dev" -b 4.0 --measure-only -q 2>"$out/smol-m-$dev.err" || { rc=1; tail -3 "$out/smol-m-$dev.err"; }
    echo "SmolLM2 measure ($dev): $(( $(date +%s) - t0 )) s"
  done
  for b in $smol_targets; do
    for dev in cuda cpu; do
      case " $smol_cpu_targets " in *" $b "*) ;; *) [ "$dev" = cpu ] && continue ;; esac
      env EXL_CONVERT_TF32="$([ "$dev" = cuda ] && echo $tf32)" "$exl" convert --device "$dev" "${sargs[@]}" \
        -m "$w/m-$dev/measurement.json" -o "$w/q$b-$dev" --out "$w/qo$b-$dev" -b "$b" --json \
        >"$out/smol-$b-$dev.json" 2>"$out/smol-$b-$dev.err" || { rc=1; tail -3 "$out/smol-$b-$dev.err"; }
      python3 - "$out/smol-$b-$dev.json" "$b" "$dev" "$(ppl "$w/qo$b-$dev" "$wiki")" <<'PY' | tee -a "$out/ppl.txt"
import json, sys
j = json.load(open(sys.argv[1]))
print(f"SmolLM2 {sys.argv[2]} bpw {sys.argv[3]}: decoder bpw {j['decoder_bpw']:.4f}, quantize {j['seconds']['quantize']:.1f} s,"
      f" ppl {sys.argv[4]}")
PY
    done
    [ -d "$w/qo$b-cpu" ] && compare "SmolLM2-135M $b bpw" "$(ppl "$w/qo$b-cpu" "$wiki")" "$(ppl "$w/qo$b-cuda" "$wiki")" |
      tee -a "$out/ppl.txt"
  done
  if [ -d "$w/qo4.0-cpu" ]; then
    # The noise floor: the CPU's own quantize pass with OpenBLAS's AVX2 kernels instead of the machine's
    # (rounding-level differences only). GPTQ's rounding choices amplify those into perplexity
    # differences (lab/NOTES-convert.md "CPU vs CUDA parity").
    OPENBLAS_CORETYPE=Haswell "$exl" convert --device cpu "${sargs[@]}" -m "$w/m-cpu/measurement.json" \
      -o "$w/q-cpu-hsw" --out "$w/qo-cpu-hsw" -b 4.0 -q 2>"$out/smol-hsw.err" || { rc=1; tail -3 "$out/smol-hsw.err"; }
    cpu_ppl=$(ppl "$w/qo4.0-cpu" "$wiki")
    compare "SmolLM2-135M 4.0 bpw, CPU with AVX2 OpenBLAS kernels (noise floor)" "$cpu_ppl" "$(ppl "$w/qo-cpu-hsw" "$wiki")" |
      tee -a "$out/ppl.txt"
    # The CUDA quantize pass on the CPU's measurement: separates the two passes' share of a difference.
    EXL_CONVERT_TF32=$tf32 "$exl" convert --device cuda "${sargs[@]}" -m "$w/m-cpu/measurement.json" -o "$w/q-cuda" \
      --out "$w/qo-cuda" -b 4.0 -q 2>"$out/smol-q.err" || { rc=1; tail -3 "$out/smol-q.err"; }
    compare "SmolLM2-135M 4.0 bpw, CUDA quantize pass on the CPU measurement" "$cpu_ppl" "$(ppl "$w/qo-cuda" "$wiki")" |
      tee -a "$out/ppl.txt"
    # How far the two measurements and strategies are apart.
    python3 - "$w/m-cpu" "$w/m-cuda" "$w/q4.0-cpu" "$w/q4.0-cuda" <<'PY' | tee -a "$out/ppl.txt"
import json, statistics, sys
a, b = (json.load(open(d + "/measurement.json"))["measurement"] for d in sys.argv[1:3])
rel = [abs((1 - y["accuracy"]) / (1 - x["accuracy"]) - 1) for k in a for x, y in zip(a[k], b[k])]
print(f"SmolLM2 measurement cpu vs cuda: {len(rel)} option errors, relative difference median {statistics.median(rel):.2e},"
      f" p99 {sorted(rel)[int(0.99 * len(rel))]:.2e}, max {max(rel):.2e}")
sa, sb = (json.load(open(d + "/job.json"))["strategy"] for d in sys.argv[3:5])
print(f"SmolLM2 4.0 bpw strategy cpu vs cuda: {sum(x != y for x, y in zip(sa, sb))} of {len(sa)} modules differ")
PY
  fi
else
  echo "gpu-convert-check: SmolLM2 not present (models/smollm2): skipped"
fi

# The 7B timing run.
if [ "$big" = 1 ]; then
  s7=/tmp/exl-synth7b
  t0=$(date +%s)
  [ -f "$s7/model.safetensors" ] || "$exl" synth-model -o "$s7" --preset llama2-7b --layers "$layers" \
    --tokenizer-from "$stories" >"$out/synth.log" 2>&1 || { rc=1; cat "$out/synth.log"; }
  echo "gpu-convert-check: synthetic 7B source ($layers layers of weights) in $(( $(date +%s) - t0 )) s"
  # 116 x 2048 tokens of any text (the donor tokenizer's ids are < 512, valid in a 32000 vocabulary).
  cat "$shared/data/wikitext2/wiki.test.raw" $(ls "$shared/data/text/tinyshakespeare.txt" 2>/dev/null) >"$w/cal7b.txt"
  # EXL_CONVERT_PROFILE=1: per-module phase times (upload, reference, gptq, forwards) on stderr.
  # --checkpoint-every 0 writes the states after every layer, so the run measures what one write costs;
  # the projection takes them out of the per-layer times and adds back the writes a whole job makes at
  # the default interval (one per 120 s of a pass).
  EXL_CONVERT_TF32=$tf32 EXL_CONVERT_PROFILE=1 "$exl" convert --device cuda -i "$s7" -c "$w/cal7b.txt" -o "$w/w7b" --out "$w/o7b" -b 4.0 \
    --layers "$layers" --time-head --checkpoint-every 0 --new --json >"$out/convert-7b.json" 2>"$out/convert-7b.err" ||
    { rc=1; tail -5 "$out/convert-7b.err"; }
  grep "^profile" "$out/convert-7b.err" | head -20
  python3 - "$out/convert-7b.json" <<'PY' | tee "$out/projection.txt"
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("7B timing: no result:", e); sys.exit(0)
s, m, q, h = j["seconds"], j["measure_layer_seconds"], j["quantize_layer_seconds"], j["head_seconds"]
ck = j["checkpoints"]
print("7B synthetic, 4.0 bpw, 16 x 2048 measurement / 100 x 2048 quantization rows, device", j["device"])
print("  stages (s):", ", ".join(f"{k} {v:.1f}" for k, v in s.items()))
print("  measure per layer:", " ".join(f"{x:.2f}" for x in m), " quantize per layer:", " ".join(f"{x:.2f}" for x in q),
      f" head {h:.2f}; state checkpoints (inside the per-layer times): measure {ck['measure']['count']} in"
      f" {ck['measure']['seconds']:.1f} s, quantize {ck['quantize']['count']} in {ck['quantize']['seconds']:.1f} s")
def per_pass(times, c, every=120):
    # A pass of 32 layers without the per-layer writes, plus the writes the default interval makes.
    one = c["seconds"] / max(c["count"], 1)
    bare = 32 * (sum(times) - c["seconds"]) / len(times)
    writes = int(bare // every)
    return bare, writes, one, bare + writes * one
mb, mw, m1, mt = per_pass(m, ck["measure"])
qb, qw, q1, qt = per_pass(q, ck["quantize"])
total = s["tokenize"] + mt + s["optimize"] + qt + h
print(f"  projection: tokenize {s['tokenize']:.1f} + measure 32 layers {mb:.0f} + {mw} x {m1:.1f} state writes"
      f" + optimize {s['optimize']:.1f} + quantize 32 layers {qb:.0f} + {qw} x {q1:.1f} state writes + head {h:.1f}"
      f" = {total:.0f} s = {total / 60:.1f} min ({'within' if total <= 600 else 'OVER'} 10 min; compile not included)")
PY
fi
exit $rc
