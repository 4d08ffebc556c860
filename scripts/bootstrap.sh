#!/usr/bin/env bash
# Installs what building idgraph needs on a fresh Debian machine and does nothing when it is there.
# RocksDB's Rust binding runs bindgen, which needs libclang.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need_apt=()
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
  need_apt+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)

"$here/apt-install.sh" ${need_apt[@]+"${need_apt[@]}"}
