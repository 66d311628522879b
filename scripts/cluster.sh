#!/usr/bin/env bash
# A local Riptide cluster for trying the API with curl.
#
#   scripts/cluster.sh start [N] [--clean]   start N nodes (default 3) in the background
#   scripts/cluster.sh stop                  stop exactly the nodes this script started
#   scripts/cluster.sh status                show each node's /status
#   scripts/cluster.sh start-node I          restart node I (e.g. after kill -9) from its data dir
#
# Node i listens for clients on 127.0.0.1:$((CLIENT_PORT_BASE + i)) and for peers on
# 127.0.0.1:$((PEER_PORT_BASE + i)); data, logs and PID files live under $CLUSTER_DIR/<i>/.
# Environment: CLUSTER_DIR (default <repo>/.cluster), CLIENT_PORT_BASE (default 8000),
# PEER_PORT_BASE (default 7000), RIPTIDE_SERVER (binary; default target/release/riptide-server,
# built when missing), RIPTIDE_ARGS (extra flags for every node).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_dir="${CLUSTER_DIR:-$repo/.cluster}"
client_base="${CLIENT_PORT_BASE:-8000}"
peer_base="${PEER_PORT_BASE:-7000}"
server="${RIPTIDE_SERVER:-$repo/target/release/riptide-server}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/lib/nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/nodes.sh"
# Nodes outlive this script: they run until `stop`.
node_launcher=(nohup)
declare -A client_port=() peer_port=()

# The ports of a started cluster are remembered, so status and start-node need no environment.
if [[ "${1:-}" != start && -f "$cluster_dir/ports" ]]; then
    # shellcheck disable=SC1091
    source "$cluster_dir/ports"
fi

# Prints the node ids recorded by the last start.
started_nodes() {
    if [[ -f "$cluster_dir/nodes" ]]; then cat "$cluster_dir/nodes"; fi
}

port_taken() {
    # Bash's /dev/tcp connects: success means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_alive() {
    local pidfile="$1" pid state
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    kill -0 "$pid" 2>/dev/null || return 1
    # A killed process not yet reaped by its parent is a zombie: dead for our purposes.
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# Starts node $1 of an $2-node cluster in the background and records its PID.
launch_node() {
    local i="$1" n="$2" j
    for ((j = 1; j <= n; j++)); do
        client_port[$j]=$((client_base + j))
        peer_port[$j]=$((peer_base + j))
    done
    mkdir -p "$cluster_dir/$i"
    # shellcheck disable=SC2086
    start_riptide_node "$server" "$i" "$n" "$cluster_dir/$i/data" "$cluster_dir/$i/node.log" \
        ${RIPTIDE_ARGS:-}
    echo $! > "$cluster_dir/$i/pid"
}

cmd_start() {
    local n=3 clean=0
    for arg in "$@"; do
        case "$arg" in
            --clean) clean=1 ;;
            ''|*[!0-9]*) die "usage: cluster.sh start [N] [--clean]" ;;
            *) n="$arg" ;;
        esac
    done
    (( n >= 1 )) || die "N must be at least 1"
    for id in $(started_nodes); do
        pid_alive "$cluster_dir/$id/pid" && die "node $id is still running (pid $(cat "$cluster_dir/$id/pid")); run 'scripts/cluster.sh stop' first"
    done
    if [[ ! -x "$server" ]]; then
        echo "building riptide-server (release)..." >&2
        (cd "$repo" && cargo build --release -p riptide-server >&2) || die "build failed"
    fi
    for ((i = 1; i <= n; i++)); do
        port_taken $((client_base + i)) && die "port $((client_base + i)) is taken (set CLIENT_PORT_BASE)"
        port_taken $((peer_base + i)) && die "port $((peer_base + i)) is taken (set PEER_PORT_BASE)"
    done
    if (( clean )); then
        rm -rf "$cluster_dir"
    fi
    local previous
    previous="$(started_nodes | wc -l)"
    if (( previous > 0 && previous != n )); then
        die "$cluster_dir holds a $previous-node cluster; membership changes are not supported (use --clean to start afresh)"
    fi
    mkdir -p "$cluster_dir"
    : > "$cluster_dir/nodes"
    printf 'client_base=%s\npeer_base=%s\n' "$client_base" "$peer_base" > "$cluster_dir/ports"
    for ((i = 1; i <= n; i++)); do
        launch_node "$i" "$n"
        echo "$i" >> "$cluster_dir/nodes"
    done
    # Wait (up to 30 s) until some node reports a leader.
    local deadline=$((SECONDS + 30))
    while :; do
        for ((i = 1; i <= n; i++)); do
            pid_alive "$cluster_dir/$i/pid" || die "node $i exited; see $cluster_dir/$i/node.log"
        done
        if curl -sf "http://127.0.0.1:$((client_base + 1))/status" 2>/dev/null | grep -q '"leader":[0-9]'; then
            break
        fi
        (( SECONDS < deadline )) || die "no leader after 30 s; see $cluster_dir/*/node.log"
        sleep 0.1
    done
    for ((i = 1; i <= n; i++)); do
        echo "http://127.0.0.1:$((client_base + i))"
    done
}

cmd_stop() {
    local any=0
    for id in $(started_nodes); do
        local pidfile="$cluster_dir/$id/pid"
        if pid_alive "$pidfile"; then
            local pid
            pid="$(cat "$pidfile")"
            kill -TERM "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            echo "stopped node $id (pid $pid)"
            any=1
        fi
        rm -f "$pidfile"
    done
    (( any )) || echo "no running nodes"
}

cmd_start_node() {
    local id="${1:-}" n
    n="$(started_nodes | wc -l)"
    (( n > 0 )) || die "no cluster started from $cluster_dir"
    [[ "$id" =~ ^[0-9]+$ ]] && (( id >= 1 && id <= n )) || die "usage: cluster.sh start-node I (1..$n)"
    pid_alive "$cluster_dir/$id/pid" && die "node $id is running (pid $(cat "$cluster_dir/$id/pid"))"
    port_taken $((client_base + id)) && die "port $((client_base + id)) is taken"
    launch_node "$id" "$n"
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$((client_base + id))/status" >/dev/null 2>&1; do
        pid_alive "$cluster_dir/$id/pid" || die "node $id exited; see $cluster_dir/$id/node.log"
        (( SECONDS < deadline )) || die "node $id does not answer after 30 s"
        sleep 0.1
    done
    echo "http://127.0.0.1:$((client_base + id))"
}

cmd_status() {
    local ids
    ids="$(started_nodes)"
    [[ -n "$ids" ]] || die "no cluster started from $cluster_dir"
    for id in $ids; do
        local url="http://127.0.0.1:$((client_base + id))"
        if pid_alive "$cluster_dir/$id/pid"; then
            echo "node $id ($url): $(curl -s --max-time 2 "$url/status" || echo unreachable)"
        else
            echo "node $id ($url): not running"
        fi
    done
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    start-node) shift; cmd_start_node "$@" ;;
    *) die "usage: cluster.sh start [N] [--clean] | stop | status | start-node I" ;;
esac
