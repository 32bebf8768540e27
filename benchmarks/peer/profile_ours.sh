#!/usr/bin/env bash
# Where our CPU per alert goes during the `new` workload: py-spy (sampling, only the thread
# holding the GIL, non-blocking) on the gunicorn workers and on the queue listener while
# ours_load.py sends N new alerts; then profile_buckets.py sorts the samples into buckets
# scaled by the meter's CPU. Not for ratios (py-spy costs CPU too): run it apart from rounds.
#
#   bash benchmarks/peer/profile_ours.sh          # N=2000; OURS_PEER_DIR, ports as ours_setup.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${OURS_PEER_DIR:-/tmp/ours-peer}"
N="${N:-2000}"
URL="http://127.0.0.1:${API_PORT:-8091}"
OUT="$WORK/profile"
bash "$HERE/ours_setup.sh"
mkdir -p "$OUT"; rm -f "$OUT"/*.txt
PY="$WORK/venv/bin/python"
"$PY" "$HERE/ours_load.py" --url "$URL" --scenarios '' --warmup 200   # warm every process first
"$WORK/venv/bin/py-spy" record --pid "$(cat "$WORK/gunicorn.pid")" --subprocesses --gil --nonblocking \
  --rate 200 --format raw -o "$OUT/http.txt" >"$OUT/py-spy-http.log" 2>&1 &
SPY1=$!
"$WORK/venv/bin/py-spy" record --pid "$(cat "$WORK/processor.pid")" --gil --nonblocking \
  --rate 200 --format raw -o "$OUT/processor.txt" >"$OUT/py-spy-processor.log" 2>&1 &
SPY2=$!
sleep 1
"$PY" "$HERE/ours_load.py" --url "$URL" --scenarios new --new "$N" --warmup 0 \
  --json-out "$OUT/load-new.json" || true
kill -INT "$SPY1" "$SPY2"; wait "$SPY1" "$SPY2" || true
bash "$HERE/ours_stop.sh"
"$PY" "$HERE/profile_buckets.py" --load "$OUT/load-new.json" "$OUT/http.txt" "$OUT/processor.txt" \
  --json-out "$OUT/buckets.json"
