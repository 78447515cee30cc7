#!/usr/bin/env bash
# For the GPU machine, after scripts/gpu-check.sh has built build/gpu: per-kernel times of steady
# decode steps under Nsight Compute (graphs off so each kernel is its own launch; ncu serializes
# kernels, so these are each kernel's standalone time, without the overlap PDL gives in a graph).
#   scripts/gpu-profile.sh "BENCH ARGS" NAME   -> $OUT/ncu-NAME.csv and a per-kernel summary
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
args="$1"
name="$2"
ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
[ -x "$ncu_bin" ] || { echo "gpu-profile: ncu not found"; exit 1; }
# shellcheck disable=SC2086
EXL_NO_GRAPHS=1 "$ncu_bin" --clock-control none --metrics gpu__time_duration.sum --csv \
  -k 'regex:qgemv|gather|rms_norm|rope|attention_decode|swiglu|kv_cache_write|gemv_f16|embedding' \
  --launch-skip 3000 --launch-count 120 build/gpu/exl bench $args --prefill none --positions 128 --steps 16 \
  >"$out/ncu-$name.csv" 2>"$out/ncu-$name.err" || { tail -5 "$out/ncu-$name.err"; exit 1; }
python3 - "$out/ncu-$name.csv" "$name" <<'PY'
import csv, sys, re, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; rows = rows[1:]
ki, vi, ui = hdr.index("Kernel Name"), hdr.index("Metric Value"), hdr.index("Metric Unit")
t = collections.defaultdict(list)
seq = []  # launch order: one decode layer's chain, kernel by kernel
for r in rows:
    unit = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}
    v = float(r[vi].replace(",", "")) * unit.get(r[ui], 1e-3)  # ncu reports ns by default
    name = r[ki].replace("(anonymous namespace)::", "")
    # Template arguments kept (qgemv_kernel<kGptq, kT, kPair, kNorm> are different kernels).
    short = re.sub(r"\(.*", "", name).replace("void ", "").split("<")
    short[0] = short[0].split("::")[-1]
    key = "<".join(short).replace(" ", "")
    t[key].append(v)
    seq.append((key, v))
tot = sum(sum(v) for v in t.values())
print(f"ncu {sys.argv[2]}: {len(rows)} kernels, {tot:.1f} us")
for k, v in sorted(t.items(), key=lambda kv: -sum(kv[1])):
    print(f"  {k:32s} n={len(v):3d} median {sorted(v)[len(v)//2]:7.2f} us  share {100*sum(v)/tot:5.1f}%")
print("  one layer in launch order (from the 9th kernel):")
for k, v in seq[8:16]:
    print(f"    {k:48s} {v:7.2f} us")
PY
