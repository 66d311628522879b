//! The typed files of a run folder: `config.json` ([`RunConfig`]) and `results.json`
//! ([`RunResults`], with its typed [`RunVerdict`]). The run writes them, and `riptide report`,
//! `riptide serve` and campaigns read them, through these same types, so the writer and the
//! readers cannot disagree on the schema. Fields added later carry `#[serde(default)]` so runs
//! stored by earlier versions still load.

use std::path::PathBuf;

use riptide_checker::CheckResult;
use serde::{Deserialize, Serialize};

use crate::run::workload::Workload;
use crate::system::etcd::EtcdReads;
use crate::system::{Route, SystemKind};

/// Everything needed to re-run a run: written as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub test_name: String,
    /// Wall-clock start, RFC 3339.
    pub started: String,
    pub seed: u64,
    pub nodes: usize,
    pub time_limit_ms: u64,
    pub concurrency: usize,
    pub rate: f64,
    pub workload: Workload,
    pub keys: usize,
    /// The fault list (`--nemesis`, with `default` expanded).
    pub nemesis: String,
    /// What the run had to leave out of what was asked, and why (e.g. disk faults where FUSE
    /// is unusable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub nemesis_interval_ms: u64,
    /// The quiet period before each fault when it differs from the interval (`--nemesis-quiet`).
    #[serde(default)]
    pub nemesis_quiet_ms: Option<u64>,
    /// Parameters of the faults (`--crash-downtime-max`, `--election-crashes`,
    /// `--election-window`, `--churn-dwell`); the defaults in runs made before the flags.
    #[serde(default)]
    pub fault_options: riptide_nemesis::FaultOptions,
    pub op_timeout_ms: u64,
    /// One HTTP attempt's timeout (`--attempt-timeout`); absent in runs made before the flag,
    /// which used the client's default.
    #[serde(default)]
    pub attempt_timeout_ms: Option<u64>,
    pub recovery_timeout_ms: u64,
    pub check_timeout_ms: u64,
    /// How long a failing run spends shrinking its history to `minimal.jsonl`
    /// (`--shrink-budget`; 0: not at all); the default in runs made before the flag.
    #[serde(default = "default_shrink_budget_ms")]
    pub shrink_budget_ms: u64,
    pub server_bin: PathBuf,
    pub node_args: Vec<String>,
    /// Where clients send reads first (`--read-from`).
    #[serde(default)]
    pub read_from: Route,
    /// Where clients send writes first (`--write-to`); `leader` in runs made before the flag.
    #[serde(default)]
    pub write_to: Route,
    /// How many clients ignore the rate (`--closed-loop`); 0 in runs made before the flag.
    #[serde(default)]
    pub closed_loop: usize,
    /// The system under test (`--system`); absent for Riptide.
    #[serde(default, skip_serializing_if = "SystemKind::is_riptide")]
    pub system: SystemKind,
    /// How etcd serves reads (`--etcd-reads`); absent unless the system is etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_reads: Option<EtcdReads>,
    /// The run this one replays, if any.
    #[serde(default)]
    pub replay_of: Option<PathBuf>,
    /// The harness version that ran it.
    pub riptide_version: String,
    /// A command that runs it again.
    pub rerun: String,
}

fn default_shrink_budget_ms() -> u64 {
    crate::run::minimal::DEFAULT_SHRINK_BUDGET.as_millis() as u64
}

/// The attempt timeout of runs stored before `--attempt-timeout` existed (their client's
/// default then), so they replay as they ran.
pub const LEGACY_ATTEMPT_TIMEOUT_MS: u64 = 1500;

impl RunConfig {
    /// One HTTP attempt's timeout.
    pub fn attempt_timeout_ms(&self) -> u64 {
        self.attempt_timeout_ms.unwrap_or(LEGACY_ATTEMPT_TIMEOUT_MS)
    }
}

/// How the run ended, as written to `results.json` and as the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunVerdict {
    #[serde(rename = "linearizable")]
    Linearizable,
    #[serde(rename = "not linearizable")]
    NotLinearizable,
    /// Two replicas showed different digests at the same applied index (see
    /// [`crate::run::replicas`]): a violation even when the history is linearizable.
    #[serde(rename = "replicas diverged")]
    Diverged,
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "run failed")]
    RunFailed,
}

impl std::fmt::Display for RunVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl RunVerdict {
    pub fn exit_code(self) -> u8 {
        match self {
            RunVerdict::Linearizable => 0,
            RunVerdict::NotLinearizable | RunVerdict::Diverged => 1,
            RunVerdict::Unknown => 2,
            RunVerdict::RunFailed => 3,
        }
    }
    /// Whether the run found a violation (the history is not linearizable, or the replicas
    /// diverged).
    pub fn is_violation(self) -> bool {
        matches!(self, RunVerdict::NotLinearizable | RunVerdict::Diverged)
    }

    pub fn name(self) -> &'static str {
        match self {
            RunVerdict::Linearizable => "linearizable",
            RunVerdict::NotLinearizable => "not linearizable",
            RunVerdict::Diverged => "replicas diverged",
            RunVerdict::Unknown => "unknown",
            RunVerdict::RunFailed => "run failed",
        }
    }
}

/// Counts written to `results.json` and shown at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    pub invocations: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Completed operations per second over the workload phase.
    pub ops_per_sec: f64,
    pub faults_injected: usize,
    pub workload_ms: u64,
    pub check_ms: Option<f64>,
    pub latency_ok_p50_ms: Option<f64>,
    pub latency_ok_p99_ms: Option<f64>,
    pub total_ms: u64,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub verdict: RunVerdict,
    pub exit_code: u8,
    /// Why the verdict is what it is (run failures, node problems, interruptions, the
    /// checker's findings).
    pub reasons: Vec<String>,
    /// The reasons that come from the run itself, not from the checker (kept when the
    /// history is checked again by `riptide report`).
    #[serde(default)]
    pub run_reasons: Vec<String>,
    /// Whether something went wrong around the history (a node died, the run was
    /// interrupted, ...): the verdict can then never be `linearizable`.
    #[serde(default)]
    pub run_problem: bool,
    pub stats: RunStats,
    pub faults: Vec<FaultInterval>,
    /// The fault kinds the schedule planned (to tell whether each family took effect).
    #[serde(default)]
    pub planned_faults: Vec<String>,
    /// When every fault had been healed (ns since the workload started).
    #[serde(default)]
    pub healed_ns: Option<u64>,
    pub node_problems: Vec<NodeProblem>,
    /// Two replicas that showed different applied digests at the same index, when any did
    /// (the verdict is then `replicas diverged` unless the history is not linearizable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<crate::run::replicas::Divergence>,
    /// The checker's full result (per-partition verdicts and counterexamples).
    pub check: Option<CheckResult>,
    /// The counterexample as the report draws it.
    pub counterexample: Option<CounterexampleView>,
    /// The wall-clock time (RFC 3339, nanoseconds) of the history's time 0: the nodes' log
    /// lines are placed on the history's time line by it. Absent in runs stored before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_utc: Option<String>,
}

/// A fault as it ran: what, from when to when (nanoseconds since the run started).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultInterval {
    /// The fault's vocabulary name, e.g. `partition-halves`.
    pub name: String,
    /// Who it hit, e.g. `halves [n1 n2] [n3]`.
    pub description: String,
    pub start_ns: u64,
    /// `None` when the run ended (or was interrupted) with the fault still active.
    pub end_ns: Option<u64>,
    /// What a fault that acts over time did within its window (`leader-churn` cut off the
    /// next leader, a crash restarted a node, a disk fault dropped writes), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// The counterexample of a failing partition, reduced to what the report draws.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CounterexampleView {
    /// The partition (key) that is not linearizable; `None` for an unkeyed model.
    pub key: Option<String>,
    /// Invoke-event indices of the longest linearizable prefix, in linearization order.
    pub prefix: Vec<u64>,
    /// Invoke-event indices of the operations that cannot be linearized after the prefix.
    pub failing: Vec<u64>,
    /// The model state after the prefix, as the checker prints it.
    pub state: String,
    /// The checker's own explanation, verbatim.
    pub explanation: String,
    /// When (ns since the run started) the first operation that cannot be linearized was
    /// invoked: when the violation first showed. Absent in runs stored before it was recorded.
    #[serde(default)]
    pub first_violation_ns: Option<u64>,
}

/// A node that misbehaved, with the end of its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProblem {
    /// 1-based node id.
    pub node: u64,
    /// What happened, e.g. "exited with status 101 while the nemesis had not killed it".
    pub what: String,
    pub last_log_lines: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_serialize_as_the_store_lists_them() {
        assert_eq!(
            serde_json::to_string(&RunVerdict::NotLinearizable).unwrap(),
            "\"not linearizable\""
        );
        assert_eq!(
            serde_json::to_string(&RunVerdict::RunFailed).unwrap(),
            "\"run failed\""
        );
        assert_eq!(
            serde_json::to_string(&RunVerdict::Diverged).unwrap(),
            "\"replicas diverged\""
        );
    }
}
