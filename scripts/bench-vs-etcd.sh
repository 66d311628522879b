#!/usr/bin/env bash
# Riptide and etcd side by side, in one run, on this machine's loopback.
#
#   scripts/bench-vs-etcd.sh [--duration S] [--trials N] [--only riptide|etcd] [--quick]
#                            [--no-build] [--results-dir DIR]
#                            [--riptide-args "FLAGS"] [--etcd-args "FLAGS"]
#
# Installs what it needs from Debian's packages when missing (etcd-server, wrk; apt-get, with
# sudo when not root), builds riptide-server (release) unless --no-build, then one system after
# the other:
#   1. starts a 3-node cluster on free 127.0.0.1 ports in its own temporary data dirs
#      (Riptide: its defaults; etcd: its defaults plus --enable-v2; both fsync every write),
#   2. runs the same wrk load against the leader, each point for --duration seconds (default 20):
#      PUT of 16-byte values over 1,000 keys at 1, 8 and 64 connections, then linearizable GET at
#      64 connections (Riptide: GET /kv/k, a ReadIndex read; etcd: GET /v2/keys/k?quorum=true),
#      checking that the leader and its term stay the same during the load, and counting the
#      bytes the three nodes send each other meanwhile (their peer-bytes counters in /metrics;
#      the table shows them per write at 64 connections),
#   3. stops that cluster and measures failover with scripts/failover.py (its own fresh cluster,
#      the same client for both systems): kill -9 of the leader under write load, time during
#      which no write succeeds, over --trials trials (default 10). The client is 8 closed-loop
#      writers plus a prober starting a write every 10 ms, each write sent to any of the three
#      nodes (dead or alive) and following redirects; a trial's time runs from the last write
#      answered before the kill to the first answer to a write sent after it.
# --riptide-args / --etcd-args add node flags (e.g. --riptide-args "--election-ms 150").
# Prints one table with both systems and the ratios, and writes it as JSON and Markdown to
# DIR/bench-vs-etcd-<UTC time>.{json,md} (DIR defaults to <repo>/target/bench); the paths are
# printed at the end. --quick: 5 s points and 3 failover trials (a smoke test, not a result).
# Kills exactly the processes it started (trap on EXIT). Environment: RIPTIDE_SERVER (binary).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
server="${RIPTIDE_SERVER:-$repo/target/release/riptide-server}"
duration=20
trials=10
only=""
build=1
results_dir="$repo/target/bench"
riptide_args=""
etcd_args=""

die() { echo "bench-vs-etcd.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --duration) duration="${2:?}"; shift 2 ;;
        --trials) trials="${2:?}"; shift 2 ;;
        --only) only="${2:?}"; shift 2 ;;
        --quick) duration=5; trials=3; shift ;;
        --no-build) build=0; shift ;;
        --results-dir) results_dir="${2:?}"; shift 2 ;;
        --riptide-args) riptide_args="${2?}"; shift 2 ;;
        --etcd-args) etcd_args="${2?}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if ! [[ "$duration" =~ ^[1-9][0-9]*$ ]]; then die "--duration takes whole seconds (> 0)"; fi
if ! [[ "$trials" =~ ^[1-9][0-9]*$ ]]; then die "--trials takes a positive number"; fi
case "$only" in
    "") systems=(riptide etcd) ;;
    riptide|etcd) systems=("$only") ;;
    *) die "--only takes riptide or etcd" ;;
esac
# Word splitting of the extra flags is wanted: they are flags for the nodes.
read -r -a riptide_extra <<<"$riptide_args"
read -r -a etcd_extra <<<"$etcd_args"

# ---- what this needs -------------------------------------------------------------------------

install_packages() {
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root or sudo to install: $*"
        sudo=(sudo)
    fi
    say "installing $* from Debian's packages"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
    } || die "could not install $*"
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
if [[ " ${systems[*]} " == *" etcd "* ]]; then
    command -v etcd >/dev/null || missing+=(etcd-server)
fi
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
((${#missing[@]} == 0)) || install_packages "${missing[@]}"

etcd_version=""
if [[ " ${systems[*]} " == *" etcd "* ]]; then
    etcd_version="$(etcd --version | awk '/etcd Version/ {print $3}')"
    # The v2 API this benchmark speaks is off by default from 3.4 (--enable-v2 turns it on) and
    # gone in 3.6. etcdctl (and so ETCDCTL_API) is not used: every request is plain HTTP.
    case "$etcd_version" in
        3.[0-5].*) ;;
        *) die "etcd $etcd_version: the v2 API (--enable-v2) is needed, which etcd 3.6 removed" ;;
    esac
fi

if [[ " ${systems[*]} " == *" riptide "* ]]; then
    if ((build)); then
        say "building riptide-server (release)"
        (cd "$repo" && cargo build --release -p riptide-server >&2) || die "build failed"
    fi
    [[ -x "$server" ]] || die "no riptide-server at $server (build it, or set RIPTIDE_SERVER)"
fi

# ---- processes: every PID started is remembered and killed on exit ----------------------------

workdir="$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-etcd.XXXXXX")"
declare -A node_pid=()
failover_pid=""

# shellcheck source=SCRIPTDIR/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
# shellcheck source=SCRIPTDIR/lib/nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/nodes.sh"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$failover_pid" ]] && kill_pid "$failover_pid" TERM
    for i in "${!node_pid[@]}"; do kill_pid "${node_pid[$i]}" KILL; done
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A client_port=() peer_port=()

start_riptide() {
    allocate_ports 3
    for i in 1 2 3; do
        start_riptide_node "$server" "$i" 3 "$workdir/riptide/$i" "$workdir/riptide/$i.log" \
            --log-level warn "${riptide_extra[@]}"
        node_pid[$i]=$!
    done
}

start_etcd() {
    allocate_ports 3
    local initial="" token
    token="bench-vs-etcd-$$-$RANDOM"
    for i in 1 2 3; do
        initial+="${initial:+,}n$i=http://127.0.0.1:${peer_port[$i]}"
    done
    for i in 1 2 3; do
        local client="http://127.0.0.1:${client_port[$i]}" peer="http://127.0.0.1:${peer_port[$i]}"
        mkdir -p "$workdir/etcd"
        etcd --name "n$i" --data-dir "$workdir/etcd/$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$initial" --initial-cluster-token "$token" \
            --initial-cluster-state new --enable-v2 --logger zap --log-level warn \
            "${etcd_extra[@]}" >"$workdir/etcd/$i.log" 2>&1 &
        node_pid[$i]=$!
    done
}

stop_cluster() {
    for i in "${!node_pid[@]}"; do kill_pid "${node_pid[$i]}" TERM; done
    node_pid=()
}

# Prints the id (1..3) of the node every node agrees leads, or fails.
leader_of() {
    local system="$1"
    python3 - "$system" "${client_port[1]}" "${client_port[2]}" "${client_port[3]}" <<'EOF'
import json, sys, urllib.request
system, ports = sys.argv[1], sys.argv[2:]
def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return json.load(r)
try:
    if system == "riptide":
        views = [get(p, "/status") for p in ports]
        leaders = {v["leader"] for v in views}
        ok = len(leaders) == 1 and None not in leaders and views[leaders.copy().pop() - 1]["role"] == "leader"
        print(leaders.pop() if ok else "")
    else:
        views = [get(p, "/v2/stats/self") for p in ports]
        leaders = {v.get("leaderInfo", {}).get("leader") for v in views}
        ids = [i for i, v in enumerate(views, 1) if v.get("state") == "StateLeader"]
        ok = len(leaders) == 1 and len(ids) == 1 and views[ids[0] - 1]["id"] in leaders
        print(ids[0] if ok else "")
except Exception:
    print("")
EOF
}

wait_for_leader() {
    local system="$1" deadline=$((SECONDS + 60)) leader
    while :; do
        for i in 1 2 3; do
            kill -0 "${node_pid[$i]}" 2>/dev/null ||
                die "$system node $i exited; its log:$(echo; tail -20 "$workdir/$system/$i.log")"
        done
        leader="$(leader_of "$system")"
        [[ -n "$leader" ]] && { echo "$leader"; return; }
        ((SECONDS < deadline)) || die "$system: no leader after 60 s"
        sleep 0.2
    done
}

# Prints a number that changes when leadership changes: Riptide's term; etcd's count of leader
# changes node 1 has seen (etcd does not show its term over HTTP).
leadership_epoch() {
    local system="$1"
    if [[ "$system" == riptide ]]; then
        curl -sf "http://127.0.0.1:${client_port[1]}/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["term"])'
    else
        curl -sf "http://127.0.0.1:${client_port[1]}/metrics" |
            awk '/^etcd_server_leader_changes_seen_total/ {print $2}'
    fi
}

# Bytes all three nodes have written to their peers so far (Riptide:
# riptide_peer_bytes_sent_total, the frames of the peer transport; etcd:
# etcd_network_peer_sent_bytes_total, summed over its peers).
peer_bytes() {
    local system="$1" metric=riptide_peer_bytes_sent_total total=0 i n
    [[ "$system" == etcd ]] && metric=etcd_network_peer_sent_bytes_total
    for i in 1 2 3; do
        n="$(curl -sf "http://127.0.0.1:${client_port[$i]}/metrics" |
            awk -v m="$metric" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.0f", s}')"
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# Runs one wrk point and stores its JSON summary (plus whether leadership stayed put, and the
# bytes the nodes sent each other during it).
run_point() {
    local system="$1" name="$2" script="$3" connections="$4" leader="$5"
    local threads=2 url="http://127.0.0.1:${client_port[$leader]}" out="$workdir/$system-$name"
    ((connections == 1)) && threads=1
    local epoch_before epoch_after leader_after
    epoch_before="$(leadership_epoch "$system")"
    local peer_before peer_after
    peer_before="$(peer_bytes "$system")"
    say "$system: $name, $connections connections, ${duration} s against leader $url"
    WRK_API="$system" wrk -t"$threads" -c"$connections" -d"${duration}s" -s "$repo/scripts/$script" \
        "$url" >"$out.txt" 2>&1 || die "wrk failed: $(cat "$out.txt")"
    peer_after="$(peer_bytes "$system")"
    epoch_after="$(leadership_epoch "$system")"
    leader_after="$(leader_of "$system")"
    grep -v '^json: ' "$out.txt" | sed 's/^/    /' >&2
    local stable=true
    [[ "$epoch_before" == "$epoch_after" && "$leader_after" == "$leader" ]] || stable=false
    $stable || echo "    LEADERSHIP CHANGED during the load (epoch $epoch_before -> $epoch_after, leader $leader -> ${leader_after:-none})" >&2
    sed -n 's/^json: //p' "$out.txt" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); d["connections"]=int(sys.argv[1]); d["leader_stable"]=sys.argv[2]=="true"; d["peer_bytes"]=int(sys.argv[3]); ok=d["requests"]-d["non_2xx"]; d["peer_bytes_per_op"]=d["peer_bytes"]/ok if ok else None; print(json.dumps(d))' \
            "$connections" "$stable" "$((peer_after - peer_before))" >"$workdir/result-$system-$name.json"
}

bench_system() {
    local system="$1" leader
    say "$system: starting a 3-node cluster"
    if [[ "$system" == riptide ]]; then start_riptide; else start_etcd; fi
    leader="$(wait_for_leader "$system")"
    run_point "$system" put-1 wrk-put.lua 1 "$leader"
    run_point "$system" put-8 wrk-put.lua 8 "$leader"
    run_point "$system" put-64 wrk-put.lua 64 "$leader"
    run_point "$system" get-64 wrk-get.lua 64 "$leader"
    du -sk "$workdir/$system" | awk '{print $1}' >"$workdir/result-$system-du-kib"
    stop_cluster
    say "$system: failover, $trials trials of kill -9 of the leader under write load"
    local flags=()
    if [[ "$system" == riptide ]]; then
        flags=(--binary "$server" -- "${riptide_extra[@]}")
    else
        flags=(-- "${etcd_extra[@]}")
    fi
    python3 "$repo/scripts/failover.py" --system "$system" --trials "$trials" \
        --json "$workdir/result-$system-failover.json" "${flags[@]}" >&2 &
    failover_pid=$!
    wait "$failover_pid" || die "$system failover measurement failed"
    failover_pid=""
}

# ---- the run -----------------------------------------------------------------------------------

started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$repo" status --porcelain -- server 2>/dev/null)" ]]; then commit+=" (server/ has uncommitted changes)"; fi
binary_built=""
if [[ " ${systems[*]} " == *" riptide "* ]]; then
    binary_built="$(date -u -r "$server" +%Y-%m-%dT%H:%M:%SZ)"
    # A private copy: a rebuild of target/release during the run must not change the nodes.
    cp -p "$server" "$workdir/riptide-server"
    server="$workdir/riptide-server"
fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for system in "${systems[@]}"; do bench_system "$system"; done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$results_dir"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json_out="$results_dir/bench-vs-etcd-$stamp.json"
md_out="$results_dir/bench-vs-etcd-$stamp.md"
cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"

python3 - "$workdir" "$json_out" "$md_out" <<EOF
import json, os, sys
workdir, json_out, md_out = sys.argv[1:]
meta = {
    "started": "$started", "duration_s_per_point": $duration, "failover_trials": $trials,
    "machine": "$(uname -srm), $(nproc) cores, ${cpu//\"/}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)",
    "load_average_before": "$load_before", "load_average_after": "$load_after",
    "riptide_commit": "$commit", "riptide_binary_built": "$binary_built",
    "riptide_flags": "$riptide_args",
    "etcd_version": "$etcd_version", "etcd_flags": "--enable-v2 $etcd_args".strip(),
    "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $2}')",
}
systems = "${systems[*]}".split()
results = {}
for s in systems:
    r = {}
    for name in ["put-1", "put-8", "put-64", "get-64", "failover"]:
        with open(os.path.join(workdir, f"result-{s}-{name}.json")) as f:
            r[name] = json.load(f)
    with open(os.path.join(workdir, f"result-{s}-du-kib")) as f:
        r["data_dir_kib_after_load"] = int(f.read())
    results[s] = r

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "B":
        return f"{v:,.0f} B"
    return f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"

# (label, getter, unit, higher is better, target as (ratio or absolute check, text))
rows = [
    ("PUT, 1 connection", lambda r: r["put-1"]["ok_per_s"], "/s", True, None),
    ("PUT, 1 connection, p99", lambda r: r["put-1"]["p99_ms"], "ms", False, None),
    ("PUT, 8 connections", lambda r: r["put-8"]["ok_per_s"], "/s", True, None),
    ("PUT, 8 connections, p99", lambda r: r["put-8"]["p99_ms"], "ms", False, None),
    ("PUT, 64 connections", lambda r: r["put-64"]["ok_per_s"], "/s", True,
     (lambda rip, etc: etc and rip / etc >= 1.5, ">= 1.5x etcd")),
    ("PUT, 64 connections, p50", lambda r: r["put-64"]["p50_ms"], "ms", False, None),
    ("PUT, 64 connections, p99", lambda r: r["put-64"]["p99_ms"], "ms", False,
     (lambda rip, etc: etc and rip <= etc, "<= etcd")),
    ("PUT, 64 connections, peer bytes per write", lambda r: r["put-64"].get("peer_bytes_per_op"), "B", False, None),
    ("linearizable GET, 64 connections", lambda r: r["get-64"]["ok_per_s"], "/s", True,
     (lambda rip, etc: etc and rip / etc >= 2, ">= 2x etcd")),
    ("linearizable GET, 64 connections, p99", lambda r: r["get-64"]["p99_ms"], "ms", False, None),
    ("failover (kill -9 of leader), median", lambda r: r["failover"]["median_ms"], "ms", False,
     (lambda rip, etc: rip < 300, "< 300 ms")),
    ("failover (kill -9 of leader), worst", lambda r: r["failover"]["worst_ms"], "ms", False,
     (lambda rip, etc: rip < 1000, "< 1 s")),
]
table = []
for label, get, unit, higher, target in rows:
    rip = get(results["riptide"]) if "riptide" in results else None
    etc = get(results["etcd"]) if "etcd" in results else None
    ratio = f"{rip / etc:.2f}x" if rip is not None and etc else "-"
    verdict = "-"
    if target and rip is not None and (etc is not None or "etcd" not in target[1]):
        verdict = ("yes" if target[0](rip, etc) else "NO") + f" ({target[1]})"
    table.append((label, fmt(rip, unit), fmt(etc, unit), ratio, verdict))

notes = []
for s, r in results.items():
    for name in ["put-1", "put-8", "put-64", "get-64"]:
        p = r[name]
        bad = p["non_2xx"] + p["timeouts"] + p["socket_errors"]
        if bad:
            notes.append(f"{s} {name}: {p['non_2xx']} non-2xx, {p['timeouts']} timeouts, "
                         f"{p['socket_errors']} socket errors of {p['requests']} requests")
        if not p["leader_stable"]:
            notes.append(f"{s} {name}: leadership changed during the load")
    fo = r["failover"]
    notes.append(f"{s} failover trials (ms, no write succeeded): "
                 + ", ".join(f"{t['gap_ms']:.0f}" for t in fo["trials"]))
    if fo.get("leader_changes_while_settling"):
        notes.append(f"{s}: leadership changed {fo['leader_changes_while_settling']} time(s) in "
                     "the second after a killed node rejoined (before the next kill)")
    notes.append(f"{s} data dir (3 nodes) after the wrk points: "
                 f"{r['data_dir_kib_after_load'] / 1024:.1f} MiB")

head = ("", "Riptide", f"etcd {meta['etcd_version']}".strip(), "Riptide / etcd", "target met")
widths = [max(len(str(row[c])) for row in [head] + table) for c in range(5)]
def line(row):
    return "  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w)
                     for c, (v, w) in enumerate(zip(row, widths)))
text = [line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in table]
print()
print("\n".join(text))
print()
for n in notes:
    print("  " + n)
print(f"  machine: {meta['machine']}; load average {meta['load_average_before']} before, "
      f"{meta['load_average_after']} after")

md = [f"Riptide vs etcd, {meta['started']}, {meta['machine']}",
      f"(load average {meta['load_average_before']} before, {meta['load_average_after']} after; "
      f"{meta['duration_s_per_point']} s per wrk point; {meta['failover_trials']} failover trials; "
      + (f"riptide at {meta['riptide_commit']}, binary built {meta['riptide_binary_built']}"
         f"{', flags ' + meta['riptide_flags'] if meta['riptide_flags'] else ''}; "
         if meta['riptide_binary_built'] else "")
      + (f"etcd {meta['etcd_version']} {meta['etcd_flags']}; " if meta['etcd_version'] else "")
      + f"wrk {meta['wrk']})", "",
      "| " + " | ".join(h or "load" for h in head) + " |", "|---|---|---|---|---|"]
md += ["| " + " | ".join(r) + " |" for r in table]
md += [""] + [f"- {n}" for n in notes]
with open(md_out, "w") as f:
    f.write("\n".join(md) + "\n")
with open(json_out, "w") as f:
    json.dump({"meta": meta, "results": results,
               "table": [dict(zip(["load", "riptide", "etcd", "ratio", "target"], r))
                         for r in table]}, f, indent=2)
EOF
echo
echo "results: $json_out"
echo "         $md_out"
