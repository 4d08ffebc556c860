#!/usr/bin/env bash
# Installs what the browser end-to-end tests (Web SDK, audit explorer) need: Node.js, the npm
# packages of tests/websdk (@mparticle/web-sdk, playwright-core, axe-core) and Debian's Chromium.
# Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
"$here/apt-install.sh" ${need_apt[@]+"${need_apt[@]}"}
if [ ! -d tests/websdk/node_modules/@mparticle/web-sdk ] || [ ! -d tests/websdk/node_modules/playwright-core ] \
  || [ ! -d tests/websdk/node_modules/axe-core ]; then
  (cd tests/websdk && npm install --no-audit --no-fund --loglevel=error)
fi
