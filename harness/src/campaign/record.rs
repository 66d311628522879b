//! `campaign.json`: what a campaign ran and found, one record per matrix entry.
//!
//! The record is the campaign's single source of truth: the summary table, the JUnit XML and
//! the index page are all rendered from it, and `riptide campaign merge` joins the records of
//! several shards (by matrix entry number) into one and renders them again.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::matrix::{MatrixEntry, Shard};
use crate::store::{RunResults, RunVerdict};

/// The name of the verdict of an entry that never ran.
pub const SKIPPED: &str = "skipped";

/// How a matrix entry ended: the run's verdict, or skipped (the budget was spent, or the
/// campaign stopped). Serialized as the verdict's name (`"not linearizable"`, `"skipped"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntryVerdict {
    Ran(RunVerdict),
    Skipped(SkippedTag),
}

/// The one spelling of a skipped entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkippedTag {
    #[serde(rename = "skipped")]
    Skipped,
}

impl EntryVerdict {
    pub const SKIPPED: EntryVerdict = EntryVerdict::Skipped(SkippedTag::Skipped);

    pub fn name(self) -> &'static str {
        match self {
            EntryVerdict::Ran(v) => v.name(),
            EntryVerdict::Skipped(_) => SKIPPED,
        }
    }

    pub fn is_skipped(self) -> bool {
        matches!(self, EntryVerdict::Skipped(_))
    }
}

impl std::fmt::Display for EntryVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EntryVerdict {
    type Err = String;
    fn from_str(s: &str) -> Result<EntryVerdict, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown verdict {s:?}"))
    }
}

/// One run of the campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// The matrix entry that was run.
    #[serde(flatten)]
    pub entry: MatrixEntry,
    pub verdict: EntryVerdict,
    /// The run's exit code as `riptide test` would give it (`None` when skipped).
    pub exit_code: Option<u8>,
    /// The run's folder relative to the store (`<test>/<stamp>-<seed>`).
    pub run_dir: Option<String>,
    pub ops: u64,
    pub faults: usize,
    /// Wall time of the whole run (start, workload, recovery, check, report).
    pub duration_ms: u64,
    /// Time since the workload started of the first operation the counterexample names (the
    /// operation that cannot be linearized): when the violation first showed.
    pub first_violation_ms: Option<f64>,
    /// The fault active at that time (or the last one before it, as `after <name>`).
    pub exposed_by: Option<String>,
    /// Why the verdict is what it is (first few reasons).
    pub reasons: Vec<String>,
}

impl RunRecord {
    /// A matrix entry that was not run.
    pub fn skipped(entry: MatrixEntry, why: &str) -> RunRecord {
        RunRecord {
            entry,
            verdict: EntryVerdict::SKIPPED,
            exit_code: None,
            run_dir: None,
            ops: 0,
            faults: 0,
            duration_ms: 0,
            first_violation_ms: None,
            exposed_by: None,
            reasons: vec![why.to_string()],
        }
    }

    /// The record of a finished run, from its results and its folder.
    pub fn from_run(
        entry: MatrixEntry,
        results: &RunResults,
        run_dir: &Path,
        store: &Path,
    ) -> RunRecord {
        let rel = run_dir
            .strip_prefix(store)
            .unwrap_or(run_dir)
            .to_string_lossy()
            .replace('\\', "/");
        // A divergence shows when its second digest was seen.
        let divergence_ns = results
            .divergence
            .as_ref()
            .map(|d| d.first.time_ns.max(d.second.time_ns));
        let violation_ns = results
            .counterexample
            .as_ref()
            .and_then(|cx| cx.first_violation_ns)
            .or(divergence_ns);
        let exposed_by = violation_ns.and_then(|t| exposing_fault(&results.faults, t));
        RunRecord {
            entry,
            verdict: EntryVerdict::Ran(results.verdict),
            exit_code: Some(results.exit_code),
            run_dir: Some(rel),
            ops: results.stats.invocations,
            faults: results.stats.faults_injected,
            duration_ms: results.stats.total_ms,
            first_violation_ms: violation_ns.map(|ns| ns as f64 / 1e6),
            exposed_by,
            reasons: results.reasons.iter().take(5).cloned().collect(),
        }
    }

    pub fn is_violation(&self) -> bool {
        matches!(self.verdict, EntryVerdict::Ran(v) if v.is_violation())
    }
}

/// The fault that exposed a violation at `t_ns`: the one active then, else the last one that
/// ended before (`after <name>`), else `none` (no fault had started yet).
pub fn exposing_fault(faults: &[crate::store::FaultInterval], t_ns: u64) -> Option<String> {
    if let Some(active) = faults
        .iter()
        .rev()
        .find(|f| f.start_ns <= t_ns && f.end_ns.is_none_or(|end| t_ns <= end))
    {
        return Some(active.name.clone());
    }
    Some(
        faults
            .iter()
            .rev()
            .find(|f| f.start_ns <= t_ns)
            .map(|f| format!("after {}", f.name))
            .unwrap_or_else(|| "none".to_string()),
    )
}

/// `campaign.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignRecord {
    pub name: String,
    /// `matrix` or `bugs` (the detection matrix).
    pub mode: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: Option<String>,
    /// The shard this record covers (`None`: the whole matrix, or a merge of every shard).
    pub shard: Option<Shard>,
    /// Number of entries of the whole matrix (all shards).
    pub matrix_size: usize,
    pub time_limit_ms: u64,
    pub budget_ms: Option<u64>,
    /// The store the runs were written to, as given.
    pub store: String,
    /// One record per matrix entry of this shard, in matrix order.
    pub runs: Vec<RunRecord>,
    /// The records this one was merged from (`riptide campaign merge`).
    #[serde(default)]
    pub merged_from: Vec<String>,
    /// For a `--bugs` campaign: the detection matrix computed from `runs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detection: Vec<super::bugs::DetectionRow>,
}

/// Counts of a campaign's verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub linearizable: usize,
    pub not_linearizable: usize,
    /// Runs whose replicas diverged (with a linearizable history).
    pub diverged: usize,
    pub unknown: usize,
    pub run_failed: usize,
    pub skipped: usize,
}

impl Tally {
    /// Runs that found a violation of either kind.
    pub fn violations(&self) -> usize {
        self.not_linearizable + self.diverged
    }
}

impl CampaignRecord {
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for r in &self.runs {
            match r.verdict {
                EntryVerdict::Ran(RunVerdict::Linearizable) => t.linearizable += 1,
                EntryVerdict::Ran(RunVerdict::NotLinearizable) => t.not_linearizable += 1,
                EntryVerdict::Ran(RunVerdict::Diverged) => t.diverged += 1,
                EntryVerdict::Ran(RunVerdict::Unknown) => t.unknown += 1,
                EntryVerdict::Ran(RunVerdict::RunFailed) => t.run_failed += 1,
                EntryVerdict::Skipped(_) => t.skipped += 1,
            }
        }
        t
    }

    /// The campaign's exit code: 1 when any run found a violation (not linearizable, or
    /// replicas diverged), else 3 when a run failed, else 2 when a verdict is unknown, else 0.
    /// Skipped runs do not count.
    pub fn exit_code(&self) -> u8 {
        let t = self.tally();
        if t.violations() > 0 {
            1
        } else if t.run_failed > 0 {
            3
        } else if t.unknown > 0 {
            2
        } else {
            0
        }
    }

    /// Fills `detection` from the runs when this is a `--bugs` campaign.
    pub fn with_detection(mut self) -> CampaignRecord {
        self.detection = if self.mode == "bugs" {
            super::bugs::detection(&self.runs)
        } else {
            Vec::new()
        };
        self
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    pub fn load(path: &Path) -> Result<CampaignRecord, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a campaign.json: {e}", path.display()))
    }
}

/// Joins the records of several shards of one campaign. Entries are matched by matrix number;
/// a run present in several inputs keeps the one that actually ran (not skipped), and two
/// different real runs of one entry are an error (the inputs are not shards of one campaign).
pub fn merge(inputs: &[(String, CampaignRecord)]) -> Result<CampaignRecord, String> {
    let Some((_, first)) = inputs.first() else {
        return Err("nothing to merge".into());
    };
    let mut runs: BTreeMap<usize, RunRecord> = BTreeMap::new();
    for (origin, record) in inputs {
        if record.name != first.name || record.matrix_size != first.matrix_size {
            return Err(format!(
                "{origin} is campaign {:?} with {} entries, not {:?} with {} entries",
                record.name, record.matrix_size, first.name, first.matrix_size
            ));
        }
        for run in &record.runs {
            match runs.get(&run.entry.id) {
                Some(existing) if !existing.verdict.is_skipped() && !run.verdict.is_skipped() => {
                    if existing != run {
                        return Err(format!(
                            "matrix entry {} ({} seed {}) was run twice (in {origin} and another input)",
                            run.entry.id, run.entry.test_name, run.entry.seed
                        ));
                    }
                }
                Some(existing) if !existing.verdict.is_skipped() => {}
                _ => {
                    runs.insert(run.entry.id, run.clone());
                }
            }
        }
    }
    let started = inputs
        .iter()
        .map(|(_, r)| r.started.clone())
        .min()
        .unwrap_or_default();
    let finished = inputs.iter().filter_map(|(_, r)| r.finished.clone()).max();
    Ok(CampaignRecord {
        name: first.name.clone(),
        mode: first.mode.clone(),
        started,
        finished,
        shard: None,
        matrix_size: first.matrix_size,
        time_limit_ms: first.time_limit_ms,
        budget_ms: first.budget_ms,
        store: first.store.clone(),
        runs: runs.into_values().collect(),
        merged_from: inputs.iter().map(|(o, _)| o.clone()).collect(),
        detection: Vec::new(),
    }
    .with_detection())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FaultInterval;

    pub fn run(id: usize, verdict: &str) -> RunRecord {
        RunRecord {
            entry: MatrixEntry {
                id,
                test_name: "kv-partition".into(),
                workload: "kv".into(),
                nemesis: "partition".into(),
                seed: id as u64 + 1,
                bug: None,
                args: vec![],
            },
            verdict: verdict.parse().unwrap(),
            exit_code: Some(0),
            run_dir: Some(format!("kv-partition/x-{id}")),
            ops: 100,
            faults: 3,
            duration_ms: 1000,
            first_violation_ms: None,
            exposed_by: None,
            reasons: vec![],
        }
    }

    pub fn campaign(shard: Option<Shard>, runs: Vec<RunRecord>) -> CampaignRecord {
        CampaignRecord {
            name: "nightly".into(),
            mode: "matrix".into(),
            started: "2026-11-23T01:00:00Z".into(),
            finished: Some("2026-11-23T02:00:00Z".into()),
            shard,
            matrix_size: 4,
            time_limit_ms: 30_000,
            budget_ms: None,
            store: "histories".into(),
            runs,
            merged_from: vec![],
            detection: vec![],
        }
    }

    #[test]
    fn exit_code_puts_violations_first_and_ignores_skipped_runs() {
        let c = |vs: &[&str]| {
            campaign(
                None,
                vs.iter().enumerate().map(|(i, v)| run(i, v)).collect(),
            )
            .exit_code()
        };
        assert_eq!(c(&["linearizable", SKIPPED]), 0);
        assert_eq!(c(&["linearizable", "unknown"]), 2);
        assert_eq!(c(&["run failed", "unknown"]), 3);
        assert_eq!(c(&["run failed", "not linearizable"]), 1);
    }

    #[test]
    fn merging_shards_joins_their_runs_in_matrix_order() {
        let a = campaign(
            Some(Shard { index: 1, count: 2 }),
            vec![run(0, "linearizable"), run(2, "not linearizable")],
        );
        let b = campaign(
            Some(Shard { index: 2, count: 2 }),
            vec![run(1, "linearizable"), run(3, SKIPPED)],
        );
        let merged = merge(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap();
        let ids: Vec<usize> = merged.runs.iter().map(|r| r.entry.id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(merged.exit_code(), 1);
        assert_eq!(merged.shard, None);
        assert_eq!(merged.merged_from, ["a", "b"]);
        // The same shard twice is harmless; a different campaign is refused.
        assert!(merge(&[("a".into(), a.clone()), ("a2".into(), a.clone())]).is_ok());
        let mut other = a.clone();
        other.name = "weekly".into();
        assert!(merge(&[("a".into(), a), ("o".into(), other)]).is_err());
    }

    #[test]
    fn the_exposing_fault_is_the_active_one_or_the_last_before() {
        let f = |name: &str, start: u64, end: Option<u64>| FaultInterval {
            name: name.into(),
            description: String::new(),
            start_ns: start,
            end_ns: end,
            steps: Vec::new(),
        };
        let faults = vec![f("isolate-leader", 10, Some(20)), f("kill-one", 30, None)];
        assert_eq!(exposing_fault(&faults, 5).as_deref(), Some("none"));
        assert_eq!(
            exposing_fault(&faults, 15).as_deref(),
            Some("isolate-leader")
        );
        assert_eq!(
            exposing_fault(&faults, 25).as_deref(),
            Some("after isolate-leader")
        );
        assert_eq!(exposing_fault(&faults, 99).as_deref(), Some("kill-one"));
    }
}
