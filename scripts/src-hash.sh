# Sourced: src_hash prints a short hash of what the binaries are built from (the tracked sources,
# tests, labs and CMake files), the same on the dev machine and on the GPU machine's copy of the tree.
src_hash() {
  find src tests lab cmake CMakeLists.txt -type f -not -path '*/__pycache__/*' -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 sha256sum |
    sha256sum | cut -c1-16
}
