#!/usr/bin/env bash
# Regenerates requirements.txt (the whole runtime tree, exact versions and hashes) from
# requirements.in with pip-compile, for Linux and Python 3.11 (the app's runtime, see
# infra/modules/function-app.bicep). Run on Linux with Python 3.11 after editing
# requirements.in; `--upgrade` or `--upgrade-package NAME` move pinned versions forward.
# Usage: scripts/lock-requirements.sh [pip-compile options]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3.11}"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  { echo "run with Python 3.11 (PYTHON=/path/to/python3.11): the lock is for the app's runtime" >&2; exit 1; }
if [ ! -x .venv-lock/bin/pip-compile ]; then
  "$python" -m venv .venv-lock
  .venv-lock/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2
fi
# CUSTOM_COMPILE_COMMAND: what the header of requirements.txt tells readers to run.
CUSTOM_COMPILE_COMMAND="scripts/lock-requirements.sh" .venv-lock/bin/pip-compile \
  --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
  --no-emit-find-links --output-file requirements.txt requirements.in "$@"
