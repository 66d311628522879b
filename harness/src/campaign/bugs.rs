//! The detection matrix (`riptide campaign --bugs`): proof that the harness catches real bugs.
//!
//! `riptide-server --unsafe --bug NAME` plants one deliberate bug in every node. For each
//! planted bug this module knows the rule it breaks and the test most likely to expose it (a
//! workload, a nemesis and client settings); [`bug_matrix`] turns that into a campaign of N
//! short runs per bug, plus the same runs with no bug at all, which must all be linearizable
//! (a harness that flags a correct node is as useless as one that misses a bug).
//! [`detection`] reduces the records to one row per bug: detection rate, median time until the
//! first violation, and the nemesis that exposed it most often.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matrix::{MatrixEntry, MatrixError};
use super::record::{EntryVerdict, RunRecord};

/// A planted bug and the test chosen to expose it.
#[derive(Debug, Clone, Copy)]
pub struct PlantedBug {
    /// The `--bug` name of `riptide-server`.
    pub name: &'static str,
    /// The rule it breaks.
    pub rule: &'static str,
    pub workload: &'static str,
    pub nemesis: &'static str,
    /// Extra `riptide test` flags (how the clients behave, fault timing).
    pub args: &'static [&'static str],
    /// Why this test should expose it.
    pub why: &'static str,
}

/// Node flags of every run of the matrix. The detection windows above (how long a cut-off
/// leader keeps answering, how long clients wait for it) were reasoned about and measured with
/// 500 ms election timeouts; pinning it keeps the matrix measuring the same thing when the
/// node's default changes (150 ms since 2026-11-23).
pub const MATRIX_NODE_ARGS: &[&str] = &["--node-arg=--election-ms=500"];

/// Every planted bug of the node, with its test (see the README's matrix for how often each
/// is found, and why forget-vote and commit-old-term rarely are).
pub const PLANTED_BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: "stale-follower-reads",
        rule: "reads are served only by a leader that confirmed its leadership (ReadIndex)",
        workload: "kv",
        nemesis: "isolate-one,pause-one",
        args: &["--read-from", "any", "--nemesis-interval", "2s"],
        why: "reads spread over every node; a cut-off or paused follower keeps answering its old state",
    },
    PlantedBug {
        name: "leader-local-reads",
        rule: "a leader confirms leadership with a majority heartbeat round before a read",
        workload: "kv",
        // With check-quorum a cut-off leader steps down 0.5-1 election timeouts after it lost
        // the majority, and the majority elects after 0.5-1 election timeouts too: about
        // two times in three the new leader is up first. Clients leave the old leader after
        // 250 ms (not the default 1.5 s, which outlasts that window), meet the new one through
        // the followers' redirects and write there, while every third read still goes to the
        // old leader, which answers it at once from its old state. One second of quiet between
        // faults fits ten isolations in 30 s. (Pausing the leader exposes it too, but only when
        // a queued read wins the race against the new leader's messages at the resume: 6-7/10.)
        nemesis: "isolate-leader",
        args: &[
            "--read-from",
            "any",
            "--attempt-timeout",
            "250ms",
            "--nemesis-interval",
            "2s",
            "--nemesis-quiet",
            "1s",
        ],
        why: "a leader cut off from the majority keeps answering reads from its own state until check-quorum makes it step down, while clients that left it write through the new leader",
    },
    PlantedBug {
        name: "ack-before-commit",
        rule: "a write is acknowledged only once it is committed (on a majority) and applied",
        workload: "kv",
        nemesis: "isolate-leader,kill-leader",
        args: &["--nemesis-interval", "2s"],
        why: "writes acknowledged by a leader that is then cut off or killed are lost",
    },
    PlantedBug {
        name: "no-dedup",
        rule: "a write carrying a Request-Id already applied is not applied again",
        workload: "append",
        nemesis: "pause-leader,kill-leader",
        // Closed-loop clients keep ~10 writes in flight at the moment the leader stops; 64
        // keys keep every key's history short, so checking stays fast.
        args: &[
            "--keys",
            "64",
            "--concurrency",
            "10",
            "--rate",
            "0",
            "--nemesis-interval",
            "1s",
        ],
        why: "writes in flight when the leader stops are committed by the next leader and applied again when the clients retry them",
    },
    PlantedBug {
        name: "skip-log-check",
        rule: "followers check prevLogIndex/prevLogTerm before accepting AppendEntries",
        workload: "append",
        // The bug shows only when a leader's prevLogIndex falls inside a follower's divergent
        // suffix: a new leader's first probe is at its own last index, which a follower cut
        // off since the *previous* leader holds with other entries. Leader churn makes exactly
        // that: each cut-off leader keeps the writes it took alone, rejoins when the next
        // leader is cut, and is probed by a third leader whose log runs past its divergence;
        // it accepts, commits its own entries, and shows them once it leads. Four-second
        // churns (two to three leaders each) with one second of quiet: six per 30 s.
        nemesis: "leader-churn",
        args: &[
            "--keys",
            "16",
            "--nemesis-interval",
            "4s",
            "--nemesis-quiet",
            "1s",
        ],
        why: "leader churn leaves each cut-off leader with writes only it holds; a later leader whose log runs past them probes it inside that suffix, the follower accepts without the check, commits and applies its own entries, and shows them once it leads",
    },
    PlantedBug {
        name: "forget-vote",
        rule: "term and vote are persisted before a vote is answered",
        workload: "kv",
        // A forgotten vote matters only if the node is asked again in the same term before it
        // hears of the leader it elected: crash-restart-voter isolates the leader, slows the
        // others' links so a vote and the new leader's first entry are apart, crashes the voter
        // in that gap and lets the old leader (a term behind) reach it alone. Two-second faults
        // leave room for the 500-1000 ms election timeouts of the matrix.
        nemesis: "crash-restart-voter",
        args: &["--nemesis-interval", "2s"],
        why: "a voter crash-restarted between its vote and the new leader's first entry forgets the vote and elects the old leader in the same term: two leaders commit through it",
    },
    PlantedBug {
        name: "commit-old-term",
        rule: "a leader commits by counting replicas only entries of its own term (Figure 8)",
        workload: "append",
        // Random faults almost never make a follower acknowledge old entries alone: a new
        // leader ships its no-op with them. figure-8 builds the sequence with link cuts (see
        // the nemesis's figure8 module); it needs a follower more than one AppendEntries batch
        // behind, so batches are 6 entries here (the node's default 1024 would need a
        // suffix of over a thousand writes; the suffix is about one write per client, 9-12).
        // The overwritten entries are mostly writes their clients retried, so reads rarely
        // show them (1/10 from reads alone, 2026-12-03); the nodes' applied digests do
        // (`replicas diverged`). 256 keys keep the reads' chances up where they have any.
        // Twelve-second windows fit the five steps (four elections of 500-1000 ms, two of them
        // a term late) and two rounds per 30 s. Measured 10/10 (2026-12-04): see the README.
        nemesis: "figure-8",
        args: &[
            "--nodes",
            "5",
            "--keys",
            "256",
            "--node-arg=--max-entries-per-message=6",
            "--nemesis-interval",
            "12s",
            "--nemesis-quiet",
            "1s",
        ],
        why: "figure-8 leaves a term-T suffix on the leader and one follower, lets the leader of a later term send a third node a first batch of it alone, and overwrites that batch from a term in between: a leader that counts replicas of old entries has committed and applied it: its applied digest differs from the others' at the same index (replicas diverged), and its reads show it once it leads again",
    },
    PlantedBug {
        name: "no-fsync",
        rule: "a node acknowledges and replicates entries only once they are on stable storage (fsync)",
        workload: "kv",
        nemesis: "power-cut,lose-unsynced,kill-leader",
        args: &["--nemesis-interval", "1s", "--nemesis-quiet", "500ms"],
        why: "only a power cut shows it: nodes that acknowledged entries they never fsynced forget them all at once, so writes a majority acknowledged are gone",
    },
    PlantedBug {
        name: "wal-trusts-length",
        rule: "WAL recovery cuts only a torn tail; a damaged record followed by valid ones is an error, never a silent loss",
        workload: "append",
        // One node's damaged log is repaired by Raft (the others hold every committed entry
        // and the node catches up in milliseconds, long before any next fault), so `corrupt`
        // alone cannot show it: the damage must hit a majority at once, which `corrupt-all`
        // does (every node killed, one bit flipped in one data file of each). A correct node
        // refuses to start and is repaired; with the bug, when two of three flips land in the
        // WAL, those nodes cut their logs and elect one of themselves.
        nemesis: "corrupt-all",
        args: &["--keys", "16", "--nemesis-interval", "1s", "--nemesis-quiet", "1s"],
        why: "only correlated bit flips at rest show it: nodes cut acknowledged records after a damaged one as if they were a torn tail, and a majority of them elects a leader without those records",
    },    PlantedBug {
        name: "two-changes-in-flight",
        rule: "at most one membership change is in flight: a leader takes a change only once the previous one is committed",
        workload: "kv",
        // Random changes never show it: on a connected cluster two quick promotions both commit
        // everywhere. `promote-split` first cuts the leader and two caught-up learners off from
        // the other voters, then promotes both: the second is accepted while the first is
        // uncommitted, and five voters with the leader's side as majority commit writes while
        // the cut-off voters, still counting three, elect their own leader. Three-second
        // windows leave room for the 500-1000 ms election on the cut-off side.
        nemesis: "promote-split",
        args: &["--nemesis-interval", "3s"],
        why: "two learners promoted at once behind a partition make a configuration of five whose majority is the leader's side, while the cut-off voters, still in the old configuration of three, elect a second leader: both commit writes",
    },
];

/// The name used for the runs with no bug.
pub const NO_BUG: &str = "none";

/// Looks a planted bug up by name.
pub fn find(name: &str) -> Option<&'static PlantedBug> {
    PLANTED_BUGS.iter().find(|b| b.name == name)
}

/// The `riptide-server` flags that plant `bug` in a node (nothing for [`NO_BUG`]).
pub fn node_flags(bug: &str) -> Vec<String> {
    if bug == NO_BUG {
        return Vec::new();
    }
    vec!["--unsafe".to_string(), format!("--bug={bug}")]
}

/// The campaign of `--bugs`: `runs` runs per selected bug, and `runs` runs with no bug for
/// each distinct test those bugs use. `selected` empty means every bug; `none` in it selects
/// the no-bug runs alone. Seed-major, like every matrix.
pub fn bug_matrix(
    selected: &[String],
    runs: u64,
    first_seed: u64,
) -> Result<Vec<MatrixEntry>, MatrixError> {
    for name in selected {
        if name != NO_BUG && find(name).is_none() {
            return Err(MatrixError::Parse {
                path: "--bug".into(),
                message: format!(
                    "unknown planted bug {name:?} (known: {}, {NO_BUG})",
                    PLANTED_BUGS
                        .iter()
                        .map(|b| b.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let chosen: Vec<&PlantedBug> = PLANTED_BUGS
        .iter()
        .filter(|b| selected.is_empty() || selected.iter().any(|s| s == b.name))
        .collect();
    // The no-bug runs use the tests of the chosen bugs (all of them when only `none` is asked).
    let baseline_of: Vec<&PlantedBug> = if chosen.is_empty() {
        PLANTED_BUGS.iter().collect()
    } else {
        chosen.clone()
    };
    let mut tests: Vec<(Option<&str>, &PlantedBug)> =
        chosen.iter().map(|b| (Some(b.name), *b)).collect();
    if selected.is_empty() || selected.iter().any(|s| s == NO_BUG) {
        let mut seen: Vec<(&str, &str, &[&str])> = Vec::new();
        for b in baseline_of {
            let key = (b.workload, b.nemesis, b.args);
            if !seen.contains(&key) {
                seen.push(key);
                tests.push((None, b));
            }
        }
    }
    let mut entries = Vec::new();
    for k in 0..runs {
        for (bug, test) in &tests {
            let mut args: Vec<String> = MATRIX_NODE_ARGS.iter().map(|a| a.to_string()).collect();
            args.extend(test.args.iter().map(|a| a.to_string()));
            entries.push(MatrixEntry {
                id: entries.len(),
                test_name: format!(
                    "bug-{}-{}",
                    bug.unwrap_or(NO_BUG),
                    super::matrix::default_test_name(test.workload, test.nemesis)
                ),
                workload: test.workload.to_string(),
                nemesis: test.nemesis.to_string(),
                seed: first_seed + k,
                bug: Some(bug.unwrap_or(NO_BUG).to_string()),
                args,
            });
        }
    }
    if entries.is_empty() {
        return Err(MatrixError::Empty);
    }
    Ok(entries)
}

/// One row of the detection matrix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DetectionRow {
    /// The planted bug, or `none`.
    pub bug: String,
    pub workload: String,
    pub nemesis: String,
    /// Runs that finished (not skipped).
    pub runs: usize,
    /// Runs that found a violation (`not linearizable` or `replicas diverged`).
    pub detected: usize,
    /// Runs that failed or were unknown (neither verdict).
    pub inconclusive: usize,
    /// Median time from the start of the workload to the first violation, over detecting runs.
    pub median_first_violation_ms: Option<f64>,
    /// The fault that was active (or last) when the violation showed, most often.
    pub exposed_by: Option<String>,
}

/// Reduces a `--bugs` campaign's runs to one row per (bug, test), in first-seen order.
pub fn detection(runs: &[RunRecord]) -> Vec<DetectionRow> {
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in runs.iter().filter(|r| !r.verdict.is_skipped()) {
        let key = (
            r.entry.bug.clone().unwrap_or_else(|| NO_BUG.to_string()),
            r.entry.workload.clone(),
            r.entry.nemesis.clone(),
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|key| {
            let rs = &groups[&key];
            let detecting: Vec<&&RunRecord> = rs.iter().filter(|r| r.is_violation()).collect();
            let times: Vec<f64> = detecting
                .iter()
                .filter_map(|r| r.first_violation_ms)
                .collect();
            let mut by: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &detecting {
                if let Some(n) = &r.exposed_by {
                    *by.entry(n.as_str()).or_default() += 1;
                }
            }
            let exposed_by = by
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(name, n)| format!("{name} ({n}/{})", detecting.len()));
            DetectionRow {
                bug: key.0,
                workload: key.1,
                nemesis: key.2,
                runs: rs.len(),
                detected: detecting.len(),
                inconclusive: rs
                    .iter()
                    .filter(|r| {
                        !r.is_violation()
                            && r.verdict
                                != EntryVerdict::Ran(crate::store::RunVerdict::Linearizable)
                    })
                    .count(),
                median_first_violation_ms: median(times),
                exposed_by,
            }
        })
        .collect()
}

/// The median (mean of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_reads_back_the_bug_that_node_flags_plant() {
        for bug in PLANTED_BUGS {
            let flags = node_flags(bug.name);
            assert_eq!(crate::store::planted_bug(&flags).as_deref(), Some(bug.name));
        }
        assert_eq!(crate::store::planted_bug(&node_flags(NO_BUG)), None);
    }

    #[test]
    fn the_bug_matrix_runs_every_bug_and_a_no_bug_baseline() {
        let entries = bug_matrix(&[], 2, 1).unwrap();
        let bugs: std::collections::BTreeSet<&str> =
            entries.iter().filter_map(|e| e.bug.as_deref()).collect();
        assert_eq!(bugs.len(), PLANTED_BUGS.len() + 1);
        assert!(bugs.contains(NO_BUG));
        for e in &entries {
            // The entry names its bug; the campaign plants it (cli::campaign::test_args).
            let planted = node_flags(e.bug.as_deref().unwrap_or(NO_BUG));
            assert_eq!(
                planted.is_empty(),
                e.bug.as_deref() == Some(NO_BUG),
                "{e:?}"
            );
        }
        // Seed-major: the first half is seed 1.
        let half = entries.len() / 2;
        assert!(entries[..half].iter().all(|e| e.seed == 1));
    }

    #[test]
    fn selecting_bugs_keeps_their_baseline_and_unknown_names_are_refused() {
        let only = bug_matrix(&["no-dedup".into()], 3, 1).unwrap();
        assert_eq!(only.len(), 3);
        let with_base = bug_matrix(&["no-dedup".into(), NO_BUG.into()], 3, 1).unwrap();
        assert_eq!(with_base.len(), 6);
        assert!(with_base
            .iter()
            .any(|e| e.bug.as_deref() == Some(NO_BUG) && e.workload == "append"));
        let err = bug_matrix(&["typo".into()], 3, 1).unwrap_err();
        assert!(err.to_string().contains("no-dedup"), "{err}");
    }

    #[test]
    fn detection_counts_violations_and_takes_the_median_time() {
        let entries = bug_matrix(&["no-dedup".into()], 3, 1).unwrap();
        let runs: Vec<RunRecord> = entries
            .into_iter()
            .zip([
                ("not linearizable", Some(1000.0)),
                ("linearizable", None),
                ("not linearizable", Some(3000.0)),
            ])
            .map(|(e, (v, t))| {
                let mut r = RunRecord::skipped(e, "");
                r.verdict = v.parse().unwrap();
                r.first_violation_ms = t;
                r.exposed_by = t.map(|_| "pause-leader".into());
                r
            })
            .collect();
        let rows = detection(&runs);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].runs, 3);
        assert_eq!(rows[0].detected, 2);
        assert_eq!(rows[0].median_first_violation_ms, Some(2000.0));
        assert_eq!(rows[0].exposed_by.as_deref(), Some("pause-leader (2/2)"));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
