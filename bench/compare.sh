#!/usr/bin/env bash
# Issue 7's side-by-side benchmark: Warren and RabbitMQ on the same machine, the same load
# generator (`warren-cli perf`), every scenario run against both alternately in one run.
#
# Builds the release binaries, starts Warren on 127.0.0.1 (free ports, temporary data dir)
# and, when RabbitMQ is installed or installable from the distribution's packages, a
# RabbitMQ node on 127.0.0.1 (its own AMQP/dist/epmd ports, node name and data dir, no
# plugins). Then, on both brokers:
#   1. memory per idle connection: N AMQP connections (one socket each, one channel open)
#      opened by bench/idle_connections.py and held, broker RSS before and after (first, on
#      freshly started brokers);
#   2. a backlog of ~1 M persistent 1 KiB messages in a durable queue (no consumer): the
#      broker's RSS with it (Warren restarted first, so that it starts from scratch);
#   3. the throughput and latency scenarios of SCENARIOS below, ROUNDS times (the latency
#      probes LATENCY_ROUNDS times: a round's p99 moves more from round to round than a
#      throughput does), Warren and RabbitMQ alternately (the order flips each round).
# Prints one table of medians with Warren/RabbitMQ ratios and the issue's targets, and
# stops everything it started, also on failure or Ctrl-C.
#
#   bench/compare.sh                              # DURATION=10 s per run, ROUNDS=3,
#                                                 # LATENCY_ROUNDS=7
#   DURATION=20 ROUNDS=5 bench/compare.sh
#   RABBITMQ=0 bench/compare.sh                   # Warren only
#   BACKLOG=0 IDLE_CONNECTIONS= bench/compare.sh  # throughput scenarios only
#   ONLY="publish-only fanout-10" bench/compare.sh
#
# Knobs: DURATION, ROUNDS, LATENCY_ROUNDS, RABBITMQ, OUT (default target/bench/compare-<date>),
# ONLY (scenario names), IDLE_CONNECTIONS (default "1000 10000"; empty skips),
# BACKLOG (1/0), BACKLOG_MESSAGES (default 1000000). Needs python3, and pika
# (tests/pika/requirements.txt) for the backlog part.
#
#   RABBITMQ=1 ONLY=none BACKLOG=0 bench/compare.sh   # idle connections only (both brokers)

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
LATENCY_ROUNDS=${LATENCY_ROUNDS:-7}
RABBITMQ=${RABBITMQ:-1}
OUT=${OUT:-$ROOT/target/bench/compare-$(date +%Y%m%d-%H%M%S)}
ONLY=${ONLY:-}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS-1000 10000}
BACKLOG=${BACKLOG:-1}
BACKLOG_MESSAGES=${BACKLOG_MESSAGES:-1000000}
RABBITMQ_BIN=/usr/lib/rabbitmq/bin
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# name|perf options. Bodies are 16 bytes unless --size says otherwise; manual acks with
# prefetch 1000 unless stated (perf's defaults).
SCENARIOS=(
  "publish-only|--producers 1 --consumers 0"
  "pubsub-ack|--producers 1 --consumers 1 --prefetch 1000"
  "pubsub-autoack|--producers 1 --consumers 1 --autoack"
  "persistent-c1000|--producers 1 --consumers 1 --persistent --durable --confirm 1000"
  "persistent-c1|--producers 1 --consumers 1 --persistent --durable --confirm 1"
  "fanout-10|--producers 1 --fanout 10 --consumers 10"
  "queues-100|--queues 100 --producers 100 --consumers 100 --connections 10"
  "1MiB|--producers 1 --consumers 1 --size 1048576 --prefetch 100"
  "latency-1000|--producers 1 --consumers 1 --rate 1000"
  # The same probe with the load generator on one worker thread instead of one per core
  # (informational: perf used to wake its second thread for every message, which weighed in
  # both brokers' tails; since it stopped, both probes measure the same. See
  # docs/benchmarks.md, "Latency at 1,000 msg/s: the load generator was in the way").
  "latency-1000-1t|--producers 1 --consumers 1 --rate 1000"
)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v python3 >/dev/null || die "python3 is needed to tabulate the results"
HAVE_PIKA=1
python3 -c 'import pika' 2>/dev/null || HAVE_PIKA=
# Every idle connection is a descriptor in the broker (and in the opener): the brokers
# started below inherit the soft limit, raised here as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "could not raise ulimit -n above $(ulimit -n)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warren-compare.XXXXXX")
WARREN_PID=
RABBIT_PID=
RABBIT_STARTED=
EPMD_PID=
FILL_PID=

cleanup() {
  local status=$?
  set +e
  if [[ -n $FILL_PID ]] && kill -0 "$FILL_PID" 2>/dev/null; then
    kill -INT "$FILL_PID"; sleep 1; kill -KILL "$FILL_PID" 2>/dev/null
  fi
  stop_brokers
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel: $(uname -r)"
  echo "settings: DURATION=$DURATION ROUNDS=$ROUNDS LATENCY_ROUNDS=$LATENCY_ROUNDS IDLE_CONNECTIONS='$IDLE_CONNECTIONS' BACKLOG=$BACKLOG BACKLOG_MESSAGES=$BACKLOG_MESSAGES"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
  log "warning: load average $(cut -d' ' -f1 /proc/loadavg): something else is using the CPU; results will be noisy"
fi
log "building release binaries"
cargo build --release -p warren -p warren-client --bin warren --bin warren-cli
WARREN=$TARGET_DIR/release/warren
CLI=$TARGET_DIR/release/warren-cli

# --- Warren -----------------------------------------------------------------------------
WARREN_STARTS=0
start_warren() { # a fresh Warren: new port, new data dir, its own log
  WARREN_STARTS=$((WARREN_STARTS + 1))
  WARREN_PORT=$(free_port)
  mkdir -p "$WORK/warren-data-$WARREN_STARTS"
  "$WARREN" --bind 127.0.0.1 --port "$WARREN_PORT" --http-port 0 \
    --data-dir "$WORK/warren-data-$WARREN_STARTS" >"$WORK/warren-$WARREN_STARTS.log" 2>&1 &
  WARREN_PID=$!
  wait_for_port "$WARREN_PORT" "$WARREN_PID" Warren
  log "Warren pid $WARREN_PID on 127.0.0.1:$WARREN_PORT"
}
stop_warren() {
  kill -TERM "$WARREN_PID"
  for _ in $(seq 50); do kill -0 "$WARREN_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$WARREN_PID" 2>/dev/null || true
  wait "$WARREN_PID" 2>/dev/null || true
}
start_warren

# --- RabbitMQ ---------------------------------------------------------------------------
start_rabbitmq warrencompare

BROKERS=(warren)
[[ -n $RABBIT_PID ]] && BROKERS+=(rabbitmq)

broker_port() { if [[ $1 == warren ]]; then echo "$WARREN_PORT"; else echo "$RABBIT_PORT"; fi; }
broker_pid() { if [[ $1 == warren ]]; then echo "$WARREN_PID"; else echo "$RABBIT_PID"; fi; }
broker_url() { echo "amqp://guest:guest@127.0.0.1:$(broker_port "$1")/%2f"; }

# --- 1. Memory per idle connection -------------------------------------------------------
# bench/idle_connections.py waits for the broker's RSS to settle, opens N connections one
# after the other (one socket each, handshake by hand with heartbeats off so that nothing
# is sent while they are held, one channel open as a client would), waits 5 s, reads the
# broker's VmRSS and closes them. KiB per connection = (RSS with them - RSS before) / N.
idle() { # broker count
  local broker=$1 count=$2
  log "idle connections: $count on $broker"
  python3 "$ROOT/bench/idle_connections.py" 127.0.0.1 "$(broker_port "$broker")" "$count" \
    "$(broker_pid "$broker")" "$broker" \
    >"$OUT/idle.$count.$broker.json" 2>"$OUT/idle.$count.$broker.log" ||
    log "idle connections ($count) on $broker failed (see $OUT/idle.$count.$broker.log)"
}

if [[ -n $IDLE_CONNECTIONS ]]; then
  idle_runs=0
  for count in $IDLE_CONNECTIONS; do
    if (( count + 100 > $(ulimit -n) )); then # the brokers' own limit, inherited from here
      log "skipping $count idle connections: ulimit -n is $(ulimit -n)"
      continue
    fi
    # Each count on a fresh Warren: one whose allocator still holds the memory of the
    # previous count's closed connections would need less new memory for the next.
    if (( idle_runs > 0 )); then stop_warren; start_warren; fi
    idle_runs=$((idle_runs + 1))
    for broker in "${BROKERS[@]}"; do idle "$broker" "$count"; done
  done
fi

# --- 2. Backlog: RSS with ~1 M queued 1 KiB persistent messages --------------------------
# perf fills a durable queue (2 producers, 1000 confirms outstanding each, no consumer)
# until a pika poller sees BACKLOG_MESSAGES queued, then is stopped with SIGINT; the RSS is
# read once the queue depth has settled. perf has no message-count limit, so the count
# overshoots a little (the poller looks every 0.2 s); the table gives the exact count.
backlog() { # broker
  local broker=$1 pid url file
  pid=$(broker_pid "$broker") url=$(broker_url "$broker")
  file="$OUT/backlog.$broker.json"
  log "backlog: ~$BACKLOG_MESSAGES persistent 1 KiB messages on $broker"
  local rss_before
  rss_before=$(rss_kib "$pid")
  local started=$SECONDS
  "$CLI" perf --url "$url" --queue bench-backlog --durable --persistent --producers 2 \
    --consumers 0 --confirm 1000 --size 1024 --duration 0 --json \
    >"$OUT/backlog.$broker.perf.json" 2>"$OUT/backlog.$broker.progress" &
  FILL_PID=$!
  python3 - "$url" "$BACKLOG_MESSAGES" "$FILL_PID" "$pid" "$rss_before" "$broker" \
    >"$file" 2>"$OUT/backlog.$broker.poller.log" <<'PY' || log "backlog on $broker failed (see $OUT/backlog.$broker.poller.log)"
import json, os, signal, sys, time
import pika

url, target, fill_pid, broker_pid, rss_before, broker = sys.argv[1:7]
target, fill_pid, broker_pid = int(target), int(fill_pid), int(broker_pid)

def rss_kib():
    with open(f"/proc/{broker_pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def depth(ch):
    return ch.queue_declare("bench-backlog", durable=True, passive=True).method.message_count

params = pika.URLParameters(url)
params.heartbeat = 0
start = time.monotonic()
conn = None
while conn is None:  # the queue exists once perf has declared it
    try:
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        depth(ch)
    except pika.exceptions.ChannelClosedByBroker:
        conn.close(); conn = None; time.sleep(0.2)
    if time.monotonic() - start > 60:
        sys.exit("the queue was not declared within 60 s")
n = 0
while n < target:
    time.sleep(0.2)
    n = depth(ch)
    if time.monotonic() - start > 900:
        break
fill_s = time.monotonic() - start
os.kill(fill_pid, signal.SIGINT)
# Wait for the depth to stop moving (the last confirms, the fill's connection closing).
last = -1
while n != last:
    last = n
    time.sleep(1)
    n = depth(ch)
time.sleep(2)
rss = rss_kib()
t0 = time.monotonic()
ch.queue_delete("bench-backlog")
delete_s = time.monotonic() - t0
conn.close()
time.sleep(2)
print(json.dumps({
    "broker": broker, "messages": n, "fill_s": fill_s, "rss_before_kib": int(rss_before),
    "rss_kib": rss, "rss_after_delete_kib": rss_kib(), "delete_s": delete_s,
}))
PY
  # Normally the poller has already stopped perf; if the poller failed, this does.
  kill -INT "$FILL_PID" 2>/dev/null || true
  wait "$FILL_PID" 2>/dev/null || log "backlog fill on $broker: perf exited with status $?"
  FILL_PID=
  log "backlog on $broker took $((SECONDS - started)) s: $(cat "$file" 2>/dev/null)"
}

if [[ $BACKLOG == 1 && -n $HAVE_PIKA ]]; then
  # Warren's RSS is an absolute target here: measure it on a freshly started Warren, not
  # one whose allocator still holds the memory of 10,000 closed connections. (RabbitMQ
  # keeps running; its "RSS before" column shows where it started from.)
  if [[ -n $IDLE_CONNECTIONS ]]; then stop_warren; start_warren; fi
  for broker in "${BROKERS[@]}"; do backlog "$broker"; done
elif [[ $BACKLOG == 1 ]]; then
  log "python3 has no pika: skipping the backlog scenario"
fi

# --- 3. Throughput and latency -----------------------------------------------------------
# On fresh brokers: a node that has just held 10,000 connections or a million messages (and
# is still giving that memory back) is not the node the throughput is about.
if (( ROUNDS > 0 )) && [[ -n $IDLE_CONNECTIONS || $BACKLOG == 1 ]]; then
  stop_warren
  start_warren
  restart_rabbitmq warrencompare
fi
run_one() { # broker scenario-name options round
  local broker=$1 name=$2 options=$3 round=$4
  local file="$OUT/$name.$broker.$round.json" topology
  # Names of their own per run: --queue for one queue, a pattern (and an exchange) for many.
  case $options in
    *--fanout*) topology="--queue-pattern bench-$name-$round-%d --exchange bench-$name-$round" ;;
    *--queues*) topology="--queue-pattern bench-$name-$round-%d" ;;
    *) topology="--queue bench-$name-$round" ;;
  esac
  local generator=("$CLI")
  [[ $name == *-1t ]] && generator=(env TOKIO_WORKER_THREADS=1 "$CLI")
  log "round $round: $name on $broker"
  # A stall must not hang the whole run: perf gets a generous timeout, and a failed run is
  # logged, left out of the table and reported at the end.
  # shellcheck disable=SC2086 # $options and $topology are lists of flags
  if ! timeout --signal=INT --kill-after=30 $((DURATION * 3 + 120)) \
    "${generator[@]}" perf --url "$(broker_url "$broker")" $topology $options \
    --duration "$DURATION" --delete-queues --broker-pid "$(broker_pid "$broker")" --json \
    >"$file.tmp" 2>"$OUT/$name.$broker.$round.progress"; then
    log "round $round: $name on $broker FAILED (see $OUT/$name.$broker.$round.progress)"
    echo "$name $broker round $round: $(tail -1 "$OUT/$name.$broker.$round.progress")" >>"$OUT/failures.txt"
    rm -f "$file.tmp"
    return 0
  fi
  mv "$file.tmp" "$file"
}

SELECTED=()
for scenario in "${SCENARIOS[@]}"; do
  if [[ -z $ONLY || " $ONLY " == *" ${scenario%%|*} "* ]]; then SELECTED+=("$scenario"); fi
done
# How many rounds a scenario ("name|options") gets.
rounds_for() { if [[ $1 == latency-* ]]; then echo "$LATENCY_ROUNDS"; else echo "$ROUNDS"; fi; }
LAST_ROUND=0
for scenario in "${SELECTED[@]}"; do
  n=$(rounds_for "$scenario")
  if (( n > LAST_ROUND )); then LAST_ROUND=$n; fi
done
for round in $(seq "$LAST_ROUND"); do
  order=("${BROKERS[@]}")
  if (( round % 2 == 0 && ${#BROKERS[@]} == 2 )); then order=(rabbitmq warren); fi
  for scenario in "${SELECTED[@]}"; do
    (( round <= $(rounds_for "$scenario") )) || continue
    for broker in "${order[@]}"; do
      run_one "$broker" "${scenario%%|*}" "${scenario#*|}" "$round"
    done
  done
done

for broker in "${BROKERS[@]}"; do
  pid=$(broker_pid "$broker")
  kill -0 "$pid" 2>/dev/null || { log "$broker (pid $pid) is no longer running!"; echo "$broker died during the run" >>"$OUT/failures.txt"; continue; }
  echo "$broker RSS at the end: $(( $(rss_kib "$pid") / 1024 )) MiB" >>"$OUT/machine.txt"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# --- Tables -----------------------------------------------------------------------------
printf '%s\n' "${SELECTED[@]}" >"$OUT/scenarios.txt"
python3 - "$OUT" >"$OUT/table.md" <<'PY'
import glob, json, os, statistics, sys

out = sys.argv[1]
names = [line.split("|")[0] for line in open(f"{out}/scenarios.txt").read().splitlines() if line]

# What each scenario's msg/s counts, and issue 7's target for it (Warren ÷ RabbitMQ).
def metric(name):
    if name == "publish-only":
        return "published", lambda r: r["publish_rate"]
    if name.startswith("persistent"):
        return "confirmed", lambda r: r["confirm_rate"]
    if name == "fanout-10":
        return "delivered (10 per publish)", lambda r: r["consume_rate"]
    return "consumed", lambda r: r["consume_rate"]

TARGETS = {  # name: (minimum throughput ratio, or None)
    "publish-only": 5, "pubsub-ack": 5, "fanout-10": 5, "persistent-c1000": 3, "1MiB": 1.5,
}

def runs(name, broker):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}.{broker}.*.json"))]

def med(rs, key):
    vals = []
    for r in rs:
        try:
            v = key(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None

def rate(v):
    return "–" if v is None else f"{v:,.0f}"

def ms(v):
    return "–" if v is None else (f"{v / 1000:.1f}" if v >= 10000 else f"{v / 1000:.2f}")

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}×"

def lat(rs, field):
    ps = [med(rs, lambda x: x[field][p]) for p in ("p50", "p99", "p999")]
    return "–" if ps[0] is None else " / ".join(ms(p) for p in ps)

def p99_ratio(w, r, field):
    return ratio(med(w, lambda x: x[field]["p99"]), med(r, lambda x: x[field]["p99"]))

def cpu_per_million(rs, key):
    # Broker CPU seconds (utime + stime from /proc/<pid>/stat over the measured window)
    # per million of the messages the scenario's msg/s counts.
    return med(rs, lambda r: r["cpu"]["broker_s"] / (key(r) * r["duration_s"]) * 1e6
               if key(r) else None)

def cpu_split(rs):
    tool = med(rs, lambda r: r["cpu"]["tool_core_pct"])
    broker = med(rs, lambda r: r["cpu"]["broker_core_pct"])
    if tool is None or broker is None:
        return "–", None
    below = all(r["cpu"]["tool_below_broker"] for r in rs)
    return f"{tool:.0f} / {broker:.0f}" + ("" if below else " ⚠"), below

have_rabbit = any(runs(n, "rabbitmq") for n in names) or glob.glob(f"{out}/*.rabbitmq.json")
verdicts, warnings = [], []
measured = [n for n in names if runs(n, "warren") or runs(n, "rabbitmq")]
names = measured

if names:
    print("### Throughput and latency\n")
    print("| scenario | counts | Warren msg/s | RabbitMQ msg/s | W ÷ R | target | Warren e2e p50 / p99 / p99.9 ms | RabbitMQ e2e p50 / p99 / p99.9 ms | broker CPU s per M msgs W / R | CPU % perf / broker (W) | CPU % perf / broker (R) |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for n in names:
        w, r = runs(n, "warren"), runs(n, "rabbitmq")
        what, key = metric(n)
        wr, rr = med(w, key), med(r, key)
        x = ratio(wr, rr)
        target = "–"
        if n in TARGETS:
            t = TARGETS[n]
            target = f"≥ {t}×" + ("" if x is None else (" met" if x >= t else f" **missed** ({x / t:.0%} of it)"))
            if x is not None:
                verdicts.append((n, f"W ÷ R ≥ {t}×", f"{x:.2f}×", x >= t))
        if n.startswith("latency-1000"):
            lr, read_lr = (p99_ratio(w, r, field) for field in ("latency_us", "read_latency_us"))
            read = "" if read_lr is None else f" ({read_lr:.2f} counted to perf's read)"
            if n == "latency-1000":
                target = "p99 ≤ ½ R's" + ("" if lr is None else (f": {lr:.2f} met" if lr <= 0.5 else f": {lr:.2f} **missed**")) + read
                if lr is not None:
                    verdicts.append((n, "p99 W ÷ R ≤ 0.5", f"{lr:.2f}", lr <= 0.5))
            elif lr is not None:
                target = f"(p99 W ÷ R {lr:.2f}{read}; generator on 1 thread, not the target's run)"
        wc, rc = cpu_per_million(w, key), cpu_per_million(r, key)
        (wsplit, wbelow), (rsplit, rbelow) = cpu_split(w), cpu_split(r)
        for broker, below in (("Warren", wbelow), ("RabbitMQ", rbelow)):
            if below is False:
                warnings.append(f"{n} ({broker})")
        print(f"| {n} | {what} | {rate(wr)} | {rate(rr)} | {fmt_ratio(x)} | {target} | {lat(w, 'latency_us')} | {lat(r, 'latency_us')} "
              f"| {'–' if wc is None else f'{wc:.1f}'} / {'–' if rc is None else f'{rc:.1f}'} | {wsplit} | {rsplit} |")

    def rounds_of(ns):
        return max((len(runs(n, "warren")) for n in ns), default=0)
    throughput_rounds = rounds_of([n for n in names if not n.startswith("latency-")])
    latency_rounds = rounds_of([n for n in names if n.startswith("latency-")])
    counted = " and ".join(
        f"{k} round(s) for the {what}"
        for k, what in ((throughput_rounds, "throughput scenarios"), (latency_rounds, "latency probes"))
        if k
    )
    print()
    print(f"Medians of {counted}. e2e: publish to the delivery reaching the consumer's socket "
          "(the kernel's receive timestamp; perf's own wake-up is not counted against either broker), "
          "measured by perf's consumers. "
          "CPU %: of one core over the measured window, load generator (perf, all threads) / broker; "
          "⚠ marks a scenario where perf used as much CPU as the broker or more in at least one round.")

    probes = [n for n in names if n.startswith("latency-1000")]
    if probes:
        print("\nThe latency probes counted both ways, p50 / p99 / p99.9 ms: to the delivery reaching "
              "the consumer's socket, and to perf reading it:\n")
        print("| scenario | Warren to the socket | Warren to the read | RabbitMQ to the socket | RabbitMQ to the read | p99 W ÷ R socket / read |")
        print("|---|---:|---:|---:|---:|---:|")
        for n in probes:
            w, r = runs(n, "warren"), runs(n, "rabbitmq")
            ratios = [p99_ratio(w, r, f) for f in ("latency_us", "read_latency_us")]
            shown = " / ".join("–" if x is None else f"{x:.2f}" for x in ratios)
            print(f"| {n} | {lat(w, 'latency_us')} | {lat(w, 'read_latency_us')} | {lat(r, 'latency_us')} | {lat(r, 'read_latency_us')} | {shown} |")

    confirm = [n for n in names if runs(n, "warren") and runs(n, "warren")[0].get("confirm_latency_us")]
    if confirm:
        print("\nPublish-to-confirm latency, p50 / p99 / p99.9 ms:\n")
        print("| scenario | Warren | RabbitMQ |")
        print("|---|---:|---:|")
        for n in confirm:
            print(f"| {n} | {lat(runs(n, 'warren'), 'confirm_latency_us')} | {lat(runs(n, 'rabbitmq'), 'confirm_latency_us')} |")

def one(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None

idle = sorted({int(os.path.basename(p).split(".")[1]) for p in glob.glob(f"{out}/idle.*.json")})
skipped = []
if idle:
    print("\n### Memory per idle connection\n")
    print("| connections | Warren KiB per connection | RabbitMQ KiB per connection | W ÷ R | target | Warren RSS before → with them MiB | RabbitMQ RSS before → with them MiB |")
    print("|---:|---:|---:|---:|---|---:|---:|")
    for n in idle:
        w, r = one(f"{out}/idle.{n}.warren.json"), one(f"{out}/idle.{n}.rabbitmq.json")
        wk = w and w["kib_per_connection"]
        rk = r and r["kib_per_connection"]
        # A broker that gave back more memory than the connections took leaves no ratio.
        x = ratio(wk, rk) if rk is not None and rk > 0 else None
        t = "≤ 0.1" + ("" if x is None else (" met" if x <= 0.1 else " **missed**"))
        if x is not None:
            verdicts.append((f"idle-{n}", "KiB/conn W ÷ R ≤ 0.1", f"{x:.3f}", x <= 0.1))
        if w is None or r is None:  # why a count did not run (the helper's last words)
            for broker, d in (("Warren", w), ("RabbitMQ", r)):
                if d is None and os.path.exists(f"{out}/idle.{n}.{broker.lower()}.log"):
                    lines = open(f"{out}/idle.{n}.{broker.lower()}.log").read().strip().splitlines()
                    skipped.append(f"{n:,} idle connections on {broker}: {lines[-1] if lines else 'failed'}")
        span = lambda d: "–" if not d else f"{d['rss_before_kib'] / 1024:.0f} → {d['rss_kib'] / 1024:.0f}"
        print(f"| {n:,} | {'–' if wk is None else f'{wk:.1f}'} | {'–' if rk is None else f'{rk:.1f}'} | {fmt_ratio(x)} | {t} | {span(w)} | {span(r)} |")

for line in skipped:
    print(f"\nNot measured: {line}")

backlog = [b for b in (one(f"{out}/backlog.warren.json"), one(f"{out}/backlog.rabbitmq.json")) if b]
if backlog:
    print("\n### RSS with a backlog of 1 KiB persistent messages (durable queue, no consumer)\n")
    print("| broker | messages queued | fill time s | RSS before MiB | RSS with the backlog MiB | RSS after deleting the queue MiB | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for b in backlog:
        rss_mb = b["rss_kib"] * 1024 / 1e6
        t = "–"
        if b["broker"] == "warren":
            t = "≤ 100 MB" + (" met" if rss_mb <= 100 else f" **missed** ({rss_mb:.0f} MB)")
            verdicts.append(("backlog", "Warren RSS ≤ 100 MB", f"{rss_mb:.0f} MB", rss_mb <= 100))
        print(f"| {b['broker']} | {b['messages']:,} | {b['fill_s']:.0f} | {b['rss_before_kib'] / 1024:.0f} | {b['rss_kib'] / 1024:.0f} | {b['rss_after_delete_kib'] / 1024:.0f} | {t} |")

if verdicts:
    print("\n### Against issue 7's targets\n")
    for n, what, got, ok in verdicts:
        print(f"- {n}: {what}: {got} — {'met' if ok else 'MISSED'}")
print()
if not names:
    pass
elif warnings:
    print("Load generator: perf used at least as much CPU as the broker in " + ", ".join(warnings) +
          " — there the numbers may measure perf rather than the broker.")
else:
    print("Load generator: perf used less CPU than the broker in every run of every scenario.")
if os.path.exists(f"{out}/failures.txt"):
    print("\nFailed runs (left out of the medians):\n")
    for line in open(f"{out}/failures.txt"):
        print(f"- {line.strip()}")
if not have_rabbit:
    print("\nRabbitMQ was not available: Warren only.")
PY
cat "$OUT/machine.txt" "$OUT/table.md"
log "results in $OUT"
