#!/usr/bin/env bash
# Our app (the landed checkout) served like the peer Alerta: receive_alert over HTTP under
# gunicorn (2 sync workers) through a minimal WSGI adapter, process_alert in a queue-listener
# process built on the project's tests/harness.py, Azurite on disk, a local Entra stand-in
# (key set + one token). Everything listens on 127.0.0.1 only; state in one /tmp folder.
#
#   bash ours_setup.sh        # fresh Azurite, start all four (CHECKOUT: this repository)
#   bash ours_stop.sh                                            # stop them by PID (--purge: delete the folder)
#
# Settings (environment variables):
#   CHECKOUT          the project checkout to run (default: this repository; copied, never written)
#   OURS_VENV         Python environment (default: CHECKOUT/.venv, made by scripts/setup-env.sh dev)
#   OURS_PEER_DIR     working folder                         (default /tmp/ours-peer)
#   API_PORT          HTTP port of receive_alert             (default 8091)
#   JWKS_PORT         port of the local key set              (default 8092)
#   AZURITE_PORTS     blob,queue,table ports                 (default 10100,10101,10102)
#   GUNICORN_WORKERS  gunicorn workers                       (default 2, like the peer)
#   GUNICORN_CLASS    sync or gthread                        (default sync, like the peer)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(cd "${CHECKOUT:-$HERE/../..}" && pwd)"
WORK="${OURS_PEER_DIR:-/tmp/ours-peer}"
API_PORT="${API_PORT:-8091}"
JWKS_PORT="${JWKS_PORT:-8092}"
IFS=, read -r BLOB_PORT QUEUE_PORT TABLE_PORT <<<"${AZURITE_PORTS:-10100,10101,10102}"
GUNICORN_WORKERS="${GUNICORN_WORKERS:-2}"
GUNICORN_CLASS="${GUNICORN_CLASS:-sync}"
GUNICORN_VERSION="${GUNICORN_VERSION:-27.0.1}"
APP="$WORK/app"
say() { printf '[setup] %s\n' "$*"; }

mkdir -p "$WORK"
for p in gunicorn processor azurite jwks; do
  if [ -f "$WORK/$p.pid" ] && kill -0 "$(cat "$WORK/$p.pid")" 2>/dev/null; then
    echo "$p is already running (pid $(cat "$WORK/$p.pid")); run stop.sh first." >&2; exit 1
  fi
done

# --- 1. a copy of the checkout (Python writes __pycache__ next to what it imports) ------
say "copying $CHECKOUT (commit $(git -C "$CHECKOUT" rev-parse --short HEAD 2>/dev/null || echo '?')) to $APP"
rm -rf "$APP"; mkdir -p "$APP"
tar -C "$CHECKOUT" --exclude=.git --exclude=.venv --exclude=node_modules --exclude=__pycache__ -cf - . | tar -C "$APP" -xf -
git -C "$CHECKOUT" rev-parse HEAD > "$WORK/checkout-commit.txt" 2>/dev/null || echo unknown > "$WORK/checkout-commit.txt"
# Optional: other queue concurrency in the copy's host.json, for experiments (the checkout's
# own host.json is never written): QUEUE_BATCH_SIZE, QUEUE_NEW_BATCH_THRESHOLD.
if [ -n "${QUEUE_BATCH_SIZE:-}${QUEUE_NEW_BATCH_THRESHOLD:-}" ]; then
  python3 - "$APP/host.json" <<'PY'
import json, os, sys
path = sys.argv[1]
host = json.load(open(path))
queues = host["extensions"]["queues"]
for key, name in (("batchSize", "QUEUE_BATCH_SIZE"), ("newBatchThreshold", "QUEUE_NEW_BATCH_THRESHOLD")):
    if os.environ.get(name):
        queues[key] = int(os.environ[name])
json.dump(host, open(path, "w"), indent=2)
PY
  say "host.json queues in the copy: batchSize ${QUEUE_BATCH_SIZE:-as is}, newBatchThreshold ${QUEUE_NEW_BATCH_THRESHOLD:-as is}"
fi

# --- 2. Python: the checkout's dev environment (scripts/setup-env.sh dev: the locked runtime
# tree plus the worker the harness drives), with gunicorn (Alerta's version) and py-spy on top.
VENV="${OURS_VENV:-$CHECKOUT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  say "no $VENV: running scripts/setup-env.sh dev in $CHECKOUT"
  (cd "$CHECKOUT" && bash scripts/setup-env.sh dev)
fi
if ! "$VENV/bin/python" -c "import gunicorn" 2>/dev/null || [ ! -x "$VENV/bin/py-spy" ]; then
  say "pip install gunicorn==$GUNICORN_VERSION py-spy into $VENV"
  "$VENV/bin/python" -m pip install --quiet "gunicorn==$GUNICORN_VERSION" py-spy
fi
"$VENV/bin/python" -m pip freeze > "$WORK/pip-freeze.txt" 2>/dev/null
ln -sfn "$VENV" "$WORK/venv"

# --- 3. Azurite as the checkout pins it (its node_modules, from package-lock.json) ------------
AZURITE_JS="$CHECKOUT/node_modules/azurite/dist/src/azurite.js"
[ -f "$AZURITE_JS" ] || (cd "$CHECKOUT" && npm ci --no-audit --no-fund --loglevel=error)
say "Azurite $(node -p "require('$CHECKOUT/node_modules/azurite/package.json').version"), node $(node --version)"
rm -rf "$WORK/azurite-data"; mkdir -p "$WORK/azurite-data"
# On disk (--location), as `azurite` runs by default and as the project's storm benchmark runs it.
setsid nohup node "$AZURITE_JS" --silent --disableTelemetry --skipApiVersionCheck --loose \
  --location "$WORK/azurite-data" \
  --blobHost 127.0.0.1 --blobPort "$BLOB_PORT" --queueHost 127.0.0.1 --queuePort "$QUEUE_PORT" \
  --tableHost 127.0.0.1 --tablePort "$TABLE_PORT" >"$WORK/azurite.log" 2>&1 </dev/null &
echo $! > "$WORK/azurite.pid"
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's public dev key
CONN="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$KEY;BlobEndpoint=http://127.0.0.1:$BLOB_PORT/devstoreaccount1;QueueEndpoint=http://127.0.0.1:$QUEUE_PORT/devstoreaccount1;TableEndpoint=http://127.0.0.1:$TABLE_PORT/devstoreaccount1;"

# --- 4. the Entra stand-in: key set on loopback, one token ---------------------------------
setsid nohup "$VENV/bin/python" "$HERE/jwks.py" --port "$JWKS_PORT" --token-out "$WORK/token.txt" \
  --settings-out "$WORK/aad.env" >"$WORK/jwks.log" 2>&1 </dev/null &
echo $! > "$WORK/jwks.pid"

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 did not open" >&2; return 1; }
for p in "$BLOB_PORT" "$QUEUE_PORT" "$TABLE_PORT" "$JWKS_PORT"; do wait_port "$p"; done

# --- 5. the app's settings (README's configuration table) ------------------------------------
{
  echo "export OURS_APP_DIR='$APP'"
  echo "export AzureWebJobsStorage='$CONN'"
  cat "$WORK/aad.env"
  echo "export CORRELATION_MODE=alert MAX_PAYLOAD_BYTES=1048576"
  echo "export FUNCTIONS_WORKER_RUNTIME=python"
} > "$WORK/env.sh"
# shellcheck disable=SC1091
. "$WORK/env.sh"
# Azure's Python workers set none of these; with any of them the app's storage clients fall
# back to the SDK's default transport (shared/storage_transport.py, wants_default).
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy

# --- 6. process_alert's queue listener, then receive_alert under gunicorn ---------------------
rm -f "$WORK/processor.status"
setsid nohup "$VENV/bin/python" "$HERE/processor.py" "$WORK/processor.status" >"$WORK/processor.log" 2>&1 </dev/null &
echo $! > "$WORK/processor.pid"

say "starting gunicorn ($GUNICORN_WORKERS $GUNICORN_CLASS workers) on 127.0.0.1:$API_PORT"
rm -f "$WORK/gunicorn.pid"
extra=()
if "$VENV/bin/gunicorn" --help 2>/dev/null | grep -q -- '--no-control-socket'; then extra+=(--no-control-socket); fi
"$VENV/bin/gunicorn" --daemon --chdir "$APP" --pythonpath "$HERE" "${extra[@]}" \
  --workers "$GUNICORN_WORKERS" --worker-class "$GUNICORN_CLASS" --bind "127.0.0.1:$API_PORT" \
  --pid "$WORK/gunicorn.pid" --error-logfile "$WORK/gunicorn.log" adapter:application

# Ready when a POST without a token answers 401 (the function ran) and the listener wrote its status.
for _ in $(seq 1 100); do
  code="$("$VENV/bin/python" - "$API_PORT" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/alerts", data=b"{}", method="POST"), timeout=2)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)"
  if [ "$code" = 401 ] && [ -f "$WORK/processor.status" ]; then
    say "up: http://127.0.0.1:$API_PORT/api/alerts  (gunicorn $(cat "$WORK/gunicorn.pid"), processor $(cat "$WORK/processor.pid"), azurite $(cat "$WORK/azurite.pid"), jwks $(cat "$WORK/jwks.pid"))"
    say "next: $VENV/bin/python $HERE/ours_load.py    then: bash $HERE/ours_stop.sh"
    exit 0
  fi
  sleep 0.3
done
echo "not ready; see $WORK/gunicorn.log and $WORK/processor.log" >&2
exit 1
