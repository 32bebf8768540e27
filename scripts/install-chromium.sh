#!/usr/bin/env bash
# Install Debian's chromium for the board's browser tests (tests/test_board_browser.py), which
# drive it with Playwright through executable_path: Playwright's own browser downloads come
# from a host outside the package registries and are never used.
#
# Idempotent: does nothing when /usr/bin/chromium is there. Needs root (CI runs as root) or sudo.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-chromium.sh: /usr/bin/chromium is missing; run: apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
