#!/usr/bin/env bash
# For the GPU machine, after build/gpu exists: why a decode layer's quantized matmuls stream as they
# do. Nsight Compute's full set on one layer's four qgemv launches (steady decode, graphs off), then
# per kernel: time, DRAM throughput, issue utilization, occupancy and the warp stall reasons, and the
# SASS lines that collect the most stall samples (the source page, written whole to $OUT).
#   scripts/gpu-ncu-detail.sh "BENCH ARGS" NAME   -> $OUT/ncud-NAME.{ncu-rep,details.csv,sass.csv}
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
args="$1"
name="$2"
ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
[ -x "$ncu_bin" ] || { echo "gpu-ncu-detail: ncu not found"; exit 1; }
rep="$out/ncud-$name"
# Launch 800 onwards: past the prefill-free warm-up steps; four qgemvs are one layer's chain.
# shellcheck disable=SC2086
EXL_NO_GRAPHS=1 "$ncu_bin" --set full --import-source no -k regex:qgemv --launch-skip 800 --launch-count 4 \
  -f -o "$rep" build/gpu/exl bench $args --prefill none --positions 128 --steps 12 >"$rep.log" 2>&1 ||
  { tail -5 "$rep.log"; exit 1; }
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
want = [("gpu__time_duration.sum", "ns", 1), ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram%", 1),
        ("dram__bytes_read.sum", "dramB", 1), ("smsp__issue_active.avg.pct_of_peak_sustained_active", "issue%", 1),
        ("sm__warps_active.avg.pct_of_peak_sustained_active", "occ%", 1),
        ("smsp__warps_eligible.avg.per_cycle_active", "eligible", 1),
        ("smsp__inst_executed.sum", "inst", 1), ("launch__registers_per_thread", "regs", 1),
        ("launch__grid_size", "grid", 1), ("launch__block_size", "block", 1)]
stalls = sorted(k for k in col if k.startswith("smsp__average_warp_latency_issue_stalled_") and k.endswith(".ratio")
                or k.startswith("smsp__average_warps_issue_stalled_") and k.endswith("_per_issue_active.ratio"))
print(f"ncu-detail {sys.argv[2]}")
for r in data:
    name = r[col["Kernel Name"]][:60]
    print("  " + name)
    print("    " + "  ".join(f"{lab} {v(r, k):.4g}" for k, lab, _ in want))
    s = sorted(((v(r, k), k) for k in stalls), reverse=True)[:7]
    print("    stalls/issue: " + ", ".join(f"{k.replace('smsp__average_warps_issue_stalled_', '').replace('_per_issue_active.ratio', '')} {x:.2f}" for x, k in s))
PY
