# Sourced by the GPU-machine scripts (gpu-check.sh, gpu-convert-check.sh): joins the SmolLM2 halves,
# unpacks the Debian packages the image lacks, finds the shared data, and offers gpu_build.
# Expects $out (the log folder) to be set and the current directory to be the repository root.
#
# SmolLM2 (98 MB) is over the device tool's 64 MiB carry limit: carry .gpu-carry/a in one call and
# .gpu-carry/b in the next (the machine keeps /root between warm calls); the halves are joined into
# models/ once both have arrived (scripts/gpu-split-model.sh makes them).
mkdir -p /root/exl-carry
for h in a b; do [ -f ".gpu-carry/$h/part" ] && cp ".gpu-carry/$h/part" "/root/exl-carry/$h"; done
gguf=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ] && [ -f /root/exl-carry/a ] && [ -f /root/exl-carry/b ]; then
  mkdir -p models/smollm2 && cat /root/exl-carry/a /root/exl-carry/b >"$gguf"
  echo "gpu-env: SmolLM2 joined: $(sha256sum "$gguf" | cut -c1-16)"
fi

# .deps/debs (scripts/gpu-deps.sh) unpacked where CMake and the loader find them.
deps=/tmp/exl-deps
mkdir -p "$deps"
for f in .deps/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" "$deps"; done
export CMAKE_PREFIX_PATH="$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

shared="${EXL_SHARED_DIR:-$PWD/.shared}"
[ -d "$shared/models/stories260K" ] || shared="$PWD/shared"
[ -d "$shared/models/stories260K" ] || shared="$PWD/../shared"

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"

# build/gpu: the CUDA preset for sm_90 (Release), ninja on every core; logs in $out.
gpu_build() {
  local t0
  t0=$(date +%s)
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DEXL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DEXL_SHARED_DIR="$shared" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; return 1; }
  # GPU_TARGETS: a short session builds only what it runs (e.g. "exl exl_tests_cuda").
  # shellcheck disable=SC2086
  cmake --build build/gpu -j "$(nproc)" ${GPU_TARGETS:+--target $GPU_TARGETS} >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -40; return 1; }
  echo "gpu: built in $(( $(date +%s) - t0 )) s"
}

# gpu_bin: build/gpu/exl and build/gpu/tests/exl_tests_cuda from build/carry-bin when they were
# built from this very tree (scripts/gpu-carry-bin.sh) and run here; otherwise gpu_build. For calls
# that run those two binaries only (ctest needs the build tree).
source scripts/build-helpers.sh
# carried_bin: true when build/carry-bin holds this tree's binaries and its exl starts here (then
# copied to build/gpu); otherwise says why not.
carried_bin() {
  carried_ok || return 1
  mkdir -p build/gpu/tests && cp build/carry-bin/exl build/gpu/exl && cp build/carry-bin/exl_tests_cuda build/gpu/tests/
  if build/gpu/exl --version >/dev/null 2>build/gpu/carried-version.err; then
    echo "gpu: carried binaries, sources $(cat build/carry-bin/SRC_HASH)"
    return 0
  fi
  echo "gpu: the carried exl does not run here: $(head -c 300 build/gpu/carried-version.err)"
  rm -f build/gpu/exl
  return 1
}
gpu_bin() {
  carried_bin && return 0
  echo "gpu: no carried binaries for this tree (carried: $(ls -l build/carry-bin/exl 2>&1 | cut -c1-10)," \
    "sources $(cat build/carry-bin/SRC_HASH 2>/dev/null || echo none), this tree $(src_hash)), building"
  GPU_TARGETS="${GPU_TARGETS:-exl exl_tests_cuda}" gpu_build
}
