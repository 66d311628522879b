#!/usr/bin/env bash
# The nightly fault-injection campaign of Riptide: the documented entry point for cron and CI.
#
#   scripts/nightly.sh              build (release), run scripts/nightly.toml, keep the results
#
# Environment (all optional):
#   RIPTIDE_CAMPAIGN  campaign TOML file            (default scripts/nightly.toml)
#   RIPTIDE_STORE     store of results              (default histories)
#   RIPTIDE_BUDGET    no run starts after this      (default: the TOML file's budget)
#   RIPTIDE_SHARD     I/N: this machine's part of the matrix (join with `riptide campaign merge`)
#   RIPTIDE_BUGS      1: afterwards, also run the planted-bug detection matrix (3 runs per bug)
#
# Results: <store>/campaigns/<name>-<stamp>/ (index.html, campaign.json, junit.xml), listed by
# `riptide serve --store <store>`; a copy of the JUnit XML at <store>/nightly-junit.xml.
# Exit code: the campaign's (0 all linearizable, 1 a run was not linearizable, 2 unknown,
# 3 a run failed), or the detection matrix's when it is worse.
#
# crontab line (every night at 02:00, log appended to the store):
#   0 2 * * * cd /path/to/riptide && scripts/nightly.sh >> histories/nightly.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
# cron starts with a minimal PATH.
export PATH="$HOME/.cargo/bin:/usr/local/bin:/usr/bin:/bin:$PATH"

campaign=${RIPTIDE_CAMPAIGN:-scripts/nightly.toml}
store=${RIPTIDE_STORE:-histories}
mkdir -p "$store"

echo "== riptide nightly $(date -u +%Y-%m-%dT%H:%M:%SZ): building"
cargo build --release --quiet -p riptide-server -p riptide-harness
riptide=target/release/riptide

args=(campaign --config "$campaign" --store "$store" --quiet --junit "$store/nightly-junit.xml")
[[ -n "${RIPTIDE_BUDGET:-}" ]] && args+=(--budget "$RIPTIDE_BUDGET")
[[ -n "${RIPTIDE_SHARD:-}" ]] && args+=(--shard "$RIPTIDE_SHARD")

echo "== running $campaign"
status=0
"$riptide" "${args[@]}" || status=$?

if [[ "${RIPTIDE_BUGS:-0}" == 1 ]]; then
    echo "== planted-bug detection matrix"
    bugs_status=0
    "$riptide" campaign --bugs --runs 3 --store "$store" --quiet || bugs_status=$?
    if (( bugs_status > status )); then status=$bugs_status; fi
fi
echo "== done $(date -u +%Y-%m-%dT%H:%M:%SZ), exit $status"
exit "$status"
