#!/usr/bin/env bash
# Benchmark for issue 3: persistent messages into a durable queue with publisher confirms,
# each scenario with one consumer acking, measured by `warren-cli perf`.
#
# Builds the release binaries, starts Warren on 127.0.0.1 (free port, temporary data dir)
# and, when RabbitMQ is installed or installable from the distribution's packages, a
# RabbitMQ node on 127.0.0.1 (its own port, node name, epmd port and data dir). Runs every
# scenario against Warren then RabbitMQ, alternately, ROUNDS times; prints a table of
# medians with Warren/RabbitMQ ratios and stops everything it started, also on failure.
#
#   bench/persistent.sh                       # 15 s per run, 1 round
#   DURATION=30 ROUNDS=3 bench/persistent.sh  # longer runs, medians of 3
#   RABBITMQ=0 bench/persistent.sh            # Warren only
#
# Results (one JSON summary per run, the table, broker logs) go to $OUT
# (default target/bench/persistent-<date>).

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-1}
RABBITMQ=${RABBITMQ:-1}
OUT=${OUT:-$ROOT/target/bench/persistent-$(date +%Y%m%d-%H%M%S)}
RABBITMQ_BIN=/usr/lib/rabbitmq/bin

# name|perf options. Common to all: --persistent --durable, one consumer acking each
# message with prefetch 1000.
SCENARIOS=(
  "c1000-16B|--producers 1 --confirm 1000 --size 16"
  "c1000-1KiB|--producers 1 --confirm 1000 --size 1024"
  "c1-16B|--producers 1 --confirm 1 --size 16"
  "c1-1KiB|--producers 1 --confirm 1 --size 1024"
  "4p-c100-16B|--producers 4 --confirm 100 --size 16"
  "4p-c100-1KiB|--producers 4 --confirm 100 --size 1024"
)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v python3 >/dev/null || die "python3 is needed to tabulate the results"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warren-bench.XXXXXX")
WARREN_PID=
RABBIT_PID=
RABBIT_STARTED=
EPMD_PID=

cleanup() {
  local status=$?
  set +e
  stop_brokers
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel: $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
  log "warning: load average $(cut -d' ' -f1 /proc/loadavg): something else is using the CPU; results will be noisy"
fi
log "building release binaries"
cargo build --release -p warren -p warren-client --bin warren --bin warren-cli
WARREN=$ROOT/target/release/warren
CLI=$ROOT/target/release/warren-cli

# --- Warren -----------------------------------------------------------------------------
WARREN_PORT=$(free_port)
mkdir -p "$WORK/warren-data"
"$WARREN" --bind 127.0.0.1 --port "$WARREN_PORT" --data-dir "$WORK/warren-data" \
  >"$WORK/warren.log" 2>&1 &
WARREN_PID=$!
wait_for_port "$WARREN_PORT" "$WARREN_PID" Warren
log "Warren pid $WARREN_PID on 127.0.0.1:$WARREN_PORT"

# --- RabbitMQ ---------------------------------------------------------------------------
start_rabbitmq warrenbench

BROKERS=(warren)
[[ -n $RABBIT_PID ]] && BROKERS+=(rabbitmq)

# --- Runs -------------------------------------------------------------------------------
run_one() { # broker scenario-name options round
  local broker=$1 name=$2 options=$3 round=$4 port pid
  if [[ $broker == warren ]]; then port=$WARREN_PORT pid=$WARREN_PID; else port=$RABBIT_PORT pid=$RABBIT_PID; fi
  local file="$OUT/$name.$broker.$round.json"
  log "round $round: $name on $broker"
  # shellcheck disable=SC2086 # $options is a list of flags
  "$CLI" perf --url "amqp://guest:guest@127.0.0.1:$port/%2f" \
    --queue "bench-$name-$round" --persistent --durable --consumers 1 \
    $options --duration "$DURATION" --delete-queues --broker-pid "$pid" --json \
    >"$file" 2>"$OUT/$name.$broker.$round.progress"
}

for round in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for broker in "${BROKERS[@]}"; do
      run_one "$broker" "${scenario%%|*}" "${scenario#*|}" "$round"
    done
  done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# --- Table ------------------------------------------------------------------------------
SCENARIO_NAMES=$(printf '%s\n' "${SCENARIOS[@]}" | cut -d'|' -f1 | tr '\n' ' ')
python3 - "$OUT" "$SCENARIO_NAMES" >"$OUT/table.md" <<'PY'
import glob, json, statistics, sys

out, names = sys.argv[1], sys.argv[2].split()

def runs(name, broker):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}.{broker}.*.json"))]

def med(rs, key):
    vals = [key(r) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def rate(v):
    return "–" if v is None else f"{v:,.0f}"

def ms(v):
    return "–" if v is None else (f"{v / 1000:.2f}" if v >= 100 else f"{v / 1000:.3f}")

def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"

def cpu(rs):
    tool = med(rs, lambda r: r["cpu"]["tool_core_pct"])
    broker = med(rs, lambda r: r["cpu"]["broker_core_pct"])
    if tool is None or broker is None:
        return "–"
    return f"{tool:.0f} / {broker:.0f}" + ("" if tool < broker else " ⚠")

have_rabbit = any(runs(n, "rabbitmq") for n in names)
print("| scenario | Warren confirmed msg/s | RabbitMQ confirmed msg/s | W/R | Warren confirm p50 / p99 ms | RabbitMQ confirm p50 / p99 ms | Warren consumed msg/s | RabbitMQ consumed msg/s | CPU % tool / broker (W) | CPU % tool / broker (R) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    w, r = runs(n, "warren"), runs(n, "rabbitmq")
    wc, rc = med(w, lambda x: x["confirm_rate"]), med(r, lambda x: x["confirm_rate"])
    wl = (med(w, lambda x: (x["confirm_latency_us"] or {}).get("p50")), med(w, lambda x: (x["confirm_latency_us"] or {}).get("p99")))
    rl = (med(r, lambda x: (x["confirm_latency_us"] or {}).get("p50")), med(r, lambda x: (x["confirm_latency_us"] or {}).get("p99")))
    print(f"| {n} | {rate(wc)} | {rate(rc)} | {ratio(wc, rc)} | {ms(wl[0])} / {ms(wl[1])} | {ms(rl[0])} / {ms(rl[1])} "
          f"| {rate(med(w, lambda x: x['consume_rate']))} | {rate(med(r, lambda x: x['consume_rate']))} | {cpu(w)} | {cpu(r)} |")
rounds = max((len(runs(n, "warren")) for n in names), default=0)
print()
print(f"Medians of {rounds} round(s). CPU: % of one core over the run, load generator / broker; ⚠ marks a run where the load generator used more CPU than the broker.")
if not have_rabbit:
    print("RabbitMQ was not available: Warren only.")
PY
cat "$OUT/machine.txt" "$OUT/table.md"
log "results in $OUT"
