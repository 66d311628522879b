#!/usr/bin/env bash
# A local Riptide cluster for trying the API with curl.
#
#   scripts/cluster.sh start [N] [--clean]   start N nodes (default 3) in the background
#   scripts/cluster.sh stop                  stop exactly the nodes this script started
#   scripts/cluster.sh status                show each node's /status
#   scripts/cluster.sh start-node I          restart node I (e.g. after kill -9) from its data dir
#   scripts/cluster.sh add-node              start a node under the next free id, joining the cluster
#   scripts/cluster.sh remove-node I         remove node I from the configuration, then stop it
#                                            (its data dir is kept)
#   scripts/cluster.sh replace-node I        remove node I, wipe its data dir, add a new node under
#                                            a new id (the safe way to replace a node's disk)
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

# Prints the node ids recorded by the last start and by add-node (removed ones included).
started_nodes() {
    if [[ -f "$cluster_dir/nodes" ]]; then cat "$cluster_dir/nodes"; fi
}

# Prints the ids removed from the configuration by remove-node.
removed_nodes() {
    if [[ -f "$cluster_dir/removed" ]]; then cat "$cluster_dir/removed"; fi
}

is_removed() { [[ -f "$cluster_dir/removed" ]] && grep -qx "$1" "$cluster_dir/removed"; }
is_joined() { [[ -f "$cluster_dir/joined" ]] && grep -qx "$1" "$cluster_dir/joined"; }

# Prints the ids that are members (started and not removed).
member_nodes() {
    local id
    for id in $(started_nodes); do is_removed "$id" || echo "$id"; done
}

# Prints the highest id ever used.
max_id() {
    started_nodes | sort -n | tail -1
}

# Prints the client URL of a running member other than $1 (the one to send changes to).
some_member_url() {
    local id
    for id in $(member_nodes); do
        [[ "$id" == "${1:-}" ]] && continue
        if pid_alive "$cluster_dir/$id/pid"; then echo "http://127.0.0.1:$((client_base + id))"; return; fi
    done
    return 1
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

# Starts node $1 in the background with the flags $3... and records its PID; $2 is the
# highest id to give --peer flags for (ids that never joined or were removed are harmless).
launch_node() {
    local i="$1" n="$2" j
    shift 2
    for ((j = 1; j <= n; j++)); do
        client_port[$j]=$((client_base + j))
        peer_port[$j]=$((peer_base + j))
    done
    mkdir -p "$cluster_dir/$i"
    # shellcheck disable=SC2086
    start_riptide_node "$server" "$i" "$n" "$cluster_dir/$i/data" "$cluster_dir/$i/node.log" \
        "$@" ${RIPTIDE_ARGS:-}
    echo $! > "$cluster_dir/$i/pid"
}

# Restarts (or starts) node $1 the way it first started: an initial member with the initial
# configuration, a node added by add-node joining (it is not added again: its data dir names it).
relaunch_node() {
    local id="$1" n url
    n="$(max_id)"
    if is_joined "$id"; then
        # Already a member: it only asks the cluster for the members' addresses.
        url="$(some_member_url "$id")" \
            || url="http://127.0.0.1:$((client_base + $(member_nodes | grep -vx "$id" | sed -n 1p)))"
        launch_node "$id" "$n" --join "$url"
    else
        launch_node "$id" "$n" --initial-members "$(cat "$cluster_dir/initial")"
    fi
}

# Waits (up to $2 s) until node $1 answers /status.
wait_answers() {
    local id="$1" deadline=$((SECONDS + $2))
    until curl -sf "http://127.0.0.1:$((client_base + id))/status" >/dev/null 2>&1; do
        pid_alive "$cluster_dir/$id/pid" || die "node $id exited; see $cluster_dir/$id/node.log"
        (( SECONDS < deadline )) || die "node $id does not answer after $2 s"
        sleep 0.1
    done
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
    if [[ -f "$cluster_dir/nodes" && ! -f "$cluster_dir/initial" ]]; then
        # Started by a cluster.sh from before membership changes: its nodes are the initial ones.
        paste -sd, "$cluster_dir/nodes" > "$cluster_dir/initial"
    fi
    if [[ -f "$cluster_dir/initial" ]]; then
        # A cluster started before: restart its members the way each first started.
        local initial
        initial="$(tr ',' '\n' < "$cluster_dir/initial" | wc -l)"
        (( initial == n )) || die "$cluster_dir holds a cluster started with $initial nodes (use --clean to start afresh)"
        for id in $(member_nodes); do
            relaunch_node "$id"
        done
    else
        mkdir -p "$cluster_dir"
        : > "$cluster_dir/nodes"
        : > "$cluster_dir/removed"
        : > "$cluster_dir/joined"
        seq -s, 1 "$n" > "$cluster_dir/initial"
        printf 'client_base=%s\npeer_base=%s\n' "$client_base" "$peer_base" > "$cluster_dir/ports"
        for ((i = 1; i <= n; i++)); do
            echo "$i" >> "$cluster_dir/nodes"
        done
        for ((i = 1; i <= n; i++)); do
            launch_node "$i" "$n" --initial-members "$(cat "$cluster_dir/initial")"
        done
    fi
    # Wait (up to 30 s) until some node reports a leader.
    local deadline=$((SECONDS + 30)) first_member
    first_member="$(member_nodes | sed -n 1p)"
    while :; do
        for id in $(member_nodes); do
            pid_alive "$cluster_dir/$id/pid" || die "node $id exited; see $cluster_dir/$id/node.log"
        done
        if curl -sf "http://127.0.0.1:$((client_base + first_member))/status" 2>/dev/null | grep -q '"leader":[0-9]'; then
            break
        fi
        (( SECONDS < deadline )) || die "no leader after 30 s; see $cluster_dir/*/node.log"
        sleep 0.1
    done
    for id in $(member_nodes); do
        echo "http://127.0.0.1:$((client_base + id))"
    done
}

cmd_stop() {
    local any=0 id
    for id in $(started_nodes); do
        pid_alive "$cluster_dir/$id/pid" && any=1
        stop_node "$id"
    done
    (( any )) || echo "no running nodes"
}

cmd_start_node() {
    local id="${1:-}"
    [[ -n "$(started_nodes)" ]] || die "no cluster started from $cluster_dir"
    [[ "$id" =~ ^[0-9]+$ ]] && member_nodes | grep -x "$id" >/dev/null \
        || die "usage: cluster.sh start-node I (a member: $(member_nodes | tr '\n' ' '))"
    pid_alive "$cluster_dir/$id/pid" && die "node $id is running (pid $(cat "$cluster_dir/$id/pid"))"
    port_taken $((client_base + id)) && die "port $((client_base + id)) is taken"
    relaunch_node "$id"
    wait_answers "$id" 30
    echo "http://127.0.0.1:$((client_base + id))"
}

# Stops node $1 by its PID (SIGTERM, SIGKILL after 5 s) and prints what happened.
stop_node() {
    local id="$1" pidfile="$cluster_dir/$1/pid" pid
    if pid_alive "$pidfile"; then
        pid="$(cat "$pidfile")"
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stopped node $id (pid $pid)"
    fi
    rm -f "$pidfile"
}

# Sends a membership change ($1 = method, $2 = path, $3 = JSON body or empty) to the cluster
# through a running member other than $4, following redirects, retrying for up to 60 s while
# the answer says retry (409, 503, 504 or no answer). Prints the final answer's body.
member_change() {
    local method="$1" path="$2" body="$3" avoid="$4" url code answer data=()
    local deadline=$((SECONDS + 60))
    [[ -n "$body" ]] && data=(-H 'Content-Type: application/json' -d "$body")
    while :; do
        url="$(some_member_url "$avoid")" || url="$(some_member_url)" || die "no running member"
        answer="$(curl -s -L --max-time 10 -X "$method" -w '\n%{http_code}' \
            ${data[@]+"${data[@]}"} "$url$path" || true)"
        code="${answer##*$'\n'}"
        answer="${answer%$'\n'*}"
        case "$code" in
            200) echo "$answer"; return 0 ;;
            409|503|504|000|'') ;;
            *) die "$method $path refused ($code): $answer" ;;
        esac
        (( SECONDS < deadline )) || die "$method $path did not succeed within 60 s (last: $code $answer)"
        sleep 0.5
    done
}

cmd_add_node() {
    [[ -n "$(started_nodes)" ]] || die "no cluster started from $cluster_dir"
    local id url
    id=$(( $(max_id) + 1 ))
    port_taken $((client_base + id)) && die "port $((client_base + id)) is taken"
    port_taken $((peer_base + id)) && die "port $((peer_base + id)) is taken"
    url="$(some_member_url)" || die "no running member to join through"
    echo "$id" >> "$cluster_dir/nodes"
    echo "$id" >> "$cluster_dir/joined"
    launch_node "$id" "$id" --join "$url"
    wait_answers "$id" 30
    # The node adds itself as a learner, catches up, then promotes itself.
    local deadline=$((SECONDS + 120))
    until curl -s "http://127.0.0.1:$((client_base + id))/status" 2>/dev/null | grep -q "\"$id\":\"voter\""; do
        pid_alive "$cluster_dir/$id/pid" || die "node $id exited; see $cluster_dir/$id/node.log"
        (( SECONDS < deadline )) || die "node $id is not a voter after 120 s; see $cluster_dir/$id/node.log"
        sleep 0.2
    done
    echo "added node $id (joined through $url), now a voter: http://127.0.0.1:$((client_base + id))"
}

cmd_remove_node() {
    local id="${1:-}"
    [[ "$id" =~ ^[0-9]+$ ]] && member_nodes | grep -x "$id" >/dev/null \
        || die "usage: cluster.sh remove-node I (a member: $(member_nodes | tr '\n' ' '))"
    local answer
    answer="$(member_change DELETE "/cluster/members/$id" "" "$id")"
    echo "$id" >> "$cluster_dir/removed"
    echo "removed node $id from the configuration: $answer"
    stop_node "$id"
    echo "node $id's data dir is kept in $cluster_dir/$id/data"
}

cmd_replace_node() {
    local id="${1:-}"
    cmd_remove_node "$id"
    rm -rf "$cluster_dir/$id/data"
    echo "wiped node $id's data dir"
    cmd_add_node
}

cmd_status() {
    local ids
    ids="$(started_nodes)"
    [[ -n "$ids" ]] || die "no cluster started from $cluster_dir"
    for id in $ids; do
        local url="http://127.0.0.1:$((client_base + id))"
        if is_removed "$id"; then
            echo "node $id ($url): removed"
        elif pid_alive "$cluster_dir/$id/pid"; then
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
    add-node) cmd_add_node ;;
    remove-node) shift; cmd_remove_node "$@" ;;
    replace-node) shift; cmd_replace_node "$@" ;;
    *) die "usage: cluster.sh start [N] [--clean] | stop | status | start-node I | add-node | remove-node I | replace-node I" ;;
esac
