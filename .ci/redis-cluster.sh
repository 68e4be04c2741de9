#!/usr/bin/env bash
# A local 6-node Redis Cluster (3 primaries, 3 replicas) on loopback, for the cluster tests.
#
#   bash .ci/redis-cluster.sh start [FIRST_PORT]   start it, or do nothing if it already answers cluster_state:ok
#   bash .ci/redis-cluster.sh stop  [FIRST_PORT]   shut its nodes down
#
# The nodes listen on FIRST_PORT..FIRST_PORT+5 (default 7301..7306). Each keeps its config file,
# directory and log under ${KEYGATE_CI_CACHE:-$HOME/.cache/keygate-ci}/redis-cluster/<port>
# (REDIS_CLUSTER_DIR overrides the parent folder). Nothing is saved to disk.
set -uo pipefail

command=${1:-}
first=${2:-7301}
base=${REDIS_CLUSTER_DIR:-${KEYGATE_CI_CACHE:-$HOME/.cache/keygate-ci}/redis-cluster}
host=127.0.0.1
ports=()
for i in 0 1 2 3 4 5; do ports+=($((first + i))); done

cli() { redis-cli -h "$host" -p "$1" "${@:2}"; }

# Every node answers cluster_state:ok with every slot covered, and every replica is in sync with
# its primary (a failover needs one).
healthy() {
  local port info replicas=0
  for port in "${ports[@]}"; do
    info=$(cli "$port" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q '^cluster_slots_assigned:16384' <<<"$info" || return 1
    grep -q '^cluster_slots_ok:16384' <<<"$info" || return 1
    info=$(cli "$port" info replication 2>/dev/null) || return 1
    if grep -q '^role:slave' <<<"$info"; then
      grep -q '^master_link_status:up' <<<"$info" || return 1
      replicas=$((replicas + 1))
    fi
  done
  [ "$replicas" -eq 3 ]
}

stop() {
  local port
  for port in "${ports[@]}"; do
    cli "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do cli "$port" ping >/dev/null 2>&1 || break; sleep 0.1; done
  done
}

start() {
  if healthy; then
    echo "Redis Cluster on ${ports[0]}..${ports[5]} is already up"
    return 0
  fi
  # A half-up cluster (some nodes gone, or never created) starts afresh.
  stop
  local port dir
  for port in "${ports[@]}"; do
    dir="$base/$port"
    mkdir -p "$dir" || return 1
    rm -f "$dir"/nodes-*.conf "$dir"/dump.rdb
    redis-server --port "$port" --bind "$host" --cluster-enabled yes --cluster-node-timeout 2000 \
      --cluster-config-file "nodes-$port.conf" --dir "$dir" --logfile "$dir/redis.log" \
      --save "" --appendonly no --daemonize yes || { echo "redis-server on $port did not start"; return 1; }
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do cli "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    cli "$port" ping >/dev/null 2>&1 || { echo "redis-server on $port does not answer (see $base/$port/redis.log)"; return 1; }
  done
  local nodes=()
  for port in "${ports[@]}"; do nodes+=("$host:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$base/create-${ports[0]}.log" 2>&1 \
    || { cat "$base/create-${ports[0]}.log"; return 1; }
  for _ in $(seq 1 120); do
    if healthy; then
      echo "Redis Cluster on ${ports[0]}..${ports[5]} is up"
      return 0
    fi
    sleep 0.5
  done
  echo "Redis Cluster on ${ports[0]}..${ports[5]} did not reach cluster_state:ok within 60 s"
  return 1
}

case "$command" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [FIRST_PORT]" >&2; exit 2 ;;
esac
