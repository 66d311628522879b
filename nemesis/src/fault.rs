//! The fault vocabulary: kinds of fault with stable names for the CLI, concrete fault instances
//! drawn from a seeded RNG, and the history events that record them.
//!
//! A [`FaultKind`] is what a user asks for (`--nemesis partition,kill-one`). A [`FaultPlan`] is one
//! concrete instance of a kind, with every random choice already made (which node, which halves,
//! how long a crashed node stays down), so a schedule of plans replays identically. Only "the
//! leader" stays open in a plan: it is known only at run time, when the schedule driver asks the
//! system under test (see [`crate::Primary`]); the plan carries a seeded fallback node for when no
//! leader is known.
//!
//! Some kinds need more than processes and proxies: the `disk` family needs a
//! [`crate::DiskControl`] (each node's data directory on a fault-injecting filesystem).
//! [`FaultKind::requires`] says so, `all` leaves them out, and the schedule driver refuses them up
//! front when nothing provides it.

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
    /// `deafen-leader`: cut every link into the current leader, none out of it: its entries
    /// reach the followers, their acknowledgements never come back, so it commits nothing until
    /// check-quorum deposes it, and the next leader commits what it had sent (a write whose
    /// client timed out, then retried elsewhere: what request deduplication is for).
    DeafenLeader,
    /// `kill-one`: `SIGKILL` one random node; restart it when the fault ends.
    KillOne,
    /// `kill-minority`: `SIGKILL` a random minority at once; restart them when the fault ends.
    KillMinority,
    /// `kill-majority`: `SIGKILL` a random majority at once (the cluster stops until they are
    /// back); restart them when the fault ends.
    KillMajority,
    /// `kill-leader`: `SIGKILL` the current leader; restart it when the fault ends.
    KillLeader,
    /// `pause-one`: `SIGSTOP` one random node; `SIGCONT` when the fault ends.
    PauseOne,
    /// `pause-leader`: `SIGSTOP` the current leader; `SIGCONT` when the fault ends.
    PauseLeader,
    /// `stall-leader`: `SIGSTOP` the current leader and cut it off; `SIGCONT` it while it is still
    /// cut off, and let it rejoin at the end: a leader back from a long stall (a GC pause, a VM
    /// migration) before its network is. Its clock stood still, so it wakes believing it leads
    /// and keeps believing it until check-quorum runs out, while the others have long elected a
    /// new leader and taken writes: whatever it answers from its own state then is stale.
    StallLeader,
    /// `crash-restart-one`: `SIGKILL` one random node and start it again after a seeded downtime
    /// (0-300 ms by default): a crash and a quick recovery, not a long absence.
    CrashRestartOne,
    /// `crash-restart-leader`: the same, aimed at the current leader.
    CrashRestartLeader,
    /// `crash-restart-election`: crash-restart the leader, then, while the others elect a new one,
    /// crash-restart voters one after the other, so a node that forgot its vote across a restart
    /// gets the chance to vote twice in one term.
    CrashRestartElection,
    /// `crash-restart-voter`: cut the leader off and slow the links among the others, so the
    /// election that follows and the new leader's first entries travel slowly; crash-restart each
    /// node the moment it has voted in the new term but heard from no leader yet, then reconnect
    /// the old leader to those nodes only (it stays cut off from the rest). A node that forgot its
    /// vote across the restart then votes for the old leader in the same term: two leaders in one
    /// term, each committing through the same node.
    CrashRestartVoter,
    /// `leader-churn`: cut the leader off while clients still write to it, then each next leader a
    /// short while after it is elected, so followers hold divergent uncommitted suffixes of
    /// several terms; everything heals at the end.
    LeaderChurn,
    /// `lose-unsynced`: `SIGKILL` one node, drop every write it had not fsynced (a power cut),
    /// start it again. Needs a [`crate::DiskControl`].
    LoseUnsynced,
    /// `torn-write`: `SIGKILL` one node, keep only part of its last unsynced write, start it again.
    /// Needs a [`crate::DiskControl`].
    TornWrite,
    /// `corrupt`: `SIGKILL` one node, flip bits in one of its data files, start it again. Needs a
    /// [`crate::DiskControl`].
    Corrupt,
    /// `power-cut`: `SIGKILL` every node at once, drop every unsynced write of every node, start
    /// them all again. Needs a [`crate::DiskControl`].
    PowerCut,
    /// `corrupt-all`: `SIGKILL` every node at once, drop every unsynced write, flip bits in one data
    /// file of each node, start them all again: correlated corruption (one bad batch of disks, a
    /// faulty controller), the only kind of damage that Raft's replicas cannot repair, so a node
    /// that silently cuts its log at a damaged record loses acknowledged writes. Needs a
    /// [`crate::DiskControl`].
    CorruptAll,
    /// `remove-voter`: remove one random voter from the configuration (it keeps running, idle);
    /// add it back as a learner and promote it when the fault ends (same id, its old data).
    /// Needs a [`crate::MembershipControl`].
    RemoveVoter,
    /// `add-learner`: start a node on a spare slot that joins as a learner; promote it to voter
    /// when the fault ends (the final heal removes it again, so the run ends with N voters).
    /// Needs a [`crate::MembershipControl`].
    AddLearner,
    /// `replace-node`: remove one random voter, stop it for good, and start a node with a new id
    /// and an empty data directory on a spare slot that joins and promotes itself: an operator
    /// replacing a machine. Needs a [`crate::MembershipControl`].
    ReplaceNode,
    /// `remove-leader`: remove the current leader from the configuration (it steps down once
    /// its removal commits); add it back and promote it when the fault ends. Needs a
    /// [`crate::MembershipControl`].
    RemoveLeader,
    /// `promote-split`: start two learners on spare slots, cut the leader and them off from the
    /// other voters, and ask to promote both at once. One change at a time refuses the second
    /// while the first is uncommitted (and the first cannot commit: the leader's side holds two
    /// of four voters), so the old voters elect among themselves and nothing else happens. A
    /// system that takes both makes a configuration of five whose majority is the leader's side,
    /// while the cut-off voters still count three: two majorities at once. Both are removed
    /// again when the fault ends (and added back as learners the next time). Asked for by name
    /// only: it holds both spare slots, which the rest of the family needs. Needs a
    /// [`crate::MembershipControl`].
    PromoteSplit,
    /// `figure-8`: Raft's Figure 8 played with link cuts on 5 nodes (see [`crate::driver`]'s
    /// `figure8` module): the leader and one follower keep a term-T suffix the other three lack;
    /// a node of those three leads term T+1 alone (its no-op dropped in flight); the old
    /// leader's side wins term T+2 with a third node, which gets only a first batch of the
    /// term-T entries before it is cut off again; then the term-T+1 node wins with the other
    /// two and overwrites them. A leader that commits entries of an earlier term by counting
    /// replicas (the Figure 8 bug) has applied entries the cluster no longer has; the fault
    /// ends by letting it lead again, so its reads show them. Targeted: never part of `all`
    /// or of a family name; asked for by name.
    #[serde(rename = "figure-8")]
    Figure8,
}

/// Every fault kind, in vocabulary order, those that need a [`crate::DiskControl`] included (the
/// name `all` in a fault list leaves those out: see [`parse_fault_list`]).
pub const ALL_KINDS: [FaultKind; 31] = [
    FaultKind::PartitionHalves,
    FaultKind::IsolateOne,
    FaultKind::IsolateLeader,
    FaultKind::MajoritiesRing,
    FaultKind::Bridge,
    FaultKind::SlowLinks,
    FaultKind::ThrottleLinks,
    FaultKind::DeafenLeader,
    FaultKind::KillOne,
    FaultKind::KillMinority,
    FaultKind::KillMajority,
    FaultKind::KillLeader,
    FaultKind::PauseOne,
    FaultKind::PauseLeader,
    FaultKind::StallLeader,
    FaultKind::CrashRestartOne,
    FaultKind::CrashRestartLeader,
    FaultKind::CrashRestartElection,
    FaultKind::CrashRestartVoter,
    FaultKind::LeaderChurn,
    FaultKind::LoseUnsynced,
    FaultKind::TornWrite,
    FaultKind::Corrupt,
    FaultKind::PowerCut,
    FaultKind::CorruptAll,
    FaultKind::RemoveVoter,
    FaultKind::AddLearner,
    FaultKind::ReplaceNode,
    FaultKind::RemoveLeader,
    FaultKind::PromoteSplit,
    FaultKind::Figure8,
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
    /// `crash`: crash-restarts (`SIGKILL`, then a start after at most a few hundred milliseconds);
    /// they end on their own when the nodes are back, not at the end of their window.
    Crash,
    /// `churn`: successive leaders cut off, one term after the other.
    Churn,
    /// `disk`: crashes that also lose, tear or corrupt what the node wrote to disk.
    Disk,
    /// `membership`: configuration changes through the system's own API (voters removed and
    /// added back, learners added, nodes replaced by new ones on spare slots).
    Membership,
}

/// What a fault kind needs beyond child processes and link proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// A [`crate::DiskControl`]: each node's data directory on a fault-injecting filesystem.
    Disk,
    /// A [`crate::MembershipControl`]: the system's membership API and spare node slots.
    Membership,
}

impl Requirement {
    /// What it takes, for the error that refuses a kind when it is missing.
    pub fn explain(self) -> &'static str {
        match self {
            Requirement::Disk => {
                "disk faults need each node's data directory on a fault-injecting filesystem \
                 (a DiskControl given to the nemesis); none was given"
            }
            Requirement::Membership => {
                "membership faults need the system's membership API and spare node slots \
                 (a MembershipControl given to the nemesis); none was given"
            }
        }
    }
}

impl FaultFamily {
    /// Every family.
    pub const ALL: [FaultFamily; 8] = [
        FaultFamily::Partition,
        FaultFamily::Link,
        FaultFamily::Kill,
        FaultFamily::Pause,
        FaultFamily::Crash,
        FaultFamily::Churn,
        FaultFamily::Disk,
        FaultFamily::Membership,
    ];

    /// Its name in fault lists and in history events.
    pub fn name(self) -> &'static str {
        match self {
            FaultFamily::Partition => "partition",
            FaultFamily::Link => "link",
            FaultFamily::Kill => "kill",
            FaultFamily::Pause => "pause",
            FaultFamily::Crash => "crash",
            FaultFamily::Churn => "churn",
            FaultFamily::Disk => "disk",
            FaultFamily::Membership => "membership",
        }
    }

    /// The kinds its name stands for in a fault list, in vocabulary order (those asked for by
    /// name only are left out: see [`FaultKind::by_name_only`]).
    pub fn kinds(self) -> Vec<FaultKind> {
        ALL_KINDS
            .iter()
            .copied()
            .filter(|k| k.family() == self && !k.by_name_only())
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
            FaultKind::DeafenLeader => "deafen-leader",
            FaultKind::KillOne => "kill-one",
            FaultKind::KillMinority => "kill-minority",
            FaultKind::KillMajority => "kill-majority",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::PauseOne => "pause-one",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::StallLeader => "stall-leader",
            FaultKind::CrashRestartOne => "crash-restart-one",
            FaultKind::CrashRestartLeader => "crash-restart-leader",
            FaultKind::CrashRestartElection => "crash-restart-election",
            FaultKind::CrashRestartVoter => "crash-restart-voter",
            FaultKind::LeaderChurn => "leader-churn",
            FaultKind::LoseUnsynced => "lose-unsynced",
            FaultKind::PowerCut => "power-cut",
            FaultKind::TornWrite => "torn-write",
            FaultKind::Corrupt => "corrupt",
            FaultKind::CorruptAll => "corrupt-all",
            FaultKind::RemoveVoter => "remove-voter",
            FaultKind::AddLearner => "add-learner",
            FaultKind::ReplaceNode => "replace-node",
            FaultKind::RemoveLeader => "remove-leader",
            FaultKind::PromoteSplit => "promote-split",
            FaultKind::Figure8 => "figure-8",
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
            FaultKind::SlowLinks | FaultKind::ThrottleLinks | FaultKind::DeafenLeader => {
                FaultFamily::Link
            }
            FaultKind::KillOne
            | FaultKind::KillMinority
            | FaultKind::KillMajority
            | FaultKind::KillLeader => FaultFamily::Kill,
            FaultKind::PauseOne | FaultKind::PauseLeader | FaultKind::StallLeader => {
                FaultFamily::Pause
            }
            FaultKind::CrashRestartOne
            | FaultKind::CrashRestartLeader
            | FaultKind::CrashRestartElection
            | FaultKind::CrashRestartVoter => FaultFamily::Crash,
            FaultKind::LeaderChurn | FaultKind::Figure8 => FaultFamily::Churn,
            FaultKind::LoseUnsynced
            | FaultKind::TornWrite
            | FaultKind::Corrupt
            | FaultKind::PowerCut
            | FaultKind::CorruptAll => FaultFamily::Disk,
            FaultKind::RemoveVoter
            | FaultKind::AddLearner
            | FaultKind::ReplaceNode
            | FaultKind::RemoveLeader
            | FaultKind::PromoteSplit => FaultFamily::Membership,
        }
    }

    /// True when the fault targets the current leader, which the schedule driver resolves at run
    /// time.
    pub fn targets_leader(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader
                | FaultKind::DeafenLeader
                | FaultKind::KillLeader
                | FaultKind::PauseLeader
                | FaultKind::StallLeader
                | FaultKind::CrashRestartLeader
                | FaultKind::CrashRestartElection
                | FaultKind::CrashRestartVoter
                | FaultKind::LeaderChurn
                | FaultKind::RemoveLeader
                | FaultKind::PromoteSplit
                | FaultKind::Figure8
        )
    }

    /// True for the kinds that neither a family name nor `all` stands for: a test asks for
    /// them by name. `promote-split` takes both spare slots at once, so in a family's rotation
    /// it would leave `add-learner` and `replace-node` nothing to do; `figure-8` is written for
    /// one scenario on 5 nodes, and the default nemesis and family lists keep the cluster sizes
    /// and fault mixes they had. `deafen-leader` is a one-way cut, which etcd refuses: `link` and
    /// `all` keep the kinds they were measured with, so etcd can still play them, and the
    /// default nemesis names it.
    pub fn by_name_only(self) -> bool {
        matches!(
            self,
            FaultKind::PromoteSplit | FaultKind::Figure8 | FaultKind::DeafenLeader
        )
    }

    /// True when the fault `SIGKILL`s nodes and no more (the `kill` and `crash` families): with a
    /// filesystem layer under the nodes, the driver makes such a kill lose the unsynced writes of
    /// the nodes it kills. The `disk` family's kinds do their own damage.
    pub fn kills(self) -> bool {
        matches!(self.family(), FaultFamily::Kill | FaultFamily::Crash)
    }

    /// What the kind needs beyond processes and proxies, if anything.
    pub fn requires(self) -> Option<Requirement> {
        match self.family() {
            FaultFamily::Disk => Some(Requirement::Disk),
            FaultFamily::Membership => Some(Requirement::Membership),
            _ => None,
        }
    }

    /// The smallest cluster the fault makes sense on.
    pub fn min_nodes(self) -> usize {
        match self {
            FaultKind::Figure8 => 5,
            FaultKind::MajoritiesRing
            | FaultKind::Bridge
            | FaultKind::KillMinority
            | FaultKind::CrashRestartElection
            | FaultKind::CrashRestartVoter
            | FaultKind::LeaderChurn
            | FaultKind::PromoteSplit => 3,
            FaultKind::PartitionHalves
            | FaultKind::IsolateOne
            | FaultKind::IsolateLeader
            | FaultKind::DeafenLeader
            | FaultKind::StallLeader => 2,
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
/// family name (`partition`, `link`, `kill`, `pause`, `crash`, `churn`, `disk`, `membership`),
/// `all`, or `none` (adds nothing). Targeted kinds ([`FaultKind::targeted`]) are named
/// one by one. `all` is every kind that needs nothing beyond processes and
/// proxies (so the `disk` and `membership` families are asked for by name, where the data
/// directories are on a fault-injecting filesystem and the system has a membership API). Whitespace around items is ignored; the result has no duplicates and keeps
/// first-mention order.
pub fn parse_fault_list(list: &str) -> Result<Vec<FaultKind>, NemesisError> {
    let mut kinds = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let expanded = match item {
            "all" => ALL_KINDS
                .iter()
                .copied()
                .filter(|k| k.requires().is_none() && !k.by_name_only())
                .collect(),
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

/// Parameters of the faults, part of a schedule so replays use the same values. A schedule stored
/// before a field existed reads it as its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultOptions {
    /// Fixed latency `slow-links` adds per direction, in milliseconds.
    pub slow_latency_ms: u64,
    /// Upper bound of the random latency `slow-links` adds on top, in milliseconds.
    pub slow_jitter_ms: u64,
    /// Bandwidth per direction under `throttle-links`, in bytes per second.
    pub throttle_bytes_per_sec: u64,
    /// Upper bound of the seeded downtime of a crash-restart, in milliseconds: long enough to miss
    /// a few heartbeats, short enough that the node is back within the election it caused.
    pub crash_downtime_max_ms: u64,
    /// How many voters `crash-restart-election` crash-restarts after the leader.
    pub election_crashes: u32,
    /// The span after the leader's crash over which those voter crashes are spread, in
    /// milliseconds (an election takes one to two election timeouts, 150-300 ms by default).
    pub election_window_ms: u64,
    /// How long `leader-churn` lets each new leader lead (and take writes) before cutting it off,
    /// in milliseconds.
    pub churn_dwell_ms: u64,
    /// How long a `stall-leader` node runs again, still cut off, before it rejoins at the end of
    /// the fault, in milliseconds (at most half the window): longer than check-quorum takes to
    /// depose it (two election timeouts), so it is no longer leader when it rejoins. It resumes
    /// later, down to half this, while no new leader has committed client writes: only then
    /// are the reads it answers from its old state stale.
    pub stall_cut_off_ms: u64,
    /// Latency `crash-restart-voter` adds to each link among the nodes other than the old leader,
    /// in milliseconds: a vote and the new leader's first entry are then `2 x` this apart, the
    /// window in which a voter is crashed. Below half the election timeout (150 ms), so the
    /// election still completes.
    pub voter_delay_ms: u64,
    /// Latency `figure-8` adds to the links that carry a new leader's first entries, in
    /// milliseconds: the window in which the driver sees the leader (or the follower's first
    /// batch) and cuts the link before the rest arrives.
    pub figure8_delay_ms: u64,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            slow_latency_ms: 100,
            slow_jitter_ms: 50,
            throttle_bytes_per_sec: 16 * 1024,
            crash_downtime_max_ms: 300,
            election_crashes: 3,
            election_window_ms: 600,
            churn_dwell_ms: 400,
            stall_cut_off_ms: 500,
            voter_delay_ms: 40,
            figure8_delay_ms: 300,
        }
    }
}

/// One concrete fault, every random choice made. Nodes are 0-based indices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FaultPlan {
    /// Cut every link between `left` and `right` (`left` is the smaller half).
    PartitionHalves {
        left: Vec<usize>,
        right: Vec<usize>,
    },
    /// Cut `node` off from everyone.
    IsolateOne {
        node: usize,
    },
    /// Cut the leader off from everyone; `fallback` when no leader is known.
    IsolateLeader {
        fallback: usize,
    },
    DeafenLeader {
        fallback: usize,
    },
    /// Majorities ring over all nodes in `ring` order (see [`crate::Cuts::majorities_ring`]).
    MajoritiesRing {
        ring: Vec<usize>,
    },
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
    KillOne {
        node: usize,
    },
    /// Kill all of `nodes` (a minority), restart them at the end.
    KillMinority {
        nodes: Vec<usize>,
    },
    /// Kill all of `nodes` (a majority), restart them at the end.
    KillMajority {
        nodes: Vec<usize>,
    },
    /// Kill the leader (`fallback` when unknown), restart it at the end.
    KillLeader {
        fallback: usize,
    },
    /// Pause `node`, resume it at the end.
    PauseOne {
        node: usize,
    },
    /// Pause the leader (`fallback` when unknown), resume it at the end.
    PauseLeader {
        fallback: usize,
    },
    /// Pause the leader (`fallback` when unknown) and cut it off; resume it `cut_off_ms` before
    /// the end, still cut off; heal its links at the end.
    StallLeader {
        fallback: usize,
        cut_off_ms: u64,
    },
    /// Kill `node`, start it again `down_ms` later.
    CrashRestartOne {
        node: usize,
        down_ms: u64,
    },
    /// Kill the leader (`fallback` when unknown), start it again `down_ms` later.
    CrashRestartLeader {
        fallback: usize,
        down_ms: u64,
    },
    /// Kill the leader (`fallback` when unknown) and start it again `down_ms` later; meanwhile
    /// crash-restart voters as `crashes` says, taking them in `voters` order (every node, shuffled;
    /// the leader is skipped, and the order wraps around).
    CrashRestartElection {
        fallback: usize,
        down_ms: u64,
        voters: Vec<usize>,
        crashes: Vec<VoterCrash>,
    },
    /// Cut the leader (`fallback` when unknown) off and delay every other link by `delay_ms`;
    /// crash-restart each node seen voting in the new term before it heard from a leader, and
    /// reconnect the old leader to those nodes; heal at the end.
    CrashRestartVoter {
        fallback: usize,
        delay_ms: u64,
    },
    /// Cut the leader (`fallback` when unknown) off, then each next leader `dwell_ms` after it
    /// appears, keeping at most a minority cut off (the longest cut off rejoins); heal at the end.
    LeaderChurn {
        fallback: usize,
        dwell_ms: u64,
    },
    /// Kill `node`, drop its unsynced writes, start it again.
    LoseUnsynced {
        node: usize,
    },
    /// Every node loses power at once: all are killed, every unsynced write of every node is
    /// dropped, all start again (what a data-centre power cut does; a store that acknowledges
    /// before fsync loses acknowledged writes on a majority).
    PowerCut,
    /// Kill `node`, tear its last unsynced write (which part survives comes from `seed`), start it
    /// again.
    TornWrite {
        node: usize,
        seed: u64,
    },
    /// Kill `node`, flip bits in one of its data files (which file and which bits from `seed`),
    /// start it again.
    Corrupt {
        node: usize,
        seed: u64,
    },
    /// Kill every node, drop their unsynced writes, flip bits in one data file of each (node
    /// `n`'s file and bits from [`corrupt_all_seed`]`(seed, n)`), start them all again.
    CorruptAll {
        seed: u64,
    },
    /// Remove the voter standing for `node` (see [`crate::MembershipControl::stand_in`]); add
    /// it back and promote it at the end.
    RemoveVoter {
        node: usize,
    },
    /// Start a spare slot as a learner; promote it at the end.
    AddLearner,
    /// Remove the voter standing for `node`, stop it for good, start a spare slot (new id,
    /// empty data) that joins in its place.
    ReplaceNode {
        node: usize,
    },
    /// Remove the leader (`fallback` when unknown); add it back and promote it at the end.
    RemoveLeader {
        fallback: usize,
    },
    /// Two learners on spare slots; the leader (`fallback` when unknown) and they cut off from
    /// the other voters; both promoted at once; at the end, links healed and both removed.
    PromoteSplit {
        fallback: usize,
    },
    /// Figure 8 from the leader (`fallback` when unknown): its partner is the first other node
    /// of `order` (every node, shuffled); `delay_ms` as [`FaultOptions::figure8_delay_ms`].
    #[serde(rename = "figure-8")]
    Figure8 {
        fallback: usize,
        order: Vec<usize>,
        delay_ms: u64,
    },
}

/// The corruption seed of node `node` in a `corrupt-all` fault of seed `seed`: distinct per node
/// (SplitMix64 of both), so the nodes' damage is independent yet replays exactly.
pub fn corrupt_all_seed(seed: u64, node: usize) -> u64 {
    let mut z = seed
        ^ (node as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One voter crash of `crash-restart-election`, timed from the leader's crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterCrash {
    /// When to kill the voter, in milliseconds after the leader was killed. Crashes never
    /// overlap: each starts after the previous voter is back.
    pub after_ms: u64,
    /// How long it stays down, in milliseconds.
    pub down_ms: u64,
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
        let downtime = |rng: &mut R| rng.gen_range(0..=options.crash_downtime_max_ms);
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
            FaultKind::DeafenLeader => FaultPlan::DeafenLeader { fallback: one },
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
            FaultKind::KillMajority => {
                shuffled.truncate(nodes / 2 + 1);
                FaultPlan::KillMajority {
                    nodes: sorted(shuffled),
                }
            }
            FaultKind::KillLeader => FaultPlan::KillLeader { fallback: one },
            FaultKind::PauseOne => FaultPlan::PauseOne { node: one },
            FaultKind::PauseLeader => FaultPlan::PauseLeader { fallback: one },
            FaultKind::StallLeader => FaultPlan::StallLeader {
                fallback: one,
                cut_off_ms: options.stall_cut_off_ms,
            },
            FaultKind::CrashRestartOne => FaultPlan::CrashRestartOne {
                node: one,
                down_ms: downtime(rng),
            },
            FaultKind::CrashRestartLeader => FaultPlan::CrashRestartLeader {
                fallback: one,
                down_ms: downtime(rng),
            },
            FaultKind::CrashRestartElection => {
                let down_ms = downtime(rng);
                let count = u64::from(options.election_crashes.max(1));
                let gap_max = options.election_window_ms / count;
                let mut at = 0;
                let mut crashes = Vec::new();
                for _ in 0..count {
                    let after_ms = at + rng.gen_range(0..=gap_max);
                    let down_ms = downtime(rng);
                    crashes.push(VoterCrash { after_ms, down_ms });
                    at = after_ms + down_ms;
                }
                FaultPlan::CrashRestartElection {
                    fallback: one,
                    down_ms,
                    voters: shuffled,
                    crashes,
                }
            }
            FaultKind::CrashRestartVoter => FaultPlan::CrashRestartVoter {
                fallback: one,
                delay_ms: options.voter_delay_ms,
            },
            FaultKind::LeaderChurn => FaultPlan::LeaderChurn {
                fallback: one,
                dwell_ms: options.churn_dwell_ms,
            },
            FaultKind::LoseUnsynced => FaultPlan::LoseUnsynced { node: one },
            FaultKind::PowerCut => FaultPlan::PowerCut,
            FaultKind::TornWrite => FaultPlan::TornWrite {
                node: one,
                seed: rng.gen(),
            },
            FaultKind::Corrupt => FaultPlan::Corrupt {
                node: one,
                seed: rng.gen(),
            },
            FaultKind::CorruptAll => FaultPlan::CorruptAll { seed: rng.gen() },
            FaultKind::RemoveVoter => FaultPlan::RemoveVoter { node: one },
            FaultKind::AddLearner => FaultPlan::AddLearner,
            FaultKind::ReplaceNode => FaultPlan::ReplaceNode { node: one },
            FaultKind::RemoveLeader => FaultPlan::RemoveLeader { fallback: one },
            FaultKind::PromoteSplit => FaultPlan::PromoteSplit { fallback: one },
            FaultKind::Figure8 => FaultPlan::Figure8 {
                fallback: one,
                delay_ms: options.figure8_delay_ms,
                order: shuffled,
            },
        };
        Ok(plan)
    }

    /// The kind this plan is an instance of.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultPlan::PartitionHalves { .. } => FaultKind::PartitionHalves,
            FaultPlan::IsolateOne { .. } => FaultKind::IsolateOne,
            FaultPlan::IsolateLeader { .. } => FaultKind::IsolateLeader,
            FaultPlan::DeafenLeader { .. } => FaultKind::DeafenLeader,
            FaultPlan::MajoritiesRing { .. } => FaultKind::MajoritiesRing,
            FaultPlan::Bridge { .. } => FaultKind::Bridge,
            FaultPlan::SlowLinks { .. } => FaultKind::SlowLinks,
            FaultPlan::ThrottleLinks { .. } => FaultKind::ThrottleLinks,
            FaultPlan::KillOne { .. } => FaultKind::KillOne,
            FaultPlan::KillMinority { .. } => FaultKind::KillMinority,
            FaultPlan::KillMajority { .. } => FaultKind::KillMajority,
            FaultPlan::KillLeader { .. } => FaultKind::KillLeader,
            FaultPlan::PauseOne { .. } => FaultKind::PauseOne,
            FaultPlan::PauseLeader { .. } => FaultKind::PauseLeader,
            FaultPlan::StallLeader { .. } => FaultKind::StallLeader,
            FaultPlan::CrashRestartOne { .. } => FaultKind::CrashRestartOne,
            FaultPlan::CrashRestartLeader { .. } => FaultKind::CrashRestartLeader,
            FaultPlan::CrashRestartElection { .. } => FaultKind::CrashRestartElection,
            FaultPlan::CrashRestartVoter { .. } => FaultKind::CrashRestartVoter,
            FaultPlan::LeaderChurn { .. } => FaultKind::LeaderChurn,
            FaultPlan::LoseUnsynced { .. } => FaultKind::LoseUnsynced,
            FaultPlan::PowerCut => FaultKind::PowerCut,
            FaultPlan::TornWrite { .. } => FaultKind::TornWrite,
            FaultPlan::Corrupt { .. } => FaultKind::Corrupt,
            FaultPlan::CorruptAll { .. } => FaultKind::CorruptAll,
            FaultPlan::RemoveVoter { .. } => FaultKind::RemoveVoter,
            FaultPlan::AddLearner => FaultKind::AddLearner,
            FaultPlan::ReplaceNode { .. } => FaultKind::ReplaceNode,
            FaultPlan::RemoveLeader { .. } => FaultKind::RemoveLeader,
            FaultPlan::PromoteSplit { .. } => FaultKind::PromoteSplit,
            FaultPlan::Figure8 { .. } => FaultKind::Figure8,
        }
    }

    /// The node the plan falls back to when it targets the leader and none is known.
    pub(crate) fn leader_fallback(&self) -> Option<usize> {
        match self {
            FaultPlan::IsolateLeader { fallback }
            | FaultPlan::DeafenLeader { fallback }
            | FaultPlan::KillLeader { fallback }
            | FaultPlan::PauseLeader { fallback }
            | FaultPlan::StallLeader { fallback, .. }
            | FaultPlan::CrashRestartLeader { fallback, .. }
            | FaultPlan::CrashRestartElection { fallback, .. }
            | FaultPlan::CrashRestartVoter { fallback, .. }
            | FaultPlan::LeaderChurn { fallback, .. }
            | FaultPlan::RemoveLeader { fallback }
            | FaultPlan::PromoteSplit { fallback }
            | FaultPlan::Figure8 { fallback, .. } => Some(*fallback),
            _ => None,
        }
    }

    /// The same plan with every node `n` it names replaced by `slot(n)`: the schedule names the
    /// cluster's first nodes, and once `replace-node` put a new node in the place of one of them
    /// (see [`crate::MembershipControl::stand_in`]), a fault planned for the old one hits the new.
    pub fn remap(&self, slot: impl Fn(usize) -> usize) -> FaultPlan {
        let all = |nodes: &[usize]| nodes.iter().map(|&n| slot(n)).collect::<Vec<_>>();
        let mut plan = self.clone();
        match &mut plan {
            FaultPlan::PartitionHalves { left, right } => {
                *left = all(left);
                *right = all(right);
            }
            FaultPlan::MajoritiesRing { ring } => *ring = all(ring),
            FaultPlan::Bridge {
                left,
                bridge,
                right,
            } => {
                *left = all(left);
                *bridge = slot(*bridge);
                *right = all(right);
            }
            FaultPlan::SlowLinks { nodes, .. } | FaultPlan::ThrottleLinks { nodes, .. } => {
                if let Some(nodes) = nodes {
                    *nodes = all(nodes);
                }
            }
            FaultPlan::KillMinority { nodes } | FaultPlan::KillMajority { nodes } => {
                *nodes = all(nodes)
            }
            FaultPlan::CrashRestartElection {
                fallback, voters, ..
            } => {
                *fallback = slot(*fallback);
                *voters = all(voters);
            }
            FaultPlan::Figure8 {
                fallback, order, ..
            } => {
                *fallback = slot(*fallback);
                *order = all(order);
            }
            FaultPlan::IsolateOne { node }
            | FaultPlan::KillOne { node }
            | FaultPlan::PauseOne { node }
            | FaultPlan::CrashRestartOne { node, .. }
            | FaultPlan::LoseUnsynced { node }
            | FaultPlan::TornWrite { node, .. }
            | FaultPlan::Corrupt { node, .. }
            | FaultPlan::RemoveVoter { node }
            | FaultPlan::ReplaceNode { node } => *node = slot(*node),
            FaultPlan::IsolateLeader { fallback }
            | FaultPlan::DeafenLeader { fallback }
            | FaultPlan::KillLeader { fallback }
            | FaultPlan::PauseLeader { fallback }
            | FaultPlan::StallLeader { fallback, .. }
            | FaultPlan::CrashRestartLeader { fallback, .. }
            | FaultPlan::CrashRestartVoter { fallback, .. }
            | FaultPlan::LeaderChurn { fallback, .. }
            | FaultPlan::RemoveLeader { fallback }
            | FaultPlan::PromoteSplit { fallback } => *fallback = slot(*fallback),
            FaultPlan::PowerCut | FaultPlan::CorruptAll { .. } | FaultPlan::AddLearner => {}
        }
        plan
    }

    /// A description of the plan before the leader is known, e.g. `partition halves [n1 n2] | [n3]`
    /// or `kill leader (fallback n2)`. [`crate::ActiveFault::description`] has the resolved one.
    pub fn describe(&self) -> String {
        self.describe_resolved(LeaderTarget::Unresolved)
    }

    /// Description with the leader as far as it is resolved.
    pub(crate) fn describe_resolved(&self, leader: LeaderTarget) -> String {
        let leader_name = |fallback: usize| match leader {
            LeaderTarget::Unresolved => format!("(fallback {})", node_name(fallback)),
            LeaderTarget::Known(node) => node_name(node),
            LeaderTarget::Fallback(node) => {
                format!("{} (leader unknown, fallback)", node_name(node))
            }
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
            FaultPlan::DeafenLeader { fallback } => format!(
                "deafen leader {}: no peer reaches it, it reaches every peer",
                leader_name(*fallback)
            ),
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
            FaultPlan::KillMajority { nodes } => format!("kill majority {}", node_list(nodes)),
            FaultPlan::KillLeader { fallback } => format!("kill leader {}", leader_name(*fallback)),
            FaultPlan::PauseOne { node } => format!("pause {}", node_name(*node)),
            FaultPlan::PauseLeader { fallback } => {
                format!("pause leader {}", leader_name(*fallback))
            }
            FaultPlan::StallLeader {
                fallback,
                cut_off_ms,
            } => format!(
                "stall leader {}: paused and cut off, resumed (once a new leader took writes) up to {cut_off_ms} ms before it rejoins",
                leader_name(*fallback)
            ),
            FaultPlan::CrashRestartOne { node, down_ms } => {
                format!("crash-restart {} (down {down_ms} ms)", node_name(*node))
            }
            FaultPlan::CrashRestartLeader { fallback, down_ms } => format!(
                "crash-restart leader {} (down {down_ms} ms)",
                leader_name(*fallback)
            ),
            FaultPlan::CrashRestartElection {
                fallback,
                down_ms,
                crashes,
                ..
            } => format!(
                "crash-restart leader {} (down {down_ms} ms), then {} voters during the election",
                leader_name(*fallback),
                crashes.len()
            ),
            FaultPlan::CrashRestartVoter { fallback, delay_ms } => format!(
                "isolate leader {}, slow the other links {delay_ms} ms, crash-restart each node \
                 that votes before it hears of a leader",
                leader_name(*fallback)
            ),
            FaultPlan::LeaderChurn { fallback, dwell_ms } => format!(
                "leader churn from {} (each next leader cut off {dwell_ms} ms after it appears)",
                leader_name(*fallback)
            ),
            FaultPlan::LoseUnsynced { node } => {
                format!("lose unsynced writes of {}", node_name(*node))
            }
            FaultPlan::PowerCut => "power cut: every node killed, every unsynced write lost".into(),
            FaultPlan::TornWrite { node, .. } => {
                format!("tear the last unsynced write of {}", node_name(*node))
            }
            FaultPlan::Corrupt { node, .. } => {
                format!("corrupt a data file of {}", node_name(*node))
            }
            FaultPlan::CorruptAll { .. } => {
                "corrupt all: every node killed, one data file of each corrupted".into()
            }
            FaultPlan::RemoveVoter { node } => format!(
                "remove voter {}, add it back as a learner and promote it at the end",
                node_name(*node)
            ),
            FaultPlan::AddLearner => "add a learner on a spare slot, promote it at the end".into(),
            FaultPlan::ReplaceNode { node } => format!(
                "replace {} by a new node on a spare slot (new id, empty data dir)",
                node_name(*node)
            ),
            FaultPlan::RemoveLeader { fallback } => format!(
                "remove leader {}, add it back as a learner and promote it at the end",
                leader_name(*fallback)
            ),
            FaultPlan::PromoteSplit { fallback } => format!(
                "promote split: leader {} and two learners cut off from the other voters, both \
                 learners promoted at once",
                leader_name(*fallback)
            ),
            FaultPlan::Figure8 {
                fallback, delay_ms, ..
            } => format!(
                "figure 8 from leader {}: its term's suffix on it and one follower, a term on \
                 a third node alone, a first batch of the suffix to a fourth ({delay_ms} ms \
                 links), the third node's term overwrites it; the old leader leads again",
                leader_name(*fallback)
            ),
        }
    }
}

/// Who a leader fault hits, as far as it is known when the description is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaderTarget {
    /// Not asked yet: the plan is described before the run.
    Unresolved,
    /// The system under test named this node as its leader.
    Known(usize),
    /// No leader was known; the plan's seeded fallback node was hit.
    Fallback(usize),
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
    use std::collections::BTreeSet;

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
                FaultKind::StallLeader,
                FaultKind::KillMinority,
                FaultKind::KillMajority,
                FaultKind::KillLeader,
            ]
        );
        assert!(parse_fault_list("none").unwrap().is_empty());
        assert_eq!(parse_fault_list("partition").unwrap().len(), 5);
        assert_eq!(
            parse_fault_list("link").unwrap(),
            vec![FaultKind::SlowLinks, FaultKind::ThrottleLinks]
        );
    }

    #[test]
    fn all_is_every_kind_that_needs_nothing_beyond_processes_and_proxies() {
        let all = parse_fault_list("all").unwrap();
        assert_eq!(all.len(), ALL_KINDS.len() - 12);
        for kind in ALL_KINDS {
            let untargeted = kind.requires().is_none() && !kind.by_name_only();
            assert_eq!(all.contains(&kind), untargeted, "{kind}");
        }
        assert_eq!(
            parse_fault_list("disk").unwrap(),
            vec![
                FaultKind::LoseUnsynced,
                FaultKind::TornWrite,
                FaultKind::Corrupt,
                FaultKind::PowerCut,
                FaultKind::CorruptAll
            ]
        );
        assert_eq!(
            parse_fault_list("crash,churn").unwrap(),
            vec![
                FaultKind::CrashRestartOne,
                FaultKind::CrashRestartLeader,
                FaultKind::CrashRestartElection,
                FaultKind::CrashRestartVoter,
                FaultKind::LeaderChurn,
            ]
        );
        assert!(known_names().contains("crash-restart-election, crash-restart-voter, leader-churn"));
    }

    #[test]
    fn crash_restarts_draw_a_downtime_within_the_bound_and_voter_crashes_never_overlap() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let options = FaultOptions::default();
        let mut downtimes = Vec::new();
        for _ in 0..200 {
            match FaultPlan::choose(FaultKind::CrashRestartOne, 3, &options, &mut rng).unwrap() {
                FaultPlan::CrashRestartOne { down_ms, .. } => downtimes.push(down_ms),
                other => panic!("wrong plan {other:?}"),
            }
        }
        assert!(downtimes
            .iter()
            .all(|&d| d <= options.crash_downtime_max_ms));
        // Seeded, not constant: the spread covers most of the range.
        assert!(downtimes.iter().min() < Some(&50) && downtimes.iter().max() > Some(&250));

        for nodes in [3, 5] {
            let plan =
                FaultPlan::choose(FaultKind::CrashRestartElection, nodes, &options, &mut rng)
                    .unwrap();
            let FaultPlan::CrashRestartElection {
                voters, crashes, ..
            } = plan
            else {
                panic!("wrong plan");
            };
            let mut sorted_voters = voters.clone();
            sorted_voters.sort_unstable();
            assert_eq!(sorted_voters, (0..nodes).collect::<Vec<_>>());
            assert_eq!(crashes.len(), options.election_crashes as usize);
            for pair in crashes.windows(2) {
                assert!(pair[1].after_ms >= pair[0].after_ms + pair[0].down_ms);
            }
        }
    }

    #[test]
    fn corrupt_all_is_a_disk_fault_whose_nodes_get_distinct_replayable_seeds() {
        assert_eq!(
            "corrupt-all".parse::<FaultKind>().unwrap(),
            FaultKind::CorruptAll
        );
        assert_eq!(FaultKind::CorruptAll.family(), FaultFamily::Disk);
        assert_eq!(FaultKind::CorruptAll.requires(), Some(Requirement::Disk));
        assert!(!FaultKind::CorruptAll.kills(), "it does its own damage");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let plan = FaultPlan::choose(FaultKind::CorruptAll, 5, &FaultOptions::default(), &mut rng)
            .unwrap();
        let FaultPlan::CorruptAll { seed } = plan else {
            panic!("wrong plan {plan:?}");
        };
        let seeds: Vec<u64> = (0..5).map(|n| corrupt_all_seed(seed, n)).collect();
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{seeds:?}");
        assert_eq!(
            seeds,
            (0..5)
                .map(|n| corrupt_all_seed(seed, n))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            plan.describe(),
            "corrupt all: every node killed, one data file of each corrupted"
        );
    }

    #[test]
    fn membership_is_a_family_of_four_kinds_that_needs_a_membership_control() {
        let kinds = parse_fault_list("membership").unwrap();
        assert_eq!(
            kinds,
            vec![
                FaultKind::RemoveVoter,
                FaultKind::AddLearner,
                FaultKind::ReplaceNode,
                FaultKind::RemoveLeader
            ]
        );
        for kind in &kinds {
            assert_eq!(kind.requires(), Some(Requirement::Membership), "{kind}");
            assert!(!kind.kills(), "{kind}");
            assert_eq!(kind.family().name(), "membership");
        }
        assert!(FaultKind::RemoveLeader.targets_leader());
        assert!(!FaultKind::RemoveVoter.targets_leader());
        assert!(!parse_fault_list("all")
            .unwrap()
            .contains(&FaultKind::AddLearner));
        assert!(known_names().contains("remove-voter, add-learner, replace-node, remove-leader"));
    }

    #[test]
    fn promote_split_is_a_membership_kind_asked_for_by_name_only() {
        let kind: FaultKind = "promote-split".parse().unwrap();
        assert_eq!(kind, FaultKind::PromoteSplit);
        assert_eq!(kind.family(), FaultFamily::Membership);
        assert_eq!(kind.requires(), Some(Requirement::Membership));
        assert!(kind.targets_leader() && kind.by_name_only());
        assert!(!parse_fault_list("membership,all").unwrap().contains(&kind));
        assert_eq!(
            parse_fault_list("membership,promote-split").unwrap().last(),
            Some(&kind)
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!(FaultPlan::choose(kind, 2, &FaultOptions::default(), &mut rng).is_err());
        let plan = FaultPlan::choose(kind, 3, &FaultOptions::default(), &mut rng).unwrap();
        let FaultPlan::PromoteSplit { fallback } = plan else {
            panic!("wrong plan {plan:?}");
        };
        assert!(fallback < 3);
        assert_eq!(plan.leader_fallback(), Some(fallback));
        assert_eq!(
            plan.remap(|n| n + 3),
            FaultPlan::PromoteSplit {
                fallback: fallback + 3
            }
        );
        assert!(plan
            .describe()
            .starts_with("promote split: leader (fallback n"));
    }

    #[test]
    fn membership_plans_are_seeded_and_name_initial_nodes_only() {
        let options = FaultOptions::default();
        let draw = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            parse_fault_list("membership")
                .unwrap()
                .into_iter()
                .map(|kind| FaultPlan::choose(kind, 3, &options, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let mut targets = BTreeSet::new();
        for seed in 0..40 {
            for plan in draw(seed) {
                match plan {
                    FaultPlan::RemoveVoter { node } | FaultPlan::ReplaceNode { node } => {
                        assert!(node < 3, "{plan:?}");
                        targets.insert(node);
                    }
                    FaultPlan::RemoveLeader { fallback } => assert!(fallback < 3),
                    FaultPlan::AddLearner => {}
                    other => panic!("not a membership plan: {other:?}"),
                }
            }
        }
        assert_eq!(targets.len(), 3, "every node gets picked: {targets:?}");
        assert_eq!(
            FaultPlan::ReplaceNode { node: 0 }.describe(),
            "replace n1 by a new node on a spare slot (new id, empty data dir)"
        );
        assert_eq!(
            FaultPlan::RemoveLeader { fallback: 2 }.describe(),
            "remove leader (fallback n3), add it back as a learner and promote it at the end"
        );
    }

    #[test]
    fn remap_moves_every_node_a_plan_names_to_its_stand_in() {
        // n1 was replaced by n4.
        let stand_in = |n: usize| if n == 0 { 3 } else { n };
        let plan = FaultPlan::PartitionHalves {
            left: vec![0],
            right: vec![1, 2],
        };
        assert_eq!(
            plan.remap(stand_in),
            FaultPlan::PartitionHalves {
                left: vec![3],
                right: vec![1, 2]
            }
        );
        assert_eq!(
            FaultPlan::KillOne { node: 0 }.remap(stand_in),
            FaultPlan::KillOne { node: 3 }
        );
        assert_eq!(
            FaultPlan::PauseLeader { fallback: 0 }.remap(stand_in),
            FaultPlan::PauseLeader { fallback: 3 }
        );
        let ring = FaultPlan::MajoritiesRing {
            ring: vec![2, 0, 1],
        };
        assert_eq!(
            ring.remap(stand_in),
            FaultPlan::MajoritiesRing {
                ring: vec![2, 3, 1]
            }
        );
        assert_eq!(FaultPlan::PowerCut.remap(stand_in), FaultPlan::PowerCut);
        assert_eq!(plan.remap(|n| n), plan);
    }

    #[test]
    fn leader_plans_say_their_fallback_before_the_run() {
        let plan = FaultPlan::CrashRestartLeader {
            fallback: 1,
            down_ms: 40,
        };
        assert_eq!(
            plan.describe(),
            "crash-restart leader (fallback n2) (down 40 ms)"
        );
        assert_eq!(
            FaultPlan::KillLeader { fallback: 0 }.describe(),
            "kill leader (fallback n1)"
        );
        assert_eq!(FaultKind::Corrupt.requires(), Some(Requirement::Disk));
        assert_eq!(FaultKind::LeaderChurn.family().name(), "churn");
    }

    #[test]
    fn kill_majority_kills_more_than_half_of_the_nodes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for nodes in [1, 2, 3, 5] {
            let plan = FaultPlan::choose(
                FaultKind::KillMajority,
                nodes,
                &FaultOptions::default(),
                &mut rng,
            )
            .unwrap();
            let FaultPlan::KillMajority { nodes: killed } = plan else {
                panic!("wrong plan {plan:?}");
            };
            assert_eq!(killed.len(), nodes / 2 + 1, "{nodes} nodes: {killed:?}");
            assert!(killed.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn stall_leader_is_a_leader_pause_that_cuts_links() {
        let kind = FaultKind::StallLeader;
        assert_eq!(kind.family(), FaultFamily::Pause);
        assert!(kind.targets_leader() && !kind.kills());
        let plan = FaultPlan::choose(
            kind,
            3,
            &FaultOptions::default(),
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
        assert!(matches!(
            plan,
            FaultPlan::StallLeader {
                cut_off_ms: 500,
                ..
            }
        ));
        assert!(plan.describe().starts_with("stall leader (fallback n"));
    }

    #[test]
    fn figure_8_is_a_targeted_churn_kind_on_five_nodes_asked_for_by_name_only() {
        let kind = FaultKind::Figure8;
        assert_eq!("figure-8".parse::<FaultKind>().unwrap(), kind);
        assert_eq!(kind.family(), FaultFamily::Churn);
        assert!(kind.by_name_only() && kind.targets_leader() && !kind.kills());
        assert_eq!(kind.requires(), None);
        assert_eq!(kind.min_nodes(), 5);
        assert_eq!(
            parse_fault_list("churn").unwrap(),
            vec![FaultKind::LeaderChurn]
        );
        assert!(!parse_fault_list("all").unwrap().contains(&kind));
        assert_eq!(
            parse_fault_list("figure-8,churn").unwrap(),
            vec![kind, FaultKind::LeaderChurn]
        );
        let options = FaultOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        assert!(FaultPlan::choose(kind, 3, &options, &mut rng).is_err());
        let plan = FaultPlan::choose(kind, 5, &options, &mut rng).unwrap();
        let FaultPlan::Figure8 {
            fallback,
            ref order,
            delay_ms,
        } = plan
        else {
            panic!("wrong plan {plan:?}");
        };
        assert_eq!(delay_ms, 300);
        assert_eq!(order[0], fallback);
        let mut sorted_order = order.clone();
        sorted_order.sort_unstable();
        assert_eq!(sorted_order, vec![0, 1, 2, 3, 4]);
        assert!(plan
            .describe()
            .starts_with("figure 8 from leader (fallback n"));
        let remapped = plan.remap(|n| n + 5);
        assert_eq!(remapped.leader_fallback(), Some(fallback + 5));
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
