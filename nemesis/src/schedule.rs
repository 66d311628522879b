//! Seeded fault schedules: the same seed, fault list, node count and interval give the same
//! sequence of concrete faults every time, whatever the system under test does meanwhile.
//!
//! Timing is fixed and simple, like Jepsen's default nemesis generator: the run starts with a quiet
//! `interval`, then alternates a fault lasting `interval` and a quiet `interval`:
//!
//! ```text
//! time  0      i      2i     3i     4i     5i
//!       |quiet |fault1|quiet |fault2|quiet |...
//! ```
//!
//! Fault `k` is drawn from a ChaCha8 RNG seeded with the seed, after faults `0..k`, so a longer run
//! extends a shorter one's schedule instead of changing it. A [`Schedule`] is plain serde data: the
//! harness stores it with a run and replays it exactly.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::NemesisError;
use crate::fault::{FaultKind, FaultOptions, FaultPlan};

/// What a schedule is generated from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Seed of every random choice (which kind, which node, which halves).
    pub seed: u64,
    /// The kinds to draw from, uniformly; an empty list gives an empty schedule.
    pub faults: Vec<FaultKind>,
    /// Cluster size.
    pub nodes: usize,
    /// Length of each fault and of each quiet period between faults, in milliseconds.
    pub interval_ms: u64,
    /// Parameters of link-quality faults.
    #[serde(default)]
    pub options: FaultOptions,
}

/// One fault of a schedule, with its time window relative to the start of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// When to apply it, in milliseconds since the run started.
    pub start_ms: u64,
    /// When to heal it, in milliseconds since the run started.
    pub end_ms: u64,
    /// The fault itself.
    pub plan: FaultPlan,
}

impl ScheduledFault {
    /// Start offset as a duration.
    pub fn start(&self) -> Duration {
        Duration::from_millis(self.start_ms)
    }

    /// End offset as a duration.
    pub fn end(&self) -> Duration {
        Duration::from_millis(self.end_ms)
    }
}

/// A complete, replayable fault schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// What it was generated from.
    pub spec: ScheduleSpec,
    /// The faults in time order; they never overlap.
    pub faults: Vec<ScheduledFault>,
}

impl Schedule {
    /// Every fault that ends within a run of `run` length. Fails when a listed kind needs more
    /// nodes than the cluster has, or when the interval is zero.
    pub fn generate(spec: ScheduleSpec, run: Duration) -> Result<Schedule, NemesisError> {
        if spec.interval_ms == 0 {
            return Err(NemesisError::BadSchedule(
                "interval must be positive".into(),
            ));
        }
        for kind in &spec.faults {
            if spec.nodes < kind.min_nodes() {
                return Err(NemesisError::TooFewNodes {
                    topology: kind.name(),
                    needed: kind.min_nodes(),
                    count: spec.nodes,
                });
            }
        }
        let run_ms = u64::try_from(run.as_millis()).unwrap_or(u64::MAX);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut faults = Vec::new();
        let mut start_ms = spec.interval_ms;
        while let Some(end_ms) = start_ms
            .checked_add(spec.interval_ms)
            .filter(|&end| end <= run_ms)
        {
            let Some(&kind) = spec.faults.choose(&mut rng) else {
                break;
            };
            let plan = FaultPlan::choose(kind, spec.nodes, &spec.options, &mut rng)?;
            faults.push(ScheduledFault {
                start_ms,
                end_ms,
                plan,
            });
            start_ms = end_ms.saturating_add(spec.interval_ms);
        }
        Ok(Schedule { spec, faults })
    }

    /// The schedule as pretty JSON, to store next to a run.
    pub fn to_json(&self) -> String {
        // Plain data with string keys only: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a schedule stored with [`Schedule::to_json`].
    pub fn from_json(json: &str) -> Result<Schedule, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{parse_fault_list, ALL_KINDS};

    fn spec(seed: u64) -> ScheduleSpec {
        ScheduleSpec {
            seed,
            faults: ALL_KINDS.to_vec(),
            nodes: 5,
            interval_ms: 1000,
            options: FaultOptions::default(),
        }
    }

    #[test]
    fn same_seed_gives_the_same_schedule() {
        let a = Schedule::generate(spec(42), Duration::from_secs(120)).unwrap();
        let b = Schedule::generate(spec(42), Duration::from_secs(120)).unwrap();
        assert_eq!(a, b);
        let c = Schedule::generate(spec(43), Duration::from_secs(120)).unwrap();
        assert_ne!(a.faults, c.faults);
    }

    #[test]
    fn longer_run_extends_the_shorter_schedule() {
        let short = Schedule::generate(spec(9), Duration::from_secs(20)).unwrap();
        let long = Schedule::generate(spec(9), Duration::from_secs(60)).unwrap();
        assert_eq!(short.faults[..], long.faults[..short.faults.len()]);
    }

    #[test]
    fn faults_alternate_with_quiet_periods_and_end_within_the_run() {
        let schedule = Schedule::generate(spec(1), Duration::from_millis(10_500)).unwrap();
        assert_eq!(schedule.faults.len(), 5);
        for (k, fault) in schedule.faults.iter().enumerate() {
            assert_eq!(fault.start_ms, 1000 + 2000 * k as u64);
            assert_eq!(fault.end_ms, fault.start_ms + 1000);
        }
    }

    #[test]
    fn schedule_round_trips_through_json() {
        let schedule = Schedule::generate(spec(5), Duration::from_secs(60)).unwrap();
        let back = Schedule::from_json(&schedule.to_json()).unwrap();
        assert_eq!(back, schedule);
    }

    #[test]
    fn only_listed_kinds_are_drawn() {
        let mut spec = spec(11);
        spec.faults = parse_fault_list("kill").unwrap();
        let schedule = Schedule::generate(spec, Duration::from_secs(100)).unwrap();
        assert!(!schedule.faults.is_empty());
        for fault in &schedule.faults {
            assert!(fault.plan.kind().name().starts_with("kill-"));
        }
    }

    #[test]
    fn kinds_too_big_for_the_cluster_are_refused_up_front() {
        let mut spec = spec(0);
        spec.nodes = 2;
        assert!(Schedule::generate(spec, Duration::from_secs(10)).is_err());
    }
}
