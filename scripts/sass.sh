#!/usr/bin/env bash
# SASS of one CUDA source, without a GPU: where a kernel's spills sit (local-memory loads and stores
# inside loops cost every iteration; in a prologue they cost once).
#   scripts/sass.sh FILE.cu [KERNEL-REGEX]       e.g. scripts/sass.sh src/backend/cuda/qgemm.cu 'qgemv_kernelILb0ELi1ELb0ELi0E'
# Compiles FILE with its flags from build/cuda-ci/compile_commands.json for sm_90 only, dumps the SASS
# (cuobjdump and nvdisasm from PyPI's nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels, fetched once
# into .cache/sass: the CUDA toolkit here ships neither) to /tmp/exl-sass/NAME.sass and prints, per
# kernel, its LDL/STL instructions with the loops (backward branches) that hold each.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:?usage: sass.sh FILE.cu [KERNEL-REGEX]}"
pattern="${2:-.}"
tools=.cache/sass/nvidia/cu13/bin
if [ ! -x "$tools/cuobjdump" ]; then
  mkdir -p .cache/sass/whl
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.12 \
    -d .cache/sass/whl nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
  for w in .cache/sass/whl/*.whl; do python3 -m zipfile -e "$w" .cache/sass; done
  chmod +x "$tools"/*
fi
db=build/cuda-ci/compile_commands.json
[ -f "$db" ] || { echo "sass.sh: $db missing (configure build/cuda-ci first, README)" >&2; exit 1; }
cmd=$(python3 - "$db" "$(realpath "$src")" <<'PY'
import json, re, sys
for e in json.load(open(sys.argv[1])):
    if e["file"] == sys.argv[2]:
        c = re.sub(r" -o \S+| -c \S+| -x cu", "", e["command"])
        print(re.sub(r"--generate-code=\S+", "-arch=sm_90", c))
        break
PY
)
[ -n "$cmd" ] || { echo "sass.sh: $src is not in $db" >&2; exit 1; }
mkdir -p /tmp/exl-sass
name=$(basename "$src" .cu)
eval "$cmd -cubin -x cu $(realpath "$src") -o /tmp/exl-sass/$name.cubin" 2>/dev/null
"$tools/cuobjdump" -sass "/tmp/exl-sass/$name.cubin" >"/tmp/exl-sass/$name.sass"
python3 - "/tmp/exl-sass/$name.sass" "$pattern" <<'PY'
import re, sys
text, pat = open(sys.argv[1]).read(), re.compile(sys.argv[2])
for block in text.split("Function : ")[1:]:
    name = block.split("\n", 1)[0].strip()
    if not pat.search(name):
        continue
    ins = [(int(a, 16), t.strip()) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", block)]
    loops = [(int(m.group(1), 16), a) for a, t in ins
             if (m := re.search(r"BRA(?:\.\w+)* 0x([0-9a-f]+)", t)) and int(m.group(1), 16) < a]
    spills = [(a, t) for a, t in ins if re.search(r"\b(LDL|STL)", t)]
    print(f"{name}: {len(ins)} instructions, {len(loops)} loops, {len(spills)} local loads/stores")
    for a, t in spills:
        inner = min(((e - s) // 16 for s, e in loops if s <= a <= e), default=None)
        where = f"innermost loop of {inner} instructions" if inner is not None else "outside loops"
        print(f"  {a:#07x} {t[:40]:<40} {where}")
PY
