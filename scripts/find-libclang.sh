#!/usr/bin/env bash
# Prints the path of a libclang that bindgen can load, and exits 1 when there is none.
#
# bindgen (through clang-sys) loads a file named `libclang.so`, `libclang-N.so`, `libclang.so.N`
# or `libclang-N.so.N`; `libclang-cpp.so.N` (the C++ interface, installed by other packages) is
# not one of them, so it must not count. `IDGRAPH_LIBCLANG_ROOT` (default `/`) is the file system
# root searched, so the detection can be tested on a fake tree; `LIBCLANG_PATH` is honoured as
# bindgen honours it.
set -euo pipefail
root="${IDGRAPH_LIBCLANG_ROOT:-/}"
root="${root%/}"

is_loadable() {
  local name
  name="$(basename "$1")"
  [[ "$name" =~ ^libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?$ ]]
}

dirs=()
[ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$root${LIBCLANG_PATH%/}")
for dir in "$root"/usr/lib/llvm-*/lib "$root"/usr/lib/x86_64-linux-gnu "$root"/usr/lib/aarch64-linux-gnu \
  "$root"/usr/lib64 "$root"/usr/lib "$root"/usr/local/lib; do
  [ -d "$dir" ] && dirs+=("$dir")
done
for dir in ${dirs[@]+"${dirs[@]}"}; do
  for file in "$dir"/libclang*.so*; do
    [ -e "$file" ] || continue
    if is_loadable "$file"; then
      echo "$file"
      exit 0
    fi
  done
done
exit 1
