#!/usr/bin/env bash
# Replacing a failed node of a loaded cluster, measured on this machine's loopback.
#
#   scripts/bench-membership.sh [--keys N] [--duration S] [--no-build]
#
# Starts a 3-node cluster with scripts/cluster.sh (its defaults, in a temporary CLUSTER_DIR),
# writes N distinct keys (default 100,000) with 64 concurrent clients, then:
#   1. before: wrk PUT load at 64 connections on the leader for S seconds (default 20);
#   2. during: the same load again, and 2 s into it a follower is killed (kill -9, its PID)
#      and `cluster.sh replace-node` replaces it (remove it, wipe its data dir, add a new node
#      under a new id, which joins as a learner, catches up by snapshot and is promoted);
#      the time replace-node takes is printed with the writes/s of that window.
# Installs wrk from Debian's packages when missing (apt-get, with sudo when not root).
# Stops exactly the nodes it started (cluster.sh stop, on EXIT).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keys=100000
duration=20
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keys) keys="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: bench-membership.sh [--keys N] [--duration S] [--no-build]" >&2; exit 2 ;;
    esac
done

if ! command -v wrk >/dev/null; then
    sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 || {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2
    }
fi
if [[ $build -eq 1 ]]; then
    cargo build --release --locked -q -p riptide-server --manifest-path "$repo/Cargo.toml"
fi

work="$(mktemp -d)"
export CLUSTER_DIR="$work/cluster"
# cluster.sh numbers ports from these bases and refuses to start when one is taken.
export CLIENT_PORT_BASE="${CLIENT_PORT_BASE:-28000}" PEER_PORT_BASE="${PEER_PORT_BASE:-27000}"
cluster() { "$repo/scripts/cluster.sh" "$@"; }
trap 'cluster stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cluster start 3 >/dev/null

# Prints the id of the node every member calls leader, once there is one.
leader_id() {
    local i
    for _ in $(seq 100); do
        for i in 1 2 3; do
            local l
            l=$(curl -sf "http://127.0.0.1:$((CLIENT_PORT_BASE + i))/status" |
                python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' || true)
            if [[ -n "$l" ]]; then echo "$l"; return; fi
        done
        sleep 0.1
    done
    echo "no leader" >&2; exit 1
}
leader=$(leader_id)
url="http://127.0.0.1:$((CLIENT_PORT_BASE + leader))"

echo "writing $keys keys with 64 clients to the leader n$leader..."
python3 - "$url" "$keys" <<'EOF'
import http.client, sys, threading, urllib.parse
url, total = sys.argv[1], int(sys.argv[2])
host = urllib.parse.urlparse(url)
def writer(start):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    for i in range(start, total, 64):
        conn.request("PUT", f"/kv/fill-{i}", body=b"0123456789abcdef")
        r = conn.getresponse(); r.read()
        if r.status != 200:
            sys.exit(f"PUT fill-{i}: {r.status}")
threads = [threading.Thread(target=writer, args=(s,)) for s in range(64)]
for t in threads: t.start()
for t in threads: t.join()
EOF

load() {
    wrk -t2 -c64 -d"${duration}s" -s "$repo/scripts/wrk-put.lua" "$url" | grep -E '^(throughput|requests|p99):'
}

echo "before: $duration s of PUT at 64 connections"
load

victim=$(( leader % 3 + 1 ))
echo "during: the same load; at 2 s n$victim is killed and replaced"
load >"$work/during.txt" &
wrk_pid=$!
sleep 2
kill -9 "$(cat "$CLUSTER_DIR/$victim/pid")"
started=$(date +%s.%N)
cluster replace-node "$victim" >"$work/replace.txt"
ended=$(date +%s.%N)
wait "$wrk_pid"
cat "$work/during.txt"
grep -E 'new|added|voter' "$work/replace.txt" || true
python3 -c "print(f'replace-node of a failed node holding $keys keys: {$ended - $started:.2f} s')"
