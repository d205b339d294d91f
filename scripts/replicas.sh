#!/usr/bin/env bash
# Three courier replicas behind Debian's haproxy (apt-get install haproxy),
# with the repository's haproxy.cfg, on this machine. Ctrl-C stops them all:
# the replicas drain first, as on SIGTERM.
#
#   scripts/replicas.sh
#   go run . load -url http://127.0.0.1:9000        # in another terminal
#
# Without MESSAGEAPP_URL the replicas share one `courier messageapp`
# simulator on MESSAGEAPP_PORT (default 3000; MESSAGEAPP_PROFILE picks its
# profile, default flap). The balancer listens on LISTEN (default
# 127.0.0.1:9000), the replicas c1, c2, c3 on the three ports of
# REPLICA_PORTS (default "9101 9102 9103"). Each replica keeps its own
# spool (what Ctrl-C leaves undelivered, taken back at the next run) in
# $SPOOL_DIR/c1, c2, c3 (default: $TMPDIR/courier-spool). A port already
# taken stops the script before anything starts, naming it; a process that
# fails later is named with the end of its log. Any other courier variable
# set here (QUEUE_MAX_SIZE, LOG_LEVEL, API_TOKENS, ...) reaches every
# replica. The replicas listen on every interface (PORT does): on a shared
# network, set API_TOKENS and send a token through the balancer, which
# passes it on:
#
#   API_TOKENS=$(openssl rand -base64 24) scripts/replicas.sh
#   go run . load -url http://127.0.0.1:9000 -token "$API_TOKENS"
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "replicas.sh: $*" >&2
  exit 1
}

if ! command -v haproxy >/dev/null 2>&1; then
  fail "haproxy not found; install it with: apt-get install haproxy"
fi
messageapp_port=${MESSAGEAPP_PORT:-3000}
read -r -a replica_ports <<<"${REPLICA_PORTS:-9101 9102 9103}"
[ "${#replica_ports[@]}" -eq 3 ] || fail "REPLICA_PORTS=\"${REPLICA_PORTS:-}\": want three ports, one per replica (c1 c2 c3), e.g. \"9101 9102 9103\""
export LISTEN=${LISTEN:-127.0.0.1:9000}

# listening reports whether something accepts connections on port.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports first: a port that is taken would make a child fail after the banner.
taken=""
[ -n "${MESSAGEAPP_URL:-}" ] || { listening "$messageapp_port" && taken+=" $messageapp_port (messageapp simulator; MESSAGEAPP_PORT)"; }
for i in 1 2 3; do
  listening "${replica_ports[i - 1]}" && taken+=" ${replica_ports[i - 1]} (replica c$i; REPLICA_PORTS)"
done
listening "${LISTEN##*:}" && taken+=" ${LISTEN##*:} (haproxy; LISTEN)"
[ -z "$taken" ] || fail "already in use on this machine:$taken; stop what holds it or choose other ports with the variable named"

dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-replicas.XXXXXX")
go build -o "$dir/courier" .

# Each child gets its own session, so Ctrl-C reaches only this script,
# which sends every child a SIGTERM: the replicas drain; Ctrl-C again, a
# second SIGTERM, and they stop draining at once, as courier does on a
# second signal. names[pid] and logs[pid] say which child a pid is and
# where its output goes.
pids=()
declare -A names logs
stopping=""
signalled() {
  if [ -z "$stopping" ]; then
    echo "stopping everything (the replicas drain their queues first, up to SHUTDOWN_TIMEOUT; Ctrl-C again to cut it short); logs in $dir"
  else
    echo "asked again: the replicas stop draining now"
  fi
  stopping=yes
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
# reap waits until every child is gone. A trapped signal interrupts wait
# (and is handled, outside any trap): then it waits again.
reap() {
  local pid
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" 2>/dev/null || true; done
  done
}
trap signalled INT TERM
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; reap' EXIT

# start runs a child in its own session, its output in log (- for this
# terminal): start name log command...
start() {
  local name=$1 log=$2
  shift 2
  if [ "$log" = - ]; then
    setsid "$@" &
  else
    setsid "$@" >"$log" 2>&1 &
  fi
  pids+=($!)
  names[$!]=$name
  logs[$!]=$log
}

# died names a child that is no longer running, with the end of its log,
# and reports whether there was one.
died() {
  local pid
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      if [ "${logs[$pid]}" = - ]; then
        echo "replicas.sh: ${names[$pid]} exited; its lines are above" >&2
      else
        echo "replicas.sh: ${names[$pid]} exited; the end of ${logs[$pid]}:" >&2
        tail -n 5 "${logs[$pid]}" | sed 's/^/  /' >&2
      fi
      return 0
    fi
  done
  return 1
}

# up waits until something listens on port, or until a child dies.
up() {
  for _ in $(seq 100); do
    if [ -n "$stopping" ]; then exit 130; fi
    if died; then exit 1; fi
    if listening "$1"; then return 0; fi
    sleep 0.1
  done
  fail "nothing listens on port $1 ($2) after 10 s; see the logs in $dir"
}

if [ -z "${MESSAGEAPP_URL:-}" ]; then
  start "messageapp simulator" "$dir/messageapp.log" env PORT="$messageapp_port" "$dir/courier" messageapp
  up "$messageapp_port" "messageapp simulator"
  export MESSAGEAPP_URL=http://127.0.0.1:$messageapp_port/message
fi
spool=${SPOOL_DIR:-${TMPDIR:-/tmp}/courier-spool}
for i in 1 2 3; do
  port=${replica_ports[i - 1]}
  start "replica c$i" "$dir/c$i.log" env REPLICA="c$i" PORT="$port" SPOOL_DIR="$spool/c$i" "$dir/courier"
  export "COURIER_$i=127.0.0.1:$port"
done
for i in 1 2 3; do up "${replica_ports[i - 1]}" "replica c$i"; done

# HAProxy's UP/DOWN lines go to this terminal.
start haproxy - haproxy -f haproxy.cfg -db
up "${LISTEN##*:}" haproxy

cat <<EOF
balancer:  http://$LISTEN   (try: go run . load -url http://$LISTEN)
replicas:  c1 http://127.0.0.1:${replica_ports[0]}  c2 http://127.0.0.1:${replica_ports[1]}  c3 http://127.0.0.1:${replica_ports[2]}
messageapp: $MESSAGEAPP_URL
logs:      $dir (HAProxy's UP/DOWN lines below); Ctrl-C stops everything
spools:    $spool/c1, c2, c3
EOF
# Until Ctrl-C, or until one of them exits: then say which, and why.
wait -n "${pids[@]}" || true
if [ -z "$stopping" ] && died; then
  signalled
fi
reap
