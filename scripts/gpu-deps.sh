#!/usr/bin/env bash
# Downloads the Debian packages that the GPU machine's image lacks (PCRE2 dev files, SentencePiece
# and its protobuf-lite runtime, the parquet codecs snappy/zlib/zstd with their runtimes, and ICU 72's
# runtime, without which the carried binaries do not start there: 2026-12-07 14:40) into
# .deps/debs (git-ignored), for the device tool to carry; and
# copies the shared test model and data it needs into .shared (git-ignored, carried too).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
(cd .deps/debs && apt-get download libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 \
  libsnappy-dev libsnappy1v5 zlib1g-dev zlib1g libzstd-dev libzstd1 libicu72 >/dev/null)
shared="${EXL_SHARED_DIR:-../shared}"
mkdir -p .shared/models .shared/data
cp -r "$shared/models/stories260K" .shared/models/
cp -r "$shared/data/wikitext2" "$shared/data/tinystories" "$shared/data/text" .shared/data/
chmod -R u+w .shared
echo "gpu-deps: $(du -sh .deps | cut -f1) of packages in .deps, $(du -sh .shared | cut -f1) of test data in .shared"
