#!/usr/bin/env bash
# Installs what the Web SDK end-to-end test needs: Node.js, the npm packages of tests/websdk
# (@mparticle/web-sdk, playwright-core) and Debian's Chromium. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "websdk-setup: installing ${need_apt[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -d tests/websdk/node_modules/@mparticle/web-sdk ] || [ ! -d tests/websdk/node_modules/playwright-core ]; then
  (cd tests/websdk && npm install --no-audit --no-fund --loglevel=error)
fi
