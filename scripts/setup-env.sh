#!/usr/bin/env bash
# Creates or refreshes .venv (Python 3.10-3.12, preferring 3.11) and node_modules.
# Usage: scripts/setup-env.sh [runtime|dev]. Re-runs are fast: a stamp records what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-dev}"

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python 3.10-3.12 is required (3.11 recommended); set PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi

if [ "$kind" = dev ]; then
  files=(requirements.txt requirements-dev.txt)
else
  files=(requirements.txt)
fi
stamp=".venv/.installed-$kind"
want="$(cat "${files[@]}" scripts/setup-env.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "${files[-1]}"
  if [ "$kind" = dev ]; then
    # The Python worker's indexer, for tests only: it declares Python >= 3.13 but its
    # indexing code runs on 3.11; never part of requirements.txt.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      --no-deps --ignore-requires-python azure-functions-runtime==1.3.0
  fi
  echo "$want" >"$stamp"
fi

if [ ! -x node_modules/.bin/azurite ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
