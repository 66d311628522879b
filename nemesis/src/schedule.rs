//! Seeded fault schedules: the same seed, fault list, node count and interval give the same
//! sequence of concrete faults every time, whatever the system under test does meanwhile.
//!
//! Timing is fixed and simple, like Jepsen's default nemesis generator: the run starts with a quiet
//! period `q`, then alternates a fault window of `interval` and a quiet `q`. The quiet period is the
//! interval unless the spec says otherwise (`quiet_ms`: long faults with short recoveries fit more
//! faults into a run):
//!
//! ```text
//! time  0      q        q+i    2q+i     2q+2i  ...
//!       |quiet |fault1  |quiet |fault2  |quiet |...
//! ```
//!
//! Faults of the `crash` and `disk` families end on their own once their nodes are back; their
//! window is an upper bound, and the rest of it is quiet too.
//!
//! Which fault comes next is dealt, not drawn: the listed kinds are grouped by family, and the
//! schedule deals the families like a shuffled deck (every family once, in a seeded order, then
//! reshuffled), and within each family its kinds the same way. Drawing kinds independently left
//! a 30 s run of ten faults without any fault of some family about one time in six, and the one
//! kind that exposes a given bug (say `power-cut` among eighteen) out of most runs; dealt, a run
//! of `n` faults over `f` families plays every family at least `n / f` times, and a family's
//! kinds in turn (Jepsen's combined nemesis also picks a family first, then a fault of it).
//! A family's first round leads with the kind listed first, the rest shuffled: a run that plays
//! a family at all plays that kind, so a list names the kind it must not miss first (the default
//! nemesis leads with `stall-leader` and `power-cut`; shuffled, a family of four kinds dealt
//! three times left its one kind out of a run in four).
//!
//! Every choice comes from a ChaCha8 RNG seeded with the seed, fault `k` after faults `0..k`,
//! whatever the timing, so a longer run extends a shorter one's schedule instead of changing it,
//! and a different quiet period keeps the seed's faults and their order. A [`Schedule`] is plain serde data: the
//! harness stores it with a run and replays it exactly (schedules stored before a field existed
//! read it as its default).

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::NemesisError;
use crate::fault::{FaultFamily, FaultKind, FaultOptions, FaultPlan};

/// What a schedule is generated from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Seed of every random choice (which kind, which node, which halves).
    pub seed: u64,
    /// The kinds to deal from (family by family, see the module docs); an empty list gives an
    /// empty schedule.
    pub faults: Vec<FaultKind>,
    /// Cluster size.
    pub nodes: usize,
    /// Length of each fault window, in milliseconds; also of each quiet period unless `quiet_ms`
    /// is given.
    pub interval_ms: u64,
    /// Length of the quiet period before each fault, in milliseconds, when it differs from the
    /// interval (`--nemesis-quiet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_ms: Option<u64>,
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
        let quiet_ms = spec.quiet_ms.unwrap_or(spec.interval_ms);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut dealer = Dealer::new(&spec.faults);
        let mut faults = Vec::new();
        let mut start_ms = quiet_ms;
        while let Some(end_ms) = start_ms
            .checked_add(spec.interval_ms)
            .filter(|&end| end <= run_ms)
        {
            let Some(kind) = dealer.deal(&mut rng) else {
                break;
            };
            let plan = FaultPlan::choose(kind, spec.nodes, &spec.options, &mut rng)?;
            faults.push(ScheduledFault {
                start_ms,
                end_ms,
                plan,
            });
            start_ms = end_ms.saturating_add(quiet_ms);
        }
        Ok(Schedule { spec, faults })
    }

    /// Every kind the schedule draws from, whether or not it drew it: what the cluster must
    /// support to play it, or a replay of it.
    pub fn kinds(&self) -> Vec<crate::fault::FaultKind> {
        let mut kinds = self.spec.faults.clone();
        for fault in &self.faults {
            if !kinds.contains(&fault.plan.kind()) {
                kinds.push(fault.plan.kind());
            }
        }
        kinds
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

/// Deals fault kinds family by family (see the module docs): a shuffled deck of families, and one
/// of kinds per family, each refilled and reshuffled when it runs out.
struct Dealer {
    /// The listed kinds of each family, families in first-mention order.
    families: Vec<Vec<FaultKind>>,
    /// Families (indices into `families`) left in this round, dealt from the back.
    family_deck: Vec<usize>,
    /// Per family, its kinds left in this round, dealt from the back.
    kind_decks: Vec<Vec<FaultKind>>,
    /// Per family, whether its first round has been dealt.
    dealt: Vec<bool>,
}

impl Dealer {
    fn new(kinds: &[FaultKind]) -> Dealer {
        let mut families: Vec<(FaultFamily, Vec<FaultKind>)> = Vec::new();
        for &kind in kinds {
            match families.iter_mut().find(|(f, _)| *f == kind.family()) {
                Some((_, members)) => members.push(kind),
                None => families.push((kind.family(), vec![kind])),
            }
        }
        let families: Vec<Vec<FaultKind>> = families.into_iter().map(|(_, k)| k).collect();
        Dealer {
            kind_decks: vec![Vec::new(); families.len()],
            dealt: vec![false; families.len()],
            family_deck: Vec::new(),
            families,
        }
    }

    /// The next kind; `None` when no kind is listed.
    fn deal(&mut self, rng: &mut ChaCha8Rng) -> Option<FaultKind> {
        if self.family_deck.is_empty() {
            self.family_deck = (0..self.families.len()).collect();
            self.family_deck.shuffle(rng);
        }
        let family = self.family_deck.pop()?;
        let deck = &mut self.kind_decks[family];
        if deck.is_empty() {
            *deck = self.families[family].clone();
            if self.dealt[family] {
                deck.shuffle(rng);
            } else {
                // The first round leads with the kind listed first (dealt from the back).
                deck[1..].shuffle(rng);
                deck.reverse();
                self.dealt[family] = true;
            }
        }
        deck.pop()
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
            quiet_ms: None,
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
    fn a_quiet_period_retimes_the_faults_but_keeps_the_seeds_choices() {
        let regular = Schedule::generate(spec(3), Duration::from_secs(60)).unwrap();
        let mut quick = spec(3);
        quick.quiet_ms = Some(250);
        let quick = Schedule::generate(quick, Duration::from_millis(10_000)).unwrap();
        // Windows of 1 s after 250 ms of quiet: 0.25-1.25, 1.5-2.5, ..., 8.75-9.75.
        assert_eq!(quick.faults.len(), 8);
        for (k, fault) in quick.faults.iter().enumerate() {
            assert_eq!(fault.start_ms, 250 + 1250 * k as u64);
            assert_eq!(fault.end_ms, fault.start_ms + 1000);
            assert_eq!(fault.plan, regular.faults[k].plan);
        }
        // Zero quiet is allowed: faults back to back.
        let mut tight = spec(3);
        tight.quiet_ms = Some(0);
        let tight = Schedule::generate(tight, Duration::from_millis(3000)).unwrap();
        let starts: Vec<u64> = tight.faults.iter().map(|f| f.start_ms).collect();
        assert_eq!(starts, [0, 1000, 2000]);
    }

    #[test]
    fn a_schedule_stored_before_quiet_periods_and_new_options_still_reads() {
        let old = r#"{
          "spec": {"seed": 7, "faults": ["partition-halves", "kill-leader"], "nodes": 3,
                   "interval_ms": 3000,
                   "options": {"slow_latency_ms": 100, "slow_jitter_ms": 50,
                               "throttle_bytes_per_sec": 16384}},
          "faults": [
            {"start_ms": 3000, "end_ms": 6000,
             "plan": {"kind": "partition-halves", "left": [0], "right": [1, 2]}},
            {"start_ms": 9000, "end_ms": 12000, "plan": {"kind": "kill-leader", "fallback": 2}}
          ]
        }"#;
        let schedule = Schedule::from_json(old).unwrap();
        assert_eq!(schedule.spec.quiet_ms, None);
        assert_eq!(schedule.spec.options, FaultOptions::default());
        assert_eq!(
            schedule.faults[1].plan,
            FaultPlan::KillLeader { fallback: 2 }
        );
        // And it is written back without the new field, as it was.
        assert!(!schedule.to_json().contains("quiet_ms"));
    }

    #[test]
    fn schedule_round_trips_through_json() {
        let mut spec = spec(5);
        spec.quiet_ms = Some(500);
        let schedule = Schedule::generate(spec, Duration::from_secs(60)).unwrap();
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
    fn every_family_is_dealt_once_before_any_family_comes_again() {
        for seed in 0..50 {
            let schedule = Schedule::generate(spec(seed), Duration::from_secs(300)).unwrap();
            let families: Vec<FaultFamily> = schedule
                .faults
                .iter()
                .map(|f| f.plan.kind().family())
                .collect();
            let listed = FaultFamily::ALL.len();
            assert!(families.len() >= 3 * listed, "seed {seed}: too few faults");
            assert_rounds_distinct(&families, listed, &format!("seed {seed}"));
        }
    }

    #[test]
    fn a_familys_kinds_are_dealt_in_turn() {
        let mut spec = spec(4);
        spec.faults = parse_fault_list("kill,pause").unwrap();
        let schedule = Schedule::generate(spec, Duration::from_secs(60)).unwrap();
        let kills: Vec<FaultKind> = schedule
            .faults
            .iter()
            .map(|f| f.plan.kind())
            .filter(|k| k.family() == FaultFamily::Kill)
            .collect();
        // Each round of kills (as many as there are kill kinds) holds every kill kind once.
        let round = FaultFamily::Kill.kinds().len();
        assert!(kills.len() >= 2 * round);
        assert_rounds_distinct(&kills, round, "kills");
    }

    /// Asserts that each consecutive run of `round` items (a round of the deal) holds `round`
    /// different ones.
    fn assert_rounds_distinct<T: Ord + Clone + std::fmt::Debug>(
        items: &[T],
        round: usize,
        what: &str,
    ) {
        for (k, chunk) in items.chunks_exact(round).enumerate() {
            let mut seen = chunk.to_vec();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), round, "{what}, round {k}: {chunk:?}");
        }
    }

    #[test]
    fn a_membership_schedule_is_seeded_and_deals_every_membership_kind() {
        let membership = |seed: u64| ScheduleSpec {
            faults: parse_fault_list("partition,membership").unwrap(),
            nodes: 3,
            ..spec(seed)
        };
        let a = Schedule::generate(membership(5), Duration::from_secs(40)).unwrap();
        let b = Schedule::generate(membership(5), Duration::from_secs(40)).unwrap();
        assert_eq!(a, b);
        let c = Schedule::generate(membership(6), Duration::from_secs(40)).unwrap();
        assert_ne!(a.faults, c.faults);
        let kinds: Vec<FaultKind> = a.faults.iter().map(|f| f.plan.kind()).collect();
        // Two families dealt in turn: every second fault is a membership change, and the four
        // membership kinds all come within eight faults.
        for pair in kinds.chunks(2).take(8) {
            let families: Vec<FaultFamily> = pair.iter().map(|k| k.family()).collect();
            assert!(families.contains(&FaultFamily::Membership), "{kinds:?}");
        }
        let dealt: std::collections::BTreeSet<&str> = kinds[..8]
            .iter()
            .filter(|k| k.family() == FaultFamily::Membership)
            .map(|k| k.name())
            .collect();
        assert_eq!(dealt.len(), 4, "{kinds:?}");
        // Stored and replayed as is.
        assert_eq!(Schedule::from_json(&a.to_json()).unwrap(), a);
        assert!(a.to_json().contains("\"kind\": \"add-learner\""));
    }

    #[test]
    fn kinds_too_big_for_the_cluster_are_refused_up_front() {
        let mut spec = spec(0);
        spec.nodes = 2;
        assert!(Schedule::generate(spec, Duration::from_secs(10)).is_err());
    }
    #[test]
    fn a_familys_first_round_leads_with_its_first_listed_kind() {
        let faults = parse_fault_list("stall-leader,pause,power-cut,disk,partition").unwrap();
        for seed in 0..50 {
            let mut spec = spec(seed);
            spec.faults = faults.clone();
            let schedule = Schedule::generate(spec, Duration::from_secs(60)).unwrap();
            let first_of = |family: FaultFamily| {
                schedule
                    .faults
                    .iter()
                    .map(|f| f.plan.kind())
                    .find(|k| k.family() == family)
            };
            assert_eq!(first_of(FaultFamily::Pause), Some(FaultKind::StallLeader));
            assert_eq!(first_of(FaultFamily::Disk), Some(FaultKind::PowerCut));
        }
        // Later rounds are shuffled: the pause family does not always lead with stall-leader
        // in its second round.
        let second_rounds: std::collections::BTreeSet<FaultKind> = (0..50)
            .map(|seed| {
                let mut spec = spec(seed);
                spec.faults = faults.clone();
                let schedule = Schedule::generate(spec, Duration::from_secs(60)).unwrap();
                schedule
                    .faults
                    .iter()
                    .map(|f| f.plan.kind())
                    .filter(|k| k.family() == FaultFamily::Pause)
                    .nth(3)
                    .unwrap()
            })
            .collect();
        assert!(second_rounds.len() > 1, "{second_rounds:?}");
    }
}
