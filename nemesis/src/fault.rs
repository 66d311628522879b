//! The fault vocabulary: kinds of fault with stable names for the CLI, concrete fault instances
//! drawn from a seeded RNG, and the history events that record them.
//!
//! A [`FaultKind`] is what a user asks for (`--faults partition,kill-one`). A [`FaultPlan`] is one
//! concrete instance of a kind, with every random choice already made (which node, which halves),
//! so a schedule of plans replays identically. Only "the leader" stays open in a plan: it is known
//! only at run time, and is passed to [`crate::apply`]; the plan carries a seeded fallback node for
//! when no leader is known.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::NemesisError;

/// Human-readable name of node index `node` in descriptions: `n1` for index 0.
pub fn node_name(node: usize) -> String {
    format!("n{}", node + 1)
}

/// `[n1 n2]` for nodes `[0, 1]`.
pub(crate) fn node_list(nodes: &[usize]) -> String {
    let names: Vec<String> = nodes.iter().map(|&n| node_name(n)).collect();
    format!("[{}]", names.join(" "))
}

/// One kind of fault, by its stable kebab-case name (the CLI spelling, also used in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `partition-halves`: split the nodes into two random halves that cannot talk to each other.
    PartitionHalves,
    /// `isolate-one`: cut one random node off from all others.
    IsolateOne,
    /// `isolate-leader`: cut the current leader off from all others.
    IsolateLeader,
    /// `majorities-ring`: every node sees a majority, no two nodes the same one.
    MajoritiesRing,
    /// `bridge`: two halves that cannot see each other, joined by one node that sees both.
    Bridge,
    /// `slow-links`: add latency and jitter to every link, or to the links of one node.
    SlowLinks,
    /// `throttle-links`: limit the bandwidth of every link, or of the links of one node.
    ThrottleLinks,
    /// `kill-one`: `SIGKILL` one random node; restart it when the fault ends.
    KillOne,
    /// `kill-minority`: `SIGKILL` a random minority at once; restart them when the fault ends.
    KillMinority,
    /// `kill-leader`: `SIGKILL` the current leader; restart it when the fault ends.
    KillLeader,
    /// `pause-one`: `SIGSTOP` one random node; `SIGCONT` when the fault ends.
    PauseOne,
    /// `pause-leader`: `SIGSTOP` the current leader; `SIGCONT` when the fault ends.
    PauseLeader,
}

/// Every fault kind, in vocabulary order.
pub const ALL_KINDS: [FaultKind; 12] = [
    FaultKind::PartitionHalves,
    FaultKind::IsolateOne,
    FaultKind::IsolateLeader,
    FaultKind::MajoritiesRing,
    FaultKind::Bridge,
    FaultKind::SlowLinks,
    FaultKind::ThrottleLinks,
    FaultKind::KillOne,
    FaultKind::KillMinority,
    FaultKind::KillLeader,
    FaultKind::PauseOne,
    FaultKind::PauseLeader,
];

/// A group of fault kinds, also usable as a name in a fault list, and the stem of the history
/// events (`start-partition` / `stop-partition`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultFamily {
    /// `partition`: the topologies that cut links.
    Partition,
    /// `link`: faults that degrade links without cutting them.
    Link,
    /// `kill`: faults that kill processes (and restart them at the end).
    Kill,
    /// `pause`: faults that pause processes (and resume them at the end).
    Pause,
}

impl FaultFamily {
    /// Every family.
    pub const ALL: [FaultFamily; 4] = [
        FaultFamily::Partition,
        FaultFamily::Link,
        FaultFamily::Kill,
        FaultFamily::Pause,
    ];

    /// Its name in fault lists and in history events.
    pub fn name(self) -> &'static str {
        match self {
            FaultFamily::Partition => "partition",
            FaultFamily::Link => "link",
            FaultFamily::Kill => "kill",
            FaultFamily::Pause => "pause",
        }
    }

    /// The kinds in this family, in vocabulary order.
    pub fn kinds(self) -> Vec<FaultKind> {
        ALL_KINDS
            .iter()
            .copied()
            .filter(|k| k.family() == self)
            .collect()
    }
}

impl FaultKind {
    /// The stable name, e.g. `partition-halves`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::PartitionHalves => "partition-halves",
            FaultKind::IsolateOne => "isolate-one",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::MajoritiesRing => "majorities-ring",
            FaultKind::Bridge => "bridge",
            FaultKind::SlowLinks => "slow-links",
            FaultKind::ThrottleLinks => "throttle-links",
            FaultKind::KillOne => "kill-one",
            FaultKind::KillMinority => "kill-minority",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::PauseOne => "pause-one",
            FaultKind::PauseLeader => "pause-leader",
        }
    }

    /// The family it belongs to.
    pub fn family(self) -> FaultFamily {
        match self {
            FaultKind::PartitionHalves
            | FaultKind::IsolateOne
            | FaultKind::IsolateLeader
            | FaultKind::MajoritiesRing
            | FaultKind::Bridge => FaultFamily::Partition,
            FaultKind::SlowLinks | FaultKind::ThrottleLinks => FaultFamily::Link,
            FaultKind::KillOne | FaultKind::KillMinority | FaultKind::KillLeader => {
                FaultFamily::Kill
            }
            FaultKind::PauseOne | FaultKind::PauseLeader => FaultFamily::Pause,
        }
    }

    /// True when the fault targets the current leader, which the caller resolves at run time.
    pub fn targets_leader(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader | FaultKind::KillLeader | FaultKind::PauseLeader
        )
    }

    /// The smallest cluster the fault makes sense on.
    pub fn min_nodes(self) -> usize {
        match self {
            FaultKind::MajoritiesRing | FaultKind::Bridge | FaultKind::KillMinority => 3,
            FaultKind::PartitionHalves | FaultKind::IsolateOne | FaultKind::IsolateLeader => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = NemesisError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_KINDS
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| NemesisError::UnknownFault(s.to_owned()))
    }
}

/// Every name a fault list accepts, comma-separated, for error messages and `--help`.
pub fn known_names() -> String {
    let mut names: Vec<&str> = ALL_KINDS.iter().map(|k| k.name()).collect();
    names.extend(FaultFamily::ALL.iter().map(|f| f.name()));
    names.extend(["all", "none"]);
    names.join(", ")
}

/// Parses a comma-separated fault list such as `partition,kill-one`: each item is a kind name, a
/// family name (`partition`, `link`, `kill`, `pause`), `all`, or `none` (adds nothing). Whitespace
/// around items is ignored; the result has no duplicates and keeps first-mention order.
pub fn parse_fault_list(list: &str) -> Result<Vec<FaultKind>, NemesisError> {
    let mut kinds = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let expanded = match item {
            "all" => ALL_KINDS.to_vec(),
            "none" => Vec::new(),
            _ => match FaultFamily::ALL.iter().find(|f| f.name() == item) {
                Some(family) => family.kinds(),
                None => vec![item.parse()?],
            },
        };
        for kind in expanded {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    Ok(kinds)
}

/// Parameters of the link-quality faults, part of a schedule so replays use the same values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultOptions {
    /// Fixed latency `slow-links` adds per direction, in milliseconds.
    pub slow_latency_ms: u64,
    /// Upper bound of the random latency `slow-links` adds on top, in milliseconds.
    pub slow_jitter_ms: u64,
    /// Bandwidth per direction under `throttle-links`, in bytes per second.
    pub throttle_bytes_per_sec: u64,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            slow_latency_ms: 100,
            slow_jitter_ms: 50,
            throttle_bytes_per_sec: 16 * 1024,
        }
    }
}

/// One concrete fault, every random choice made. Nodes are 0-based indices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FaultPlan {
    /// Cut every link between `left` and `right` (`left` is the smaller half).
    PartitionHalves { left: Vec<usize>, right: Vec<usize> },
    /// Cut `node` off from everyone.
    IsolateOne { node: usize },
    /// Cut the leader off from everyone; `fallback` when no leader is known.
    IsolateLeader { fallback: usize },
    /// Majorities ring over all nodes in `ring` order (see [`crate::Cuts::majorities_ring`]).
    MajoritiesRing { ring: Vec<usize> },
    /// `left` and `right` cannot see each other; `bridge` sees both.
    Bridge {
        left: Vec<usize>,
        bridge: usize,
        right: Vec<usize>,
    },
    /// Delay links: those of `nodes` (to and from them), or every link when `nodes` is `None`.
    SlowLinks {
        nodes: Option<Vec<usize>>,
        latency_ms: u64,
        jitter_ms: u64,
    },
    /// Limit bandwidth of the links of `nodes`, or of every link when `nodes` is `None`.
    ThrottleLinks {
        nodes: Option<Vec<usize>>,
        bytes_per_sec: u64,
    },
    /// Kill `node`, restart it at the end.
    KillOne { node: usize },
    /// Kill all of `nodes` (a minority), restart them at the end.
    KillMinority { nodes: Vec<usize> },
    /// Kill the leader (`fallback` when unknown), restart it at the end.
    KillLeader { fallback: usize },
    /// Pause `node`, resume it at the end.
    PauseOne { node: usize },
    /// Pause the leader (`fallback` when unknown), resume it at the end.
    PauseLeader { fallback: usize },
}

impl FaultPlan {
    /// Draws a concrete instance of `kind` for a cluster of `nodes` nodes. Uses only `rng`, so the
    /// same RNG state gives the same plan. Fails when the cluster is too small for the kind.
    pub fn choose<R: Rng + ?Sized>(
        kind: FaultKind,
        nodes: usize,
        options: &FaultOptions,
        rng: &mut R,
    ) -> Result<FaultPlan, NemesisError> {
        if nodes < kind.min_nodes() {
            return Err(NemesisError::TooFewNodes {
                topology: kind.name(),
                needed: kind.min_nodes(),
                count: nodes,
            });
        }
        let mut shuffled: Vec<usize> = (0..nodes).collect();
        shuffled.shuffle(rng);
        let one = shuffled[0];
        // Links faults hit everything half of the time, one node's links otherwise.
        let some_links = |rng: &mut R| rng.gen_bool(0.5).then(|| vec![one]);
        let plan = match kind {
            FaultKind::PartitionHalves => {
                let right = shuffled.split_off(nodes / 2);
                FaultPlan::PartitionHalves {
                    left: sorted(shuffled),
                    right: sorted(right),
                }
            }
            FaultKind::IsolateOne => FaultPlan::IsolateOne { node: one },
            FaultKind::IsolateLeader => FaultPlan::IsolateLeader { fallback: one },
            FaultKind::MajoritiesRing => FaultPlan::MajoritiesRing { ring: shuffled },
            FaultKind::Bridge => {
                let mut right = shuffled.split_off(nodes / 2);
                let bridge = right.remove(0);
                FaultPlan::Bridge {
                    left: sorted(shuffled),
                    bridge,
                    right: sorted(right),
                }
            }
            FaultKind::SlowLinks => FaultPlan::SlowLinks {
                nodes: some_links(rng),
                latency_ms: options.slow_latency_ms,
                jitter_ms: options.slow_jitter_ms,
            },
            FaultKind::ThrottleLinks => FaultPlan::ThrottleLinks {
                nodes: some_links(rng),
                bytes_per_sec: options.throttle_bytes_per_sec,
            },
            FaultKind::KillOne => FaultPlan::KillOne { node: one },
            FaultKind::KillMinority => {
                let size = rng.gen_range(1..=(nodes - 1) / 2);
                shuffled.truncate(size);
                FaultPlan::KillMinority {
                    nodes: sorted(shuffled),
                }
            }
            FaultKind::KillLeader => FaultPlan::KillLeader { fallback: one },
            FaultKind::PauseOne => FaultPlan::PauseOne { node: one },
            FaultKind::PauseLeader => FaultPlan::PauseLeader { fallback: one },
        };
        Ok(plan)
    }

    /// The kind this plan is an instance of.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultPlan::PartitionHalves { .. } => FaultKind::PartitionHalves,
            FaultPlan::IsolateOne { .. } => FaultKind::IsolateOne,
            FaultPlan::IsolateLeader { .. } => FaultKind::IsolateLeader,
            FaultPlan::MajoritiesRing { .. } => FaultKind::MajoritiesRing,
            FaultPlan::Bridge { .. } => FaultKind::Bridge,
            FaultPlan::SlowLinks { .. } => FaultKind::SlowLinks,
            FaultPlan::ThrottleLinks { .. } => FaultKind::ThrottleLinks,
            FaultPlan::KillOne { .. } => FaultKind::KillOne,
            FaultPlan::KillMinority { .. } => FaultKind::KillMinority,
            FaultPlan::KillLeader { .. } => FaultKind::KillLeader,
            FaultPlan::PauseOne { .. } => FaultKind::PauseOne,
            FaultPlan::PauseLeader { .. } => FaultKind::PauseLeader,
        }
    }

    /// A description of the plan before the leader is known, e.g. `partition halves [n1 n2] | [n3]`
    /// or `kill leader (fallback n2)`. [`crate::ActiveFault::description`] has the resolved one.
    pub fn describe(&self) -> String {
        match self {
            FaultPlan::IsolateLeader { fallback } => {
                format!("isolate leader (fallback {})", node_name(*fallback))
            }
            FaultPlan::KillLeader { fallback } => {
                format!("kill leader (fallback {})", node_name(*fallback))
            }
            FaultPlan::PauseLeader { fallback } => {
                format!("pause leader (fallback {})", node_name(*fallback))
            }
            other => other.describe_resolved(None),
        }
    }

    /// Description once the target is resolved; `leader` is the node a leader fault hit.
    pub(crate) fn describe_resolved(&self, leader: Option<(usize, bool)>) -> String {
        let leader_name = |fallback: usize| match leader {
            Some((node, true)) => node_name(node),
            Some((node, false)) => format!("{} (leader unknown, fallback)", node_name(node)),
            None => node_name(fallback),
        };
        let links = |nodes: &Option<Vec<usize>>| match nodes {
            None => "all links".to_owned(),
            Some(nodes) => format!("links of {}", node_list(nodes)),
        };
        match self {
            FaultPlan::PartitionHalves { left, right } => {
                format!(
                    "partition halves {} | {}",
                    node_list(left),
                    node_list(right)
                )
            }
            FaultPlan::IsolateOne { node } => format!("isolate {}", node_name(*node)),
            FaultPlan::IsolateLeader { fallback } => {
                format!("isolate leader {}", leader_name(*fallback))
            }
            FaultPlan::MajoritiesRing { ring } => {
                let names: Vec<String> = ring.iter().map(|&n| node_name(n)).collect();
                format!("majorities ring {}", names.join("-"))
            }
            FaultPlan::Bridge {
                left,
                bridge,
                right,
            } => format!(
                "bridge {} <{}> {}",
                node_list(left),
                node_name(*bridge),
                node_list(right)
            ),
            FaultPlan::SlowLinks {
                nodes,
                latency_ms,
                jitter_ms,
            } => format!("slow {} {latency_ms}ms+{jitter_ms}ms", links(nodes)),
            FaultPlan::ThrottleLinks {
                nodes,
                bytes_per_sec,
            } => format!("throttle {} {bytes_per_sec}B/s", links(nodes)),
            FaultPlan::KillOne { node } => format!("kill {}", node_name(*node)),
            FaultPlan::KillMinority { nodes } => format!("kill minority {}", node_list(nodes)),
            FaultPlan::KillLeader { fallback } => format!("kill leader {}", leader_name(*fallback)),
            FaultPlan::PauseOne { node } => format!("pause {}", node_name(*node)),
            FaultPlan::PauseLeader { fallback } => {
                format!("pause leader {}", leader_name(*fallback))
            }
        }
    }
}

fn sorted(mut nodes: Vec<usize>) -> Vec<usize> {
    nodes.sort_unstable();
    nodes
}

/// A fault event for the history: written as
/// `{"process":"nemesis","type":"info","f":<f>,"value":<value>, ...}` by the harness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    /// `start-<family>` or `stop-<family>`, e.g. `start-partition`, `stop-kill`.
    pub f: String,
    /// The human-readable description of the fault, e.g. `partition halves [n1 n2] | [n3]`; the same
    /// on the start and the stop event so reports can pair them.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_kind_name_round_trips_through_parse_and_serde() {
        for kind in ALL_KINDS {
            assert_eq!(kind.name().parse::<FaultKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }

    #[test]
    fn fault_list_expands_families_and_removes_duplicates() {
        let kinds = parse_fault_list(" kill-one, pause ,kill,none").unwrap();
        assert_eq!(
            kinds,
            vec![
                FaultKind::KillOne,
                FaultKind::PauseOne,
                FaultKind::PauseLeader,
                FaultKind::KillMinority,
                FaultKind::KillLeader,
            ]
        );
        assert_eq!(parse_fault_list("all").unwrap(), ALL_KINDS.to_vec());
        assert!(parse_fault_list("none").unwrap().is_empty());
        assert_eq!(parse_fault_list("partition").unwrap().len(), 5);
        assert_eq!(
            parse_fault_list("link").unwrap(),
            vec![FaultKind::SlowLinks, FaultKind::ThrottleLinks]
        );
    }

    #[test]
    fn unknown_fault_name_is_an_error_that_lists_the_vocabulary() {
        let err = parse_fault_list("partition,explode").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("explode") && message.contains("majorities-ring"));
    }

    #[test]
    fn halves_cover_every_node_once_with_the_smaller_half_left() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let plan = FaultPlan::choose(
                FaultKind::PartitionHalves,
                5,
                &FaultOptions::default(),
                &mut rng,
            )
            .unwrap();
            let FaultPlan::PartitionHalves { left, right } = plan else {
                panic!("wrong plan {plan:?}");
            };
            assert_eq!((left.len(), right.len()), (2, 3));
            let mut all: Vec<usize> = left.iter().chain(&right).copied().collect();
            all.sort_unstable();
            assert_eq!(all, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn kill_minority_never_kills_a_majority() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for nodes in 3..=7 {
            for _ in 0..30 {
                let plan = FaultPlan::choose(
                    FaultKind::KillMinority,
                    nodes,
                    &FaultOptions::default(),
                    &mut rng,
                )
                .unwrap();
                let FaultPlan::KillMinority { nodes: killed } = plan else {
                    panic!("wrong plan");
                };
                assert!(!killed.is_empty() && killed.len() * 2 < nodes);
            }
        }
    }

    #[test]
    fn too_small_cluster_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let options = FaultOptions::default();
        assert!(FaultPlan::choose(FaultKind::Bridge, 2, &options, &mut rng).is_err());
        assert!(FaultPlan::choose(FaultKind::KillOne, 1, &options, &mut rng).is_ok());
    }

    #[test]
    fn description_names_nodes_from_one() {
        let plan = FaultPlan::PartitionHalves {
            left: vec![0, 1],
            right: vec![2],
        };
        assert_eq!(plan.describe(), "partition halves [n1 n2] | [n3]");
    }
}
