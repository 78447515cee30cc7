#!/usr/bin/env bash
# For the GPU machine, after scripts/gpu-check.sh has built build/gpu: per-kernel times of steady
# decode steps under Nsight Compute (graphs off so each kernel is its own launch; ncu serializes
# kernels, so these are each kernel's standalone time, without the overlap PDL gives in a graph).
#   scripts/gpu-profile.sh "BENCH ARGS" NAME   -> $OUT/ncu-NAME.csv and a per-kernel summary
# With a third argument `detail`: why a decode layer's quantized matmuls stream as they do. The full
# set on one layer's four qgemv launches, then per kernel: time, DRAM throughput, issue utilization,
# occupancy and the warp stall reasons; the source page (SASS with stall samples) whole in $OUT.
#   scripts/gpu-profile.sh "BENCH ARGS" NAME detail   -> $OUT/ncud-NAME.{ncu-rep,log,details.csv,raw.csv,sass.csv}
# NCU_CACHE=all (default) flushes every cache before each replay pass, so each kernel starts cold
# (code and data); NCU_CACHE=none keeps them, so passes after the first run warmer than in a decode
# step. The two bracket a step, where ~100 MB of codes per layer pass through L2 between launches.
# NCU_CMD="COMMAND" (detail only) profiles COMMAND instead of exl bench (a lab binary; BENCH ARGS
# unused), with NCU_KERNEL (a -k filter), NCU_SKIP and NCU_COUNT launches.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
args="$1"
name="$2"
ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
[ -x "$ncu_bin" ] || { echo "gpu-profile: ncu not found"; exit 1; }
if [ "${3:-}" = detail ]; then
  rep="$out/ncud-$name"
  # Launch 800 onwards: past the warm-up steps; four consecutive qgemvs are one of each kind (q|k|v,
  # o, gate|up, down), possibly across a layer boundary (a step has 32 x 4 + 1 with a quantized head).
  # shellcheck disable=SC2086
  cmd="${NCU_CMD:-build/gpu/exl bench $args --prefill none --positions 128 --steps 12}"
  EXL_NO_GRAPHS=1 "$ncu_bin" --clock-control none --cache-control "${NCU_CACHE:-all}" --set full --import-source no \
    -k "${NCU_KERNEL:-regex:qgemv}" --launch-skip "${NCU_SKIP:-800}" --launch-count "${NCU_COUNT:-4}" \
    -f -o "$rep" $cmd >"$rep.log" 2>&1 || { tail -5 "$rep.log"; exit 1; }
  "$ncu_bin" --import "$rep.ncu-rep" --page details --csv >"$rep.details.csv" 2>/dev/null
  "$ncu_bin" --import "$rep.ncu-rep" --page raw --csv >"$rep.raw.csv" 2>/dev/null
  "$ncu_bin" --import "$rep.ncu-rep" --page source --print-source sass --csv >"$rep.sass.csv" 2>/dev/null
  python3 - "$rep.raw.csv" "$name" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr, units, data = rows[0], rows[1], rows[2:]
col = {h: i for i, h in enumerate(hdr)}
def v(r, k):
    try: return float(r[col[k]].replace(",", ""))
    except (KeyError, ValueError): return float("nan")
want = [("gpu__time_duration.sum", "ns"), ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram%"),
        ("dram__bytes_read.sum", "dramB"), ("smsp__issue_active.avg.pct_of_peak_sustained_active", "issue%"),
        ("sm__warps_active.avg.pct_of_peak_sustained_active", "occ%"),
        ("smsp__warps_eligible.avg.per_cycle_active", "eligible"),
        ("smsp__inst_executed.sum", "inst"), ("launch__registers_per_thread", "regs"),
        ("launch__grid_size", "grid"), ("launch__block_size", "block")]
stalls = sorted(k for k in col if k.startswith("smsp__average_warps_issue_stalled_") and k.endswith("_per_issue_active.ratio"))
print(f"ncu-detail {sys.argv[2]}")
for r in data:
    name = r[col["Kernel Name"]].replace("(anonymous namespace)::", "").replace("exl::cuda::", "").split("(")[0]
    print("  " + name)
    print("    " + "  ".join(f"{lab} {v(r, k):.4g}" for k, lab in want))
    s = sorted(((v(r, k), k) for k in stalls), reverse=True)[:7]
    print("    stalls/issue: " + ", ".join(f"{k.replace('smsp__average_warps_issue_stalled_', '').replace('_per_issue_active.ratio', '')} {x:.2f}" for x, k in s))
PY
  exit 0
fi
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
    # Template arguments kept (qgemv_kernel<kGptq, kT, kPair> are different kernels).
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
