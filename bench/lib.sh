# Shared by the bench/ scripts (sourced, not run): logging, free ports, waiting for a
# listener, and a RabbitMQ node of our own on loopback (installed from the distribution's
# packages when missing) that `stop_brokers` stops again. The sourcing script sets WORK
# (scratch dir), OUT (results dir), RABBITMQ (1/0) and RABBITMQ_BIN, and the *_PID variables
# start empty.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port pid what
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup (see $OUT/logs)"
    sleep 0.2
  done
  die "$3 did not listen on 127.0.0.1:$1 within 60 s"
}

# Runs a command in our RabbitMQ node's environment.
rabbit_env() {
  env HOME="$WORK/rabbit" \
    RABBITMQ_NODENAME="$RABBIT_NODE" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$RABBIT_PORT" \
    RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_EPMD_PORT="$EPMD_PORT" \
    RABBITMQ_MNESIA_BASE="$WORK/rabbit/mnesia" \
    RABBITMQ_LOG_BASE="$WORK/rabbit/log" \
    RABBITMQ_PID_FILE="$WORK/rabbit/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbit/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$WORK/rabbit/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$WORK/rabbit/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$WORK/rabbit/rabbitmq-env.conf" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$@"
}

# Starts a RabbitMQ node named <prefix><pid>@localhost when RABBITMQ=1 (installing the
# package if it can); sets RABBIT_PID and RABBIT_PORT, and adds its version to machine.txt.
start_rabbitmq() { # node-name-prefix
  [[ $RABBITMQ == 1 ]] || return 0
  if [[ ! -x $RABBITMQ_BIN/rabbitmq-server ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "installing rabbitmq-server from the distribution's packages"
      DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >"$WORK/apt.log" 2>&1 ||
        log "could not install rabbitmq-server (see $OUT/logs/apt.log); Warren only"
    else
      log "rabbitmq-server is not installed (and this is not root with apt-get); Warren only"
    fi
  fi
  [[ -x $RABBITMQ_BIN/rabbitmq-server ]] || return 0
  RABBIT_PORT=$(free_port)
  RABBIT_DIST_PORT=$(free_port)
  EPMD_PORT=$(free_port)
  RABBIT_NODE="$1$$@localhost"
  mkdir -p "$WORK/rabbit"
  echo '[].' >"$WORK/rabbit/enabled_plugins" # no management plugin, no plugins at all
  : >"$WORK/rabbit/rabbitmq-env.conf"
  echo "listeners.tcp.default = 127.0.0.1:$RABBIT_PORT" >"$WORK/rabbit/rabbitmq.conf"
  # Our own epmd on its own port, as our child (a node would start a daemonised one that
  # outlives it): stopped by pid at the end, and no other Erlang node is touched.
  epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$WORK/epmd.log" 2>&1 &
  EPMD_PID=$!
  wait_for_port "$EPMD_PORT" "$EPMD_PID" epmd
  RABBIT_STARTED=1
  rabbit_env setsid "$RABBITMQ_BIN/rabbitmq-server" >"$WORK/rabbitmq-stdout.log" 2>&1 &
  rabbit_env timeout 120 "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBIT_NODE" \
    wait "$WORK/rabbit/pid" --timeout 90 >"$WORK/rabbitmq-wait.log" 2>&1 ||
    die "RabbitMQ did not start (see $OUT/logs)"
  RABBIT_PID=$(cat "$WORK/rabbit/pid")
  wait_for_port "$RABBIT_PORT" "$RABBIT_PID" RabbitMQ
  RABBIT_VERSION=$(rabbit_env "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBIT_NODE" version 2>/dev/null || echo "?")
  log "RabbitMQ $RABBIT_VERSION pid $RABBIT_PID on 127.0.0.1:$RABBIT_PORT"
  echo "rabbitmq: $RABBIT_VERSION (Erlang/OTP $(erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null || echo '?'))" >>"$OUT/machine.txt"
}

# Stops our RabbitMQ node and its epmd (if started).
stop_rabbitmq() {
  if [[ -n $RABBIT_STARTED ]]; then
    log "stopping RabbitMQ"
    rabbit_env timeout 60 "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBIT_NODE" stop >/dev/null 2>&1
    [[ -z $RABBIT_PID && -f $WORK/rabbit/pid ]] && RABBIT_PID=$(cat "$WORK/rabbit/pid")
    if [[ -n $RABBIT_PID ]]; then
      for _ in $(seq 50); do kill -0 "$RABBIT_PID" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$RABBIT_PID" 2>/dev/null || true
    fi
  fi
  if [[ -n $EPMD_PID ]]; then
    kill -TERM "$EPMD_PID" 2>/dev/null
    wait "$EPMD_PID" 2>/dev/null || true
  fi
  RABBIT_STARTED= RABBIT_PID= EPMD_PID=
}

# A fresh RabbitMQ node (new ports, empty data dir): throughput is measured on a node that
# has not just held 10,000 connections or a backlog.
restart_rabbitmq() { # node-name-prefix
  [[ -n $RABBIT_STARTED ]] || return 0
  stop_rabbitmq
  rm -rf "$WORK/rabbit"
  start_rabbitmq "$1"
}

# For the exit trap: stops Warren (WARREN_PID) and our RabbitMQ node and epmd, and keeps the
# logs in $OUT/logs.
stop_brokers() {
  if [[ -n $WARREN_PID ]] && kill -0 "$WARREN_PID" 2>/dev/null; then
    log "stopping Warren (pid $WARREN_PID)"
    kill -TERM "$WARREN_PID"
    for _ in $(seq 50); do kill -0 "$WARREN_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$WARREN_PID" 2>/dev/null
    wait "$WARREN_PID" 2>/dev/null
  fi
  stop_rabbitmq
  if [[ -d $WORK ]]; then
    mkdir -p "$OUT/logs"
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null
    [[ -d $WORK/rabbit/log ]] && cp -r "$WORK/rabbit/log" "$OUT/logs/rabbitmq" 2>/dev/null
    rm -rf "$WORK"
  fi
}
