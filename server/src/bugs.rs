//! Planted bugs: deliberate violations of one Raft or client-session rule each, for proving
//! that the harness (`riptide campaign --bugs`) catches real bugs.
//!
//! Test-only. `riptide-server --bug NAME` turns one on, and is refused unless `--unsafe` is
//! also given. Every bug path in the node is one small branch marked `PLANTED BUG (name)`, so
//! `grep -rn "PLANTED BUG" server/src` lists them all; with no `--bug` every branch is dead.

use crate::raft::CoreBugs;
use crate::storage::wal::WalBugs;

/// The bugs of `--bug`, each named after what it does; the doc is the rule it breaks (shown in
/// `riptide-server --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum PlantedBug {
    /// Breaks "reads are answered only by a leader that confirmed its leadership": followers
    /// answer reads from their own, possibly stale, state.
    StaleFollowerReads,
    /// Breaks "a leader confirms it still leads (ReadIndex heartbeat round) before a read": the
    /// leader answers reads from its own state at once.
    LeaderLocalReads,
    /// Breaks "a write is acknowledged only once committed and applied": the leader answers
    /// as soon as the entry is in its own log, with the result computed speculatively.
    AckBeforeCommit,
    /// Breaks "a retried Request-Id is applied at most once": retries are applied again.
    NoDedup,
    /// Breaks the AppendEntries consistency check: followers accept entries whatever their
    /// entry at prevLogIndex is.
    SkipLogCheck,
    /// Breaks "term and vote are persisted before voting": a restarted node recovers its term
    /// from its log and forgets its vote, so it may vote twice in a term.
    ForgetVote,
    /// Breaks Figure 8: the leader commits entries of earlier terms by counting replicas.
    CommitOldTerm,
    /// Breaks "an entry is durable before it is acknowledged or replicated": WAL writes are
    /// never fsynced, so a disk fault that loses unsynced writes loses acknowledged entries.
    NoFsync,
    /// Breaks "corruption before the end of the WAL is an error, never a silent loss":
    /// recovery takes any bad record (a bit flip in its length or data) for a torn tail and
    /// cuts it off with every acknowledged record after it.
    WalTrustsLength,
    /// Breaks "at most one membership change is in flight": the leader accepts a change
    /// while another is still uncommitted, so two configurations two servers apart can each
    /// form a majority (disjoint majorities, two leaders committing).
    TwoChangesInFlight,
}

/// Which planted bugs are on in this node (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// `stale-follower-reads`: the Raft loop answers a follower's reads from local state.
    pub stale_follower_reads: bool,
    /// `ack-before-commit`: the Raft loop answers writes once they are durable locally.
    pub ack_before_commit: bool,
    /// `no-dedup`: the state machine ignores the session table.
    pub no_dedup: bool,
    /// `forget-vote`: the node restarts with the last log term and no vote.
    pub forget_vote: bool,
    /// The bugs that live in the sans-IO core (`leader-local-reads`, `skip-log-check`,
    /// `commit-old-term`, `two-changes-in-flight`).
    pub core: CoreBugs,
    /// The bugs that live in the write-ahead log (`no-fsync`, `wal-trusts-length`).
    pub wal: WalBugs,
}

impl PlantedBugs {
    /// The set of bugs named on the command line.
    pub fn from_list(bugs: &[PlantedBug]) -> PlantedBugs {
        let mut out = PlantedBugs::default();
        for bug in bugs {
            match bug {
                PlantedBug::StaleFollowerReads => out.stale_follower_reads = true,
                PlantedBug::LeaderLocalReads => out.core.leader_local_reads = true,
                PlantedBug::AckBeforeCommit => out.ack_before_commit = true,
                PlantedBug::NoDedup => out.no_dedup = true,
                PlantedBug::SkipLogCheck => out.core.skip_log_check = true,
                PlantedBug::ForgetVote => out.forget_vote = true,
                PlantedBug::CommitOldTerm => out.core.commit_old_term = true,
                PlantedBug::NoFsync => out.wal.no_fsync = true,
                PlantedBug::WalTrustsLength => out.wal.trusts_length = true,
                PlantedBug::TwoChangesInFlight => out.core.two_changes_in_flight = true,
            }
        }
        out
    }

    /// True when any bug is on.
    pub fn any(&self) -> bool {
        *self != PlantedBugs::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_named_bug_turns_on_exactly_one_flag() {
        let mut seen = Vec::new();
        for bug in PlantedBug::value_variants() {
            let set = PlantedBugs::from_list(&[*bug]);
            assert!(set.any(), "{bug:?}");
            assert!(!seen.contains(&set), "{bug:?} shares its flag");
            seen.push(set);
        }
        assert_eq!(seen.len(), 10);
        assert!(!PlantedBugs::default().any());
    }

    #[test]
    fn no_dedup_applies_a_retried_request_id_again() {
        use crate::kv::{Command, KvStore, Op, OpResult, RequestId};
        let command = Command {
            request_id: Some(RequestId::parse("c:1").unwrap()),
            op: Op::Append {
                key: "k".into(),
                suffix: "x".into(),
            },
        };
        let lengths = |no_dedup: bool| {
            let mut kv = KvStore::new();
            kv.set_no_dedup(no_dedup);
            kv.apply(1, &command);
            kv.apply(2, &command).result
        };
        assert_eq!(lengths(false), OpResult::Appended { length: 1 });
        assert_eq!(lengths(true), OpResult::Appended { length: 2 });
    }

    #[test]
    fn bug_names_are_the_kebab_case_cli_names() {
        let names: Vec<String> = PlantedBug::value_variants()
            .iter()
            .filter_map(|b| b.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                "stale-follower-reads",
                "leader-local-reads",
                "ack-before-commit",
                "no-dedup",
                "skip-log-check",
                "forget-vote",
                "commit-old-term",
                "no-fsync",
                "wal-trusts-length",
                "two-changes-in-flight"
            ]
        );
    }
}
