# shellcheck shell=bash
# The one way the scripts pick ports and start riptide-server nodes (sourced, not run).
#
# A cluster of N nodes is described by two associative or indexed arrays, client_port[i] and
# peer_port[i] for i in 1..N, set by the caller (allocate_ports does it on free ports).

# free_ports N: prints N distinct free loopback ports (every socket stays bound until all are
# chosen, so no two are the same).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

# allocate_ports N: sets client_port[1..N] and peer_port[1..N] to free loopback ports.
allocate_ports() {
    local n="$1" ports i
    read -r -a ports <<<"$(free_ports $((2 * n)))"
    for ((i = 1; i <= n; i++)); do
        client_port[$i]="${ports[$((i - 1))]}"
        peer_port[$i]="${ports[$((n + i - 1))]}"
    done
}

# start_riptide_node SERVER I N DATA_DIR LOG [EXTRA FLAG...]: starts node I of an N-node cluster
# in the background (its peers at peer_port[j], their client URLs at client_port[j]), appending
# its output to LOG; the PID is in $! afterwards, as for any background command. A caller that
# wants the node to outlive it sets node_launcher=(nohup) first.
start_riptide_node() {
    local server="$1" i="$2" n="$3" data_dir="$4" log="$5" j
    shift 5
    local args=(--id "$i" --data-dir "$data_dir"
        --listen-client "127.0.0.1:${client_port[$i]}"
        --listen-peer "127.0.0.1:${peer_port[$i]}")
    for ((j = 1; j <= n; j++)); do
        ((j == i)) && continue
        args+=(--peer "$j=127.0.0.1:${peer_port[$j]}"
            --peer-client-url "$j=http://127.0.0.1:${client_port[$j]}")
    done
    mkdir -p "$data_dir"
    ${node_launcher[@]+"${node_launcher[@]}"} "$server" "${args[@]}" "$@" >>"$log" 2>&1 &
}
