#!/usr/bin/env bash
# Install checkov into its own virtualenv, .venv-checkov at the repository root.
#
# checkov pins pycep-parser 0.5.1 while the test environment (.venv) uses 0.7.1,
# so the two cannot share an environment. tests/test_infra.py runs
# .venv-checkov/bin/checkov and fails when it is missing.
#
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-checkov"
# The interpreter scripts/setup-env.sh chose for .venv (the Python 3.10-3.12 the README
# accepts), unless PYTHON names another.
if [[ -z "${PYTHON:-}" ]]; then
  [[ -x "${ROOT}/.venv/bin/python" ]] || bash "${ROOT}/scripts/setup-env.sh" dev
  PYTHON="${ROOT}/.venv/bin/python"
fi

# pip's output is read whole first: `pip show | grep -q` under pipefail fails whenever grep
# exits at the match before pip has written everything (SIGPIPE).
installed="$("${VENV}/bin/python" -m pip show checkov 2>/dev/null || true)"
if [[ -x "${VENV}/bin/checkov" ]] && grep -qx "Version: ${CHECKOV_VERSION}" <<<"${installed}"; then
  echo "checkov ${CHECKOV_VERSION} already installed in ${VENV}"
  exit 0
fi

"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
"${VENV}/bin/checkov" --version
