#!/usr/bin/env bash
# setup-chromium.sh: install Debian's chromium, which the web UI's
# end-to-end tests (e2e/ui) drive headless through chromedp. Idempotent;
# `make test` runs it. As root it installs the package when missing; as
# another user it only says whether chromium is there (the tests then skip
# loudly, or fail with CI=true).
set -euo pipefail

log() { echo "setup-chromium: $*"; }

if command -v chromium >/dev/null 2>&1; then
  log "chromium present: $(chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  log "chromium is missing and this is not root: run 'sudo bash scripts/setup-chromium.sh' (the UI tests skip, or fail with CI=true)"
  exit 0
fi
log "installing chromium"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
log "chromium installed: $(chromium --version 2>/dev/null || echo unknown version)"
