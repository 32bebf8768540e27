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

# requirements.txt is the locked runtime tree with hashes (scripts/lock-requirements.sh):
# installed as is, in pip's hash-checking mode, exactly what remote build installs. Dev and
# test tools come on top, held to the same runtime versions (constraints without hashes:
# pip would otherwise demand hashes for every dev package too).
if [ "$kind" = dev ]; then
  files=(requirements.txt requirements-dev.txt)
else
  files=(requirements.txt)
fi
stamp=".venv/.installed-$kind"
want="$(cat "${files[@]}" scripts/setup-env.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" --require-hashes -r requirements.txt
  if [ "$kind" = dev ]; then
    sed -n 's/^\([A-Za-z0-9_.-]*==[^ ;\\]*\).*/\1/p' requirements.txt >.venv/runtime-constraints.txt
    "${pip[@]}" -c .venv/runtime-constraints.txt -r requirements-dev.txt
    # The Python worker's indexer, for tests only: it declares Python >= 3.13 but its
    # indexing code runs on 3.11; never part of requirements.txt.
    "${pip[@]}" --no-deps --ignore-requires-python azure-functions-runtime==1.3.0
  fi
  echo "$want" >"$stamp"
fi

if [ ! -x node_modules/.bin/azurite ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
