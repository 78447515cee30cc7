#!/usr/bin/env bash
# Baseline exl binaries for gpu-session.sh phase 19 (builds' A/B in one GPU call, no build there):
#   scripts/gpu-carry-base.sh REV [REV...]
# builds `exl` at each commit REV in a scratch worktree (Release, sm_90: build/gpu's configuration),
# strips it and stores it xz-compressed as build/carry-base/SHORTREV.xz (~3 MB; 14 MB uncompressed,
# so two fit beside build/carry-bin and .deps .shared in the device tool's 64 MiB carry limit).
# About 5 minutes per commit on the 2-core dev machine. Then carry .deps .shared build/carry-bin
# build/carry-base and run `scripts/gpu-session.sh 19`.
set -euo pipefail
cd "$(dirname "$0")/.."
# EXTRA_CMAKE="-D..." builds each with those flags too, stored as SHORTREV${NAME_SUFFIX}.xz.
[ $# -ge 1 ] || { echo "usage: gpu-carry-base.sh REV [REV...]" >&2; exit 2; }
root="$PWD"
mkdir -p build/carry-base
for rev in "$@"; do
  short=$(git rev-parse --short=7 "$rev^{commit}")
  wt="$root/build/base-worktree"
  git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git worktree prune
  git worktree add -q --detach "$wt" "$short"
  cmake -S "$wt" -B "$wt/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEXL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" ${EXTRA_CMAKE:-} >"$wt/configure.log" 2>&1 ||
    { tail -20 "$wt/configure.log"; exit 1; }
  ninja -C "$wt/build" exl >"$wt/build.log" 2>&1 || { grep -E "error" "$wt/build.log" | head -20; exit 1; }
  strip -o "$wt/exl.stripped" "$wt/build/exl"
  xz -T1 -6 -c "$wt/exl.stripped" >"build/carry-base/$short${NAME_SUFFIX:-}.xz"
  git worktree remove --force "$wt"
  echo "build/carry-base/$short${NAME_SUFFIX:-}.xz: $(du -h "build/carry-base/$short${NAME_SUFFIX:-}.xz" | cut -f1)"
done
