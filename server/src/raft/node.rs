//! [`RaftNode`]: one node's Raft state machine (roles, elections, replication, commit, ReadIndex).

use super::{Config, DurableState, Entry, LogIndex, Message, RaftError, Ready, Status, Term};

/// One node's Raft core. Deterministic: the same inputs (and seed) give the same outputs.
pub struct RaftNode {
    #[allow(dead_code)]
    config: Config,
    durable: DurableState,
}

impl RaftNode {
    /// A node restarting from its durable state only (an empty one for a fresh node). It starts
    /// as a follower in the persisted term, with the persisted vote.
    pub fn new(config: Config, durable: DurableState) -> RaftNode {
        RaftNode { config, durable }
    }

    /// One unit of logical time: drives election timeouts and leader heartbeats.
    pub fn tick(&mut self) {
        todo!()
    }

    /// Handles a message from a peer. Messages not addressed to this node, from unknown nodes,
    /// or with a stale term (other than requests, which are answered with the current term so
    /// the sender steps down) are ignored.
    pub fn step(&mut self, _msg: Message) {
        todo!()
    }

    /// Appends a client command to the leader's log and returns where it will be if it commits.
    /// The command is committed once an entry with this index *and term* is applied.
    pub fn propose(&mut self, _command: Vec<u8>) -> Result<(LogIndex, Term), RaftError> {
        todo!()
    }

    /// Starts a linearizable read with the caller's id. Leader only. Answered later through
    /// `Ready::read_states` (serve it once the state machine has applied the given index) or
    /// `Ready::failed_reads` (leadership lost; answer with an error).
    pub fn read_index(&mut self, _id: u64) -> Result<(), RaftError> {
        todo!()
    }

    /// True when [`RaftNode::ready`] would return something to do.
    pub fn has_ready(&self) -> bool {
        todo!()
    }

    /// Takes everything produced since the last `ready()`: see the driver contract in the
    /// module docs.
    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// The last Ready's hard state and entries are now durable (fsynced).
    pub fn advance(&mut self) {
        todo!()
    }

    /// This node's view, for `/status` and tests.
    pub fn status(&self) -> Status {
        todo!()
    }

    /// The in-memory log, in order from index 1 (durable or not), for tests and status.
    pub fn entries(&self) -> &[Entry] {
        &self.durable.log
    }
}
