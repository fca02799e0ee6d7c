#!/usr/bin/env bash
# Issue 3's large-backlog check: a durable queue fed with 1 KiB persistent messages (publisher
# confirms on) and no consumer, far past the memory budget. Prints the broker's RSS after the
# fill, after a restart (recovery) and after draining, and the data dir's size at each step.
#
#   bench/backlog.sh                 # FILL_SECS=90 (about 5 M messages on a 2-core machine)
#   FILL_SECS=30 bench/backlog.sh
# Loopback only; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
FILL_SECS=${FILL_SECS:-90}
DATA=$(mktemp -d /tmp/warren-backlog.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA" "$DATA.log"; }
trap cleanup EXIT

cargo build --release -q -p warren -p warren-client --bin warren --bin warren-cli
start() {
  rm -f "$DATA.log"
  target/release/warren --bind 127.0.0.1 --port "$PORT" --data-dir "$DATA" >"$DATA.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    grep -q "listening for AMQP" "$DATA.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "broker did not start" >&2; exit 1
}
rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$PID/status"; echo; }
count() {
  python3 - "$URL" <<'PY'
import sys, pika
c = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
print(c.channel().queue_declare("backlog", durable=True, passive=True).method.message_count)
c.close()
PY
}

start
echo "== fill for ${FILL_SECS}s (2 producers, 1000 confirms outstanding each, 1 KiB, no consumer)"
target/release/warren-cli perf --url "$URL" --queue backlog --durable --persistent \
  --producers 2 --consumers 0 --confirm 1000 --size 1024 --duration "$FILL_SECS" | tail -4
echo "messages queued: $(count)"; echo -n "after fill:     "; rss
echo "data dir: $(du -sh "$DATA" | cut -f1)"

echo "== restart (recovery)"
kill -TERM "$PID"; wait "$PID" || true
T0=$(date +%s.%N); start; T1=$(date +%s.%N)
echo "recovery + start: $(python3 -c "print(round($T1-$T0,1))") s"
echo -n "after restart:  "; rss
echo "messages queued: $(count)"

echo "== drain (1 consumer, prefetch 1000)"
N=$(count)
target/release/warren-cli perf --url "$URL" --queue backlog --durable --producers 0 --consumers 1 \
  --prefetch 1000 --duration 0 > "$DATA.drain" 2>&1 &
PERF=$!
while [ "$(count)" -gt 0 ]; do sleep 2; done
kill -INT "$PERF" 2>/dev/null; wait "$PERF" 2>/dev/null || true
tail -4 "$DATA.drain"; rm -f "$DATA.drain"
echo -n "after drain:    "; rss
sleep 2
echo "drained $N messages; data dir: $(du -sh "$DATA" | cut -f1)"
