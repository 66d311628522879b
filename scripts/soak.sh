#!/usr/bin/env bash
# Soak: a long write load on a 3-node Riptide cluster with one follower stopped the whole time,
# then that follower's catch-up.
#
#   scripts/soak.sh [--duration S] [--connections N] [--snapshot-entries N] [--no-build]
#                   [--results-dir DIR] [--riptide-args "FLAGS"]
#
# 1. Starts 3 nodes on free 127.0.0.1 ports in a temporary directory, waits for a leader and
#    stops (SIGTERM) one follower.
# 2. Runs wrk (scripts/wrk-put.lua: PUT of 16-byte values over 1,000 keys) against the leader
#    for --duration seconds (default 600) at --connections (default 64), sampling every second
#    the leader's RSS and data dir size (and the live follower's); the maxima are reported, with
#    the leader's peak RSS from the kernel (VmHWM) and whether the leader's term stayed the same.
# 3. With the load stopped, restarts the stopped follower and measures the time from its launch
#    until its applied index reaches the leader's commit index (GET /status).
# Targets (issue 7): data dir < 64 MiB, RSS < 256 MiB, catch-up < 5 s.
# --snapshot-entries N is passed to every node (the flag must exist: riptide-server --help); when
# not given, the nodes use their own default. Results go to DIR/soak-<UTC time>.{json,md} (DIR
# defaults to <repo>/target/bench). Kills exactly the processes it started (trap on EXIT).
# Environment: RIPTIDE_SERVER (binary; default target/release/riptide-server); SOAK_KEEP=1 keeps
# the data dirs and node logs (path printed).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
server="${RIPTIDE_SERVER:-$repo/target/release/riptide-server}"
duration=600
connections=64
snapshot_entries=""
build=1
results_dir="$repo/target/bench"
riptide_args=""

die() { echo "soak.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --duration) duration="${2:?}"; shift 2 ;;
        --connections) connections="${2:?}"; shift 2 ;;
        --snapshot-entries) snapshot_entries="${2:?}"; shift 2 ;;
        --no-build) build=0; shift ;;
        --results-dir) results_dir="${2:?}"; shift 2 ;;
        --riptide-args) riptide_args="${2?}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if ! [[ "$duration" =~ ^[1-9][0-9]*$ ]]; then die "--duration takes whole seconds (> 0)"; fi
if ! [[ "$connections" =~ ^[1-9][0-9]*$ ]]; then die "--connections takes a positive number"; fi
if [[ -n "$snapshot_entries" && ! "$snapshot_entries" =~ ^[0-9]+$ ]]; then
    die "--snapshot-entries takes a number"
fi
read -r -a node_extra <<<"$riptide_args"

command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk, or run scripts/bench-vs-etcd.sh once)"
if ((build)); then
    say "building riptide-server (release)"
    (cd "$repo" && cargo build --release -p riptide-server >&2) || die "build failed"
fi
[[ -x "$server" ]] || die "no riptide-server at $server (build it, or set RIPTIDE_SERVER)"

snapshots_supported=false
if "$server" --help 2>/dev/null | grep -q -- '--snapshot-entries'; then snapshots_supported=true; fi
if [[ -n "$snapshot_entries" ]]; then
    $snapshots_supported || die "$server has no --snapshot-entries flag (no snapshots in this build)"
    node_extra+=(--snapshot-entries "$snapshot_entries")
fi
$snapshots_supported || say "note: this riptide-server has no --snapshot-entries (no log compaction): the log grows without bound"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/riptide-soak.XXXXXX")"
declare -A node_pid=() client_port=() peer_port=()
wrk_pid=""
# A private copy: a rebuild of target/release during the run must not change the restarted node.
cp -p "$server" "$workdir/riptide-server"
server="$workdir/riptide-server"

# shellcheck source=SCRIPTDIR/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
# shellcheck source=SCRIPTDIR/lib/nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/nodes.sh"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$wrk_pid" ]] && kill_pid "$wrk_pid" KILL
    for i in "${!node_pid[@]}"; do kill_pid "${node_pid[$i]}" TERM; done
    if [[ -n "${SOAK_KEEP:-}" ]]; then echo "kept data dirs and node logs: $workdir" >&2; else rm -rf "$workdir"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

allocate_ports 3

launch() {
    local i="$1"
    start_riptide_node "$server" "$i" 3 "$workdir/$i" "$workdir/$i.log" --log-level warn \
        "${node_extra[@]}"
    node_pid[$i]=$!
}

# Prints one field of node $1's /status (empty when it does not answer).
status_field() {
    curl -sf --max-time 2 "http://127.0.0.1:${client_port[$1]}/status" 2>/dev/null |
        python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$2" 2>/dev/null || true
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
dir_kib() { du -sk "$1" 2>/dev/null | awk '{print $1}'; }

for i in 1 2 3; do launch "$i"; done
deadline=$((SECONDS + 60))
leader=""
while :; do
    for i in 1 2 3; do
        kill -0 "${node_pid[$i]}" 2>/dev/null || die "node $i exited: $(tail -5 "$workdir/$i.log")"
    done
    leader="$(status_field 1 leader)"
    if [[ -n "$leader" && "$(status_field "$leader" role)" == leader ]]; then break; fi
    ((SECONDS < deadline)) || die "no leader after 60 s"
    sleep 0.2
done
stopped=$((leader % 3 + 1))
follower=$((6 - leader - stopped))  # the one that stays up
say "leader is node $leader; stopping follower $stopped for the whole run"
kill_pid "${node_pid[$stopped]}" TERM
unset "node_pid[$stopped]"
term_before="$(status_field "$leader" term)"

say "write load: $connections connections for ${duration} s against http://127.0.0.1:${client_port[$leader]}"
threads=2
((connections == 1)) && threads=1
wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 5s -s "$repo/scripts/wrk-put.lua" \
    "http://127.0.0.1:${client_port[$leader]}" >"$workdir/wrk.txt" 2>&1 &
wrk_pid=$!
samples="$workdir/samples.tsv"
echo -e "second\tleader_rss_kib\tleader_dir_kib\tfollower_rss_kib\tfollower_dir_kib\tterm\tcommit_index" >"$samples"
start=$SECONDS
minute=0
while kill -0 "$wrk_pid" 2>/dev/null; do
    kill -0 "${node_pid[$leader]}" 2>/dev/null || die "the leader exited during the load: $(tail -5 "$workdir/$leader.log")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((SECONDS - start)) \
        "$(rss_kib "${node_pid[$leader]}")" "$(dir_kib "$workdir/$leader")" \
        "$(rss_kib "${node_pid[$follower]}")" "$(dir_kib "$workdir/$follower")" \
        "$(status_field "$leader" term)" "$(status_field "$leader" commit_index)" >>"$samples"
    if (((SECONDS - start) / 60 > minute)); then
        minute=$(((SECONDS - start) / 60))
        tail -1 "$samples" | awk '{printf "   %4d s: leader RSS %.1f MiB, data dir %.1f MiB, commit index %d\n", $1, $2/1024, $3/1024, $7}' >&2
    fi
    sleep 1
done
wait "$wrk_pid" || die "wrk failed: $(cat "$workdir/wrk.txt")"
wrk_pid=""
leader_hwm="$(hwm_kib "${node_pid[$leader]}")"
leader_dir_end="$(dir_kib "$workdir/$leader")"
term_after="$(status_field "$leader" term)"
grep -v '^json: ' "$workdir/wrk.txt" | sed 's/^/    /' >&2

target_index="$(status_field "$leader" commit_index)"
say "restarting follower $stopped; catching up to commit index $target_index"
launched_ns="$(date +%s%N)"
launch "$stopped"
caught_up_ms=""
while :; do
    kill -0 "${node_pid[$stopped]}" 2>/dev/null || die "restarted node exited: $(tail -5 "$workdir/$stopped.log")"
    applied="$(status_field "$stopped" applied_index)"
    if [[ -n "$applied" ]] && ((applied >= target_index)); then
        caught_up_ms=$((($(date +%s%N) - launched_ns) / 1000000))
        break
    fi
    if (($(date +%s%N) - launched_ns > 120 * 1000000000)); then
        say "not caught up after 120 s (applied ${applied:-?} of $target_index)"
        break
    fi
    sleep 0.02
done

mkdir -p "$results_dir"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json_out="$results_dir/soak-$stamp.json"
md_out="$results_dir/soak-$stamp.md"
python3 - "$samples" "$json_out" "$md_out" <<EOF
import csv, json, sys
samples_path, json_out, md_out = sys.argv[1:]
rows = list(csv.DictReader(open(samples_path), delimiter="\t"))
def col(name):
    return [int(r[name]) for r in rows if r[name].isdigit()]
wrk = json.loads([l for l in open("$workdir/wrk.txt") if l.startswith("json: ")][0][6:])
terms = set(col("term"))
caught = "$caught_up_ms"
r = {
    "duration_s": $duration, "connections": $connections,
    "snapshot_flag_supported": "$snapshots_supported" == "true",
    "node_flags": "${node_extra[*]}",
    "writes": wrk["requests"], "writes_per_s": wrk["ok_per_s"], "non_2xx": wrk["non_2xx"],
    "timeouts": wrk["timeouts"], "p99_ms": wrk["p99_ms"],
    "leader_max_rss_mib": max(col("leader_rss_kib"), default=0) / 1024,
    "leader_peak_rss_mib_vmhwm": $leader_hwm / 1024,
    "leader_max_data_dir_mib": max(col("leader_dir_kib"), default=0) / 1024,
    "leader_data_dir_end_mib": $leader_dir_end / 1024,
    "follower_max_rss_mib": max(col("follower_rss_kib"), default=0) / 1024,
    "follower_max_data_dir_mib": max(col("follower_dir_kib"), default=0) / 1024,
    "leader_term_before": int("$term_before"), "leader_term_after": int("$term_after" or 0),
    "terms_seen": sorted(terms),
    "catch_up_target_index": int("$target_index"),
    "catch_up_ms": int(caught) if caught else None,
    "samples": len(rows),
}
# Writes committed per second in each whole minute (from the sampled commit index), to tell a
# slowdown over the run from a slow machine.
per_minute = []
points = [(int(r["second"]), int(r["commit_index"])) for r in rows if r["commit_index"].isdigit()]
for m in range(1, max((p[0] for p in points), default=0) // 60 + 1):
    inside = [p for p in points if (m - 1) * 60 <= p[0] <= m * 60]
    if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
        per_minute.append(round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])))
r["writes_per_s_by_minute"] = per_minute
checks = [
    ("leader data dir, max", f"{r['leader_max_data_dir_mib']:.1f} MiB", r["leader_max_data_dir_mib"] < 64, "< 64 MiB"),
    ("leader RSS, max (sampled / VmHWM)", f"{r['leader_max_rss_mib']:.1f} / {r['leader_peak_rss_mib_vmhwm']:.1f} MiB",
     max(r["leader_max_rss_mib"], r["leader_peak_rss_mib_vmhwm"]) < 256, "< 256 MiB"),
    ("stopped follower's catch-up after restart",
     f"{r['catch_up_ms']} ms" if r["catch_up_ms"] is not None else "not within 120 s",
     r["catch_up_ms"] is not None and r["catch_up_ms"] < 5000, "< 5 s"),
    ("leader's term during the load", " -> ".join(map(str, r["terms_seen"])),
     len(r["terms_seen"]) == 1 and r["leader_term_before"] == r["leader_term_after"], "constant"),
]
lines = [f"soak: {r['duration_s']} s, {r['connections']} connections, {r['writes']:,} writes "
         f"({r['writes_per_s']:,.0f}/s, p99 {r['p99_ms']:.1f} ms, {r['non_2xx']} non-2xx, "
         f"{r['timeouts']} timeouts); node flags: {r['node_flags'] or '(defaults)'}"
         + ("" if r["snapshot_flag_supported"] else "; this build has no --snapshot-entries"),
         f"live follower: max RSS {r['follower_max_rss_mib']:.1f} MiB, max data dir {r['follower_max_data_dir_mib']:.1f} MiB; "
         f"catch-up target: commit index {r['catch_up_target_index']:,}",
         "committed writes/s by minute: " + (", ".join(f"{v:,}" for v in per_minute) or "-")]
print()
print("\n".join(lines))
w = max(len(c[0]) for c in checks)
for name, value, ok, target in checks:
    print(f"  {name.ljust(w)}  {value:>24}  {'yes' if ok else 'NO'} ({target})")
r["checks"] = [{"what": c[0], "value": c[1], "met": c[2], "target": c[3]} for c in checks]
json.dump(r, open(json_out, "w"), indent=2)
md = lines + ["", "| measure | value | target met |", "|---|---|---|"]
md += [f"| {n} | {v} | {'yes' if ok else 'NO'} ({t}) |" for n, v, ok, t in checks]
open(md_out, "w").write("\n".join(md) + "\n")
EOF
echo
echo "results: $json_out"
echo "         $md_out"
