#!/usr/bin/env bash
# Three courier replicas behind Debian's haproxy (apt-get install haproxy),
# with the repository's haproxy.cfg, on this machine. Ctrl-C stops them all:
# the replicas drain first, as on SIGTERM.
#
#   scripts/replicas.sh
#   go run . load -url http://127.0.0.1:9000        # in another terminal
#
# Without MESSAGEAPP_URL the replicas share one `courier messageapp`
# simulator on port 3000 (MESSAGEAPP_PROFILE picks its profile; default
# flap). The balancer listens on LISTEN (default 127.0.0.1:9000), the
# replicas c1, c2, c3 on ports 9101, 9102, 9103. Each replica keeps its own
# spool (what Ctrl-C leaves undelivered, taken back at the next run) in
# $SPOOL_DIR/c1, c2, c3 (default: $TMPDIR/courier-spool). Any other courier
# variable set here (QUEUE_MAX_SIZE, LOG_LEVEL, ...) reaches every replica.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v haproxy >/dev/null 2>&1; then
  echo "replicas.sh: haproxy not found; install it with: apt-get install haproxy" >&2
  exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-replicas.XXXXXX")
go build -o "$dir/courier" .

# Each child gets its own session, so Ctrl-C reaches only this script,
# which then sends every child one SIGTERM.
pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping: the replicas drain their queues (SHUTDOWN_TIMEOUT), logs in $dir"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

# up waits until something listens on port.
up() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "replicas.sh: nothing listens on port $1; see the logs in $dir" >&2
  exit 1
}

if [ -z "${MESSAGEAPP_URL:-}" ]; then
  PORT=3000 setsid "$dir/courier" messageapp >"$dir/messageapp.log" 2>&1 &
  pids+=($!)
  up 3000
  export MESSAGEAPP_URL=http://127.0.0.1:3000/message
fi
spool=${SPOOL_DIR:-${TMPDIR:-/tmp}/courier-spool}
for i in 1 2 3; do
  port=$((9100 + i))
  REPLICA=c$i PORT=$port SPOOL_DIR="$spool/c$i" setsid "$dir/courier" >"$dir/c$i.log" 2>&1 &
  pids+=($!)
  export "COURIER_$i=127.0.0.1:$port"
done
for i in 1 2 3; do up $((9100 + i)); done

export LISTEN=${LISTEN:-127.0.0.1:9000}
setsid haproxy -f haproxy.cfg -db &
pids+=($!)
up "${LISTEN##*:}"

cat <<EOF
balancer:  http://$LISTEN   (try: go run . load -url http://$LISTEN)
replicas:  c1 http://127.0.0.1:9101  c2 http://127.0.0.1:9102  c3 http://127.0.0.1:9103
messageapp: $MESSAGEAPP_URL
logs:      $dir (HAProxy's UP/DOWN lines below); Ctrl-C stops everything
spools:    $spool/c1, c2, c3
EOF
# Until Ctrl-C, or until one of them exits.
wait -n "${pids[@]}" || true
