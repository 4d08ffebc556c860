#!/usr/bin/env bash
# Installs what building idgraph needs on a fresh Debian machine and does nothing when it is there.
# RocksDB's Rust binding runs bindgen, which needs libclang.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need_apt=()
# Only a libclang that bindgen loads counts (libclang-cpp.so.N, which other packages bring, does not).
if ! "$here/find-libclang.sh" >/dev/null; then
  need_apt+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The end-to-end tests stop servers with kill(1), which minimal images leave out (procps).
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || need_apt+=(procps)

"$here/apt-install.sh" ${need_apt[@]+"${need_apt[@]}"}
