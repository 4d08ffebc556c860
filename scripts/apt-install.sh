#!/usr/bin/env bash
# Installs the given Debian packages (with sudo when not root), quietly. Used by the other scripts.
set -euo pipefail
[ $# -gt 0 ] || exit 0
echo "installing $*" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
