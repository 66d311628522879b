//! ReadIndex: linearizable reads without writing to the log (Raft thesis §6.4).
//!
//! A read that arrives at the leader is served at the leader's commit index once the leader
//! has proven it was still leader *after* the read arrived:
//!
//! ```text
//!  read arrives ──► index = commit ──► heartbeat round r (> every round sent before) ──►
//!  a majority (leader included) acknowledged round r ──► ReadState { id, index } ──►
//!  driver applies up to index, then answers
//! ```
//!
//! A new leader does not know the commit index of earlier terms until it has committed an entry
//! of its own term (its no-op), so reads arriving before that wait for it. One round confirms
//! every read that arrived before it was sent (batching). Rounds are numbered by the leader
//! and echoed by followers in `AppendEntriesResponse::read_round`.

use std::collections::VecDeque;

use super::{LogIndex, ReadState};

/// A read waiting for its heartbeat round to be acknowledged by a majority.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    id: u64,
    /// The commit index when the read was admitted: serve it after applying this.
    index: LogIndex,
    /// The heartbeat round that must be acknowledged by a majority.
    round: u64,
}

/// The leader's reads in flight.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadOnly {
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_for_commit: Vec<u64>,
    /// Admitted reads, in arrival order (so their rounds never decrease).
    pending: VecDeque<PendingRead>,
}

impl ReadOnly {
    /// Holds a read until the leader has committed an entry of its current term.
    pub(crate) fn wait_for_commit(&mut self, id: u64) {
        self.waiting_for_commit.push(id);
    }

    /// Reads held, admitted or waiting for the first commit.
    pub(crate) fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }

    pub(crate) fn has_waiting_for_commit(&self) -> bool {
        !self.waiting_for_commit.is_empty()
    }

    /// Admits a read at `index`, to be confirmed by heartbeat round `round`.
    pub(crate) fn admit(&mut self, id: u64, index: LogIndex, round: u64) {
        self.pending.push_back(PendingRead { id, index, round });
    }

    /// Admits every read that waited for the leader's first commit in its term.
    pub(crate) fn admit_waiting(&mut self, index: LogIndex, round: u64) {
        for id in std::mem::take(&mut self.waiting_for_commit) {
            self.admit(id, index, round);
        }
    }

    /// Confirms every admitted read whose round a majority has acknowledged.
    pub(crate) fn confirm(&mut self, quorum_round: u64, out: &mut Vec<ReadState>) {
        while let Some(read) = self.pending.front() {
            if read.round > quorum_round {
                break;
            }
            out.push(ReadState {
                id: read.id,
                index: read.index,
            });
            self.pending.pop_front();
        }
    }

    /// Leadership is lost: every read still in flight fails.
    pub(crate) fn fail_all(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.waiting_for_commit);
        out.extend(self.pending.drain(..).map(|read| read.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_confirms_every_read_admitted_before_it() {
        let mut reads = ReadOnly::default();
        reads.admit(1, 5, 3);
        reads.admit(2, 6, 3);
        reads.admit(3, 7, 4);
        let mut out = Vec::new();
        reads.confirm(2, &mut out);
        assert!(
            out.is_empty(),
            "round 2 was sent before these reads arrived"
        );
        reads.confirm(3, &mut out);
        assert_eq!(
            out,
            vec![ReadState { id: 1, index: 5 }, ReadState { id: 2, index: 6 }]
        );
        let mut failed = Vec::new();
        reads.wait_for_commit(9);
        reads.fail_all(&mut failed);
        assert_eq!(failed, vec![9, 3]);
    }
}
