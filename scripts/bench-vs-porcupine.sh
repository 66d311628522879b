#!/usr/bin/env bash
# Riptide's checker and Porcupine side by side, in one run, on the same JSON Lines files.
#
#   scripts/bench-vs-porcupine.sh PORCUPINE_SRC [--runs N] [--no-build] [--work DIR]
#                                 [--before RIPTIDE_BINARY]
#
# PORCUPINE_SRC is a checkout of https://github.com/anishathalye/porcupine (it is never
# downloaded here). Needs Go (Debian's golang-go) and a Rust toolchain. The script
#   1. builds `riptide` (release) and the checker's examples `corpus_jsonl` and `synth`
#      (cargo runs under `flock $RIPTIDE_CARGO_LOCK` when that variable is set),
#   2. builds scripts/porcupine-frontend (ours: a JSON Lines reader with its own fast parser that
#      calls Porcupine's CheckOperations with the semantics of Riptide's `register`/`append`
#      models and a state hash) against PORCUPINE_SRC with a `replace` directive, in a copy,
#   3. writes the inputs into the work dir: (a) the vendored Porcupine corpus, the 108 files with
#      an upstream verdict, as JSON Lines (`register`: the etcd logs, `append`: the kv
#      histories); (b) its c50-ok (append model, 50 clients, 1,712 operations); (c) two keyed
#      histories of 200,000 operations (1,000 keys, 32 processes, 0.5 % info, seeds 1 and 2,
#      the second with a planted stale read),
#   4. times each tool on each input --runs times (default 3), alternating, with
#      /usr/bin/time -v: wall clock and peak RSS, parsing included; (a) is two processes per tool
#      (one per model), wall clocks summed and the larger peak RSS kept,
#   5. checks every verdict against the expected one (a wrong verdict fails the script) and
#      prints a table: min-max wall clock and max peak RSS per tool and input, and the ratio.
# --before BIN also times another `riptide` binary (e.g. one built from an older commit) in the
# same runs, as a third column, for before/after figures on the same machine and load.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "bench-vs-porcupine.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 PORCUPINE_SRC [--runs N] [--no-build] [--work DIR]"
porcupine_src="$(cd "$1" && pwd)" || die "no directory $1"
shift
[ -f "$porcupine_src/checker.go" ] || die "$porcupine_src does not look like Porcupine's source"
runs=3
build=1
work=""
before=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --work) work="$2"; shift 2 ;;
        --before) before="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
        *) die "unknown argument $1" ;;
    esac
done
command -v go >/dev/null || die "needs go (apt-get install golang-go)"
[ -x /usr/bin/time ] || die "needs /usr/bin/time (apt-get install time)"
if [ -z "$work" ]; then
    work="$(mktemp -d /tmp/bench-vs-porcupine.XXXXXX)"
fi
mkdir -p "$work"

cargo_() {
    if [ -n "${RIPTIDE_CARGO_LOCK:-}" ]; then
        flock "$RIPTIDE_CARGO_LOCK" cargo "$@"
    else
        cargo "$@"
    fi
}

riptide="$repo/target/release/riptide"
examples="$repo/target/release/examples"
if [ "$build" = 1 ]; then
    (cd "$repo" && cargo_ build --release -q -p riptide-harness --bin riptide \
        && cargo_ build --release -q -p riptide-checker --example corpus_jsonl --example synth)
fi

# The front end, built in a copy whose go.mod points at the given Porcupine source.
frontend_dir="$work/frontend"
rm -rf "$frontend_dir" && mkdir -p "$frontend_dir"
cp "$repo/scripts/porcupine-frontend/main.go" "$repo/scripts/porcupine-frontend/go.mod" "$frontend_dir/"
(cd "$frontend_dir" \
    && go mod edit -replace="github.com/anishathalye/porcupine=$porcupine_src" \
    && GOFLAGS=-mod=mod GOPROXY=off go build -o porcupine-frontend .)
frontend="$frontend_dir/porcupine-frontend"
porcupine_rev="$(git -C "$porcupine_src" log -1 --format='%h %cs' 2>/dev/null || echo "unknown revision")"

# Inputs.
"$examples/corpus_jsonl" "$work/corpus"
"$examples/synth" 200000 1000 32 0.005 1 > "$work/keyed-200k.jsonl"
"$examples/synth" 200000 1000 32 0.005 2 stale > "$work/keyed-200k-stale.jsonl"
c50="$work/corpus/append/kv_c50-ok.txt.jsonl"
[ -f "$c50" ] || die "c50-ok missing from the converted corpus"
{
    cat "$work/corpus/expected.tsv"
    printf '%s\tlinearizable\n' "$work/keyed-200k.jsonl"
    printf '%s\tnot-linearizable\n' "$work/keyed-200k-stale.jsonl"
} > "$work/expected.tsv"

# run TOOL MODEL FILE...: one timed process; appends "wall_s rss_kib" to $work/last.
run() {
    local tool="$1" model="$2"
    shift 2
    local out="$work/out.txt" timing="$work/time.txt"
    local cmd
    if [ "$tool" = riptide ]; then
        cmd=("$riptide" check --model "$model" "$@")
    elif [ "$tool" = before ]; then
        cmd=("$before" check --model "$model" "$@")
    else
        cmd=("$frontend" -model "$model" "$@")
    fi
    local rc=0
    /usr/bin/time -v -o "$timing" "${cmd[@]}" > "$out" 2>&1 || rc=$?
    [ "$rc" -le 2 ] || { cat "$out" >&2; die "$tool failed (exit $rc)"; }
    # Verdicts: each file's summary line "FILE: VERDICT (...".
    local file verdict expected
    for file in "$@"; do
        verdict="$(grep -F "$file: " "$out" | head -1 | sed -e "s|^$file: ||" -e 's| (.*||' \
            | tr 'A-Z ' 'a-z-')"
        expected="$(awk -F'\t' -v f="$file" '$1 == f { print $2 }' "$work/expected.tsv")"
        [ "$verdict" = "$expected" ] || die "$tool says $verdict for $file, expected $expected"
    done
    local wall rss
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0;
        for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$timing")"
    rss="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$timing")"
    echo "$wall $rss" >> "$work/last"
}

# measure NAME TOOL: one run of input NAME; prints "wall rss" (walls summed, max RSS).
measure() {
    local name="$1" tool="$2"
    : > "$work/last"
    case "$name" in
        corpus)
            run "$tool" register "$work"/corpus/register/*.jsonl
            run "$tool" append "$work"/corpus/append/*.jsonl ;;
        c50-ok) run "$tool" append "$c50" ;;
        keyed-200k) run "$tool" kv "$work/keyed-200k.jsonl" ;;
        keyed-200k-stale) run "$tool" kv "$work/keyed-200k-stale.jsonl" ;;
    esac
    awk '{ w += $1; if ($2 > r) r = $2 } END { printf "%.2f %d\n", w, r }' "$work/last"
}

inputs=(corpus c50-ok keyed-200k keyed-200k-stale)
tools=(riptide porcupine)
[ -z "$before" ] || tools+=(before)
: > "$work/results.tsv"
for ((i = 1; i <= runs; i++)); do
    for name in "${inputs[@]}"; do
        for tool in "${tools[@]}"; do
            read -r wall rss < <(measure "$name" "$tool")
            printf '%s\t%s\t%s\t%s\n' "$name" "$tool" "$wall" "$rss" >> "$work/results.tsv"
            echo "run $i: $name $tool ${wall} s, ${rss} KiB" >&2
        done
    done
done

echo
echo "Riptide $(git -C "$repo" rev-parse --short HEAD) vs Porcupine $porcupine_rev, $runs runs," \
    "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-18s %-22s %-22s %-18s %s\n' input "riptide s (max RSS)" "porcupine s (max RSS)" \
    "speedup (min/min)" "${before:+before s (max RSS)}"
for name in "${inputs[@]}"; do
    awk -F'\t' -v n="$name" '
        $1 == n { w = $3 + 0; r = $4 + 0
            if (!(($2) in lo) || w < lo[$2]) lo[$2] = w
            if (w > hi[$2]) hi[$2] = w
            if (r > rss[$2]) rss[$2] = r }
        function cell(t) { return sprintf("%.2f-%.2f (%d MB)", lo[t], hi[t], rss[t] / 1024) }
        END {
            printf "%-18s %-22s %-22s %-18s %s\n", n, cell("riptide"), cell("porcupine"),
                sprintf("%.1fx", lo["porcupine"] / (lo["riptide"] > 0 ? lo["riptide"] : 0.005)),
                ("before" in lo) ? cell("before") : ""
        }' "$work/results.tsv"
done
echo "raw figures: $work/results.tsv"
