# shellcheck shell=bash
# Process helpers shared by the benchmark scripts (sourced, not run).

# kill_pid PID [SIGNAL]: sends SIGNAL (default KILL) to a process this script started, waits up
# to 10 s for it to exit, then kills it for good and reaps it. A PID already gone is fine.
kill_pid() {
    local pid="$1" signal="${2:-KILL}"
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}
