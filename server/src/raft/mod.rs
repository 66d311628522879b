//! The Raft consensus core, with no I/O.
//!
//! [`RaftNode`] is a deterministic state machine in the style of etcd's raft and tikv's raft-rs:
//! the caller feeds it ticks ([`RaftNode::tick`]), peer messages ([`RaftNode::step`]), client
//! proposals ([`RaftNode::propose`]) and read requests ([`RaftNode::read_index`]), then takes a
//! [`Ready`] that says what to persist, what to send, what to apply and which reads may now be
//! answered. Time is ticks; randomness is a seeded RNG the caller provides. The same core runs
//! under the tokio driver of the node binary and under the deterministic simulation in tests.
//!
//! # Driver contract
//!
//! ```text
//! loop {
//!     feed inputs: tick() / step(msg) / propose(cmd) / read_index(id), as many as are waiting;
//!     let rd = node.ready();                  // everything produced since the last ready()
//!     if let Some(snap) = rd.snapshot {        // received from the leader:
//!         write snap to the snapshot file atomically (temp, fsync, rename, fsync dir);
//!         then reset the log file to empty (the log restarts at snap.meta.index + 1);
//!         restore the state machine from snap.data;
//!     }
//!     persist rd.hard_state (if Some) and rd.entries (truncating first if needed), ONE fsync;
//!     send rd.messages;                        // only now: they may depend on the fsync above
//!     apply rd.committed_entries in order;     // all of them are durable locally
//!     answer rd.read_states once applied >= index; fail rd.failed_reads;
//!     node.advance();                          // "the last Ready's state is durable"
//!     when the log after the last snapshot grew past a threshold (compaction):
//!         snap = state machine at its applied index i, meta (i, node.term_at(i));
//!         write snap to the snapshot file atomically; node.compact(snap);
//!         then drop entries <= i from the log file;
//! }
//! ```
//!
//! - Messages in a [`Ready`] may depend on that Ready's hard state (a vote) or entries (an
//!   acknowledgement), so they must not leave before the fsync. Many proposals may share one
//!   Ready and so one fsync (group commit).
//! - The leader counts its own log toward a majority only up to what [`RaftNode::advance`] said
//!   is durable, and `committed_entries` only ever holds entries durable locally. So
//!   `advance()` itself can commit entries or make them applicable: check
//!   [`RaftNode::has_ready`] again right after it rather than waiting for the next input.
//! - Inputs may also be fed between `ready()` and `advance()` (for a driver that fsyncs on
//!   another thread): what they produce goes into the next Ready, which must be persisted after
//!   the previous one. `advance()` always refers to the most recent `ready()`.
//! - A crash between `ready()` and `advance()` is safe: restart from what was durable with
//!   [`RaftNode::new`]; the lost Ready's messages were never sent.
//! - `hard_state.commit` is advisory; a restarted node delivers committed entries again from
//!   [`Config::applied`] + 1 as it learns they are committed.
//! - A proposal's fate: [`RaftNode::propose`] returns `(index, term)`; when an entry at `index`
//!   is applied, it is that proposal if its term is `term`, and the proposal was lost otherwise.
//!   A leader that loses leadership (a higher term, or check-quorum: no majority heard from
//!   within an election timeout) fails its pending reads; its pending proposals are lost or
//!   committed by the next leader, so the driver answers them "outcome unknown".
//!
//! # Snapshots and log compaction
//!
//! The durable log starts after a snapshot point ([`SnapshotMeta`]: index and term of the
//! last entry it replaces; index 0 without a snapshot). In memory, a compaction keeps a
//! *catch-up window* of up to [`Config::compaction_keep_entries`] entries before the snapshot
//! point (etcd's `SnapshotCatchUpEntries`), so a follower only slightly behind when the
//! leader compacts is sent entries, not the whole snapshot. [`RaftNode::entries`] is the
//! in-memory log, window included, [`RaftNode::first_index`] its first index (at most the
//! snapshot's index + 1), and [`RaftNode::term_at`] knows every term from the point just
//! before it (so the consistency check works across the edge), in particular the snapshot
//! point's.
//!
//! - **Compaction** is the driver's decision: it snapshots its state machine at an applied
//!   index, makes the snapshot durable, calls [`RaftNode::compact`], and only then drops the
//!   log prefix up to that index on disk, all of it: the window is memory only. After a
//!   restart the node has only the log after its snapshot, which is still a valid log (the
//!   window holds only committed entries, which the snapshot covers). A snapshot only ever
//!   holds committed, applied state.
//! - **A follower too far behind** (its next entry is before the leader's in-memory log) is
//!   sent the leader's snapshot in `InstallSnapshot` chunks of [`Config::snapshot_chunk_bytes`],
//!   one chunk in flight, the unacknowledged one resent at every heartbeat. The transfer is
//!   pinned to the snapshot it started with: compactions on the leader meanwhile do not
//!   restart it (a large state would never arrive otherwise); once it is installed the leader
//!   continues from its index + 1, with entries or, if those were compacted meanwhile, with
//!   its newer snapshot. The leader holds at most the snapshots still being sent.
//! - **The follower** acknowledges a snapshot without installing it when its log already
//!   holds the snapshot's last entry (or its commit index is past it): installing would drop
//!   entries, maybe committed ones. Otherwise it assembles the chunks (offset 0 restarts),
//!   and the last one installs the snapshot: the whole in-memory log is dropped (no window
//!   is kept), commit and applied move to its index (never backwards, since it is beyond the
//!   commit index), and it goes out in [`Ready::snapshot`]. The `installed` answer is in that
//!   same Ready's messages, so it leaves after the driver made the snapshot durable.
//! - **Crash orders.** The snapshot file is always durable before the log file loses
//!   anything, so a restart finds one of: (a) the old snapshot and the full log (crash before
//!   the snapshot was durable); (b) the new snapshot and a log still holding entries it
//!   covers (crash before the prefix was dropped): the storage ignores entries up to the
//!   snapshot's index; (c) a received snapshot and the log it replaced (crash before the
//!   reset): that log's entry at the snapshot's index has another term (or it ends before
//!   that index), so the storage drops it whole; entries after a snapshot whose last entry
//!   they do not continue must never be handed to [`RaftNode::new`].
//! - **Restart**: restore the state machine from the snapshot file, set [`Config::applied`] to
//!   the snapshot's index, and pass the snapshot and the log after it in [`DurableState`].
//! - **An empty data dir** is a node that forgot its votes and acknowledgements, which can
//!   break safety (a committed entry may have been on a majority only thanks to it). Replace
//!   such a node with a membership change instead (remove it, add a new node under a new id:
//!   see below); restarting it in place is safe only while the rest of the cluster is healthy
//!   and holds every committed entry.
//!
//! # Membership changes
//!
//! One server at a time, with learners ([`membership`] has the rules and why). A
//! configuration is an [`EntryPayload::Membership`] entry with the whole new configuration,
//! in force from the moment it is in a node's log; [`RaftNode::propose_conf_change`] starts
//! one, [`RaftNode::membership`] is the one in force, and a snapshot carries the one at its
//! index ([`RaftNode::membership_at`]: the driver stores it in the snapshot it takes, and
//! [`RaftNode::compact`] checks it). Commits, ReadIndex rounds, elections and check-quorum
//! count the voters of the configuration in force; learners are replicated to like
//! followers. A node outside its configuration never campaigns, except the one case that
//! needs it (a leader that removed itself, crashed before the change committed, and holds
//! the only log the old majority would elect); a node that is not a voter here cannot bump
//! the term of a node that hears from a leader (the §4.2.3 lease, whatever the pre-vote and
//! check-quorum settings), so a node removed without learning it cannot depose leaders.
//! With both pre-vote and check-quorum off (classic Raft), a removed node that is still a
//! voter in a lagging follower's configuration can still disrupt: change membership only
//! with one of them on (the defaults have both).
//!
//! # Pre-vote and check-quorum (etcd's `PreVote` and `CheckQuorum`)
//!
//! - **Pre-vote**: a node whose election timer fires first asks for `PreVote`s for the term it
//!   *would* campaign in (term + 1, not persisted, its own term unchanged). It campaigns for
//!   real only once a majority granted. A voter grants a pre-vote only if the candidate's log
//!   is at least as up-to-date as its own and it has not heard from a leader within the
//!   (base) election timeout. So a node cut off and rejoining never bumps the cluster's term
//!   and never deposes a healthy leader.
//! - **Check-quorum**: every election timeout, a leader that has not heard from a majority
//!   (itself included) since the last check steps down. Its reads fail and clients go to
//!   the real leader instead of waiting on one that cannot commit. With check-quorum on, a
//!   node that heard from a leader within the election timeout also ignores real
//!   `RequestVote`s of a higher term (the leader "lease").
//! - The election timer is reset only by a granted vote or a valid leader message, never by
//!   a mere higher-term request.
//!
//! # Leadership transfer
//!
//! [`RaftNode::transfer_leadership`] (the driver calls it when asked to stop) picks the most
//! up-to-date follower, brings it up to the leader's last index, then sends it `TimeoutNow`:
//! it campaigns at once, and voters waive their lease for that campaign. Meanwhile the leader
//! refuses proposals (they would be lost); it gives up after an election timeout.
//!
//! # Modules, one per Raft concept
//!
//! - `node`: roles, elections, the AppendEntries rules, commit, the Ready cycle;
//! - `log`: the log after the snapshot point, with its durable, committed and applied cursors;
//! - `progress`: the leader's view of each follower (probe / pipelined replicate / snapshot);
//! - `read_only`: ReadIndex reads and their heartbeat rounds;
//! - `membership`: configurations, single-server changes and their checks;
//! - `tests`: the core rules as executable scenarios (Figures 7 and 8 among them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod log;
pub mod membership;
mod node;
mod progress;
mod read_only;
#[cfg(test)]
mod tests;

pub use membership::{ConfChange, ConfChangeError, Member, MemberRole, Membership};
pub use node::RaftNode;

/// Identifies a node of the cluster (1, 2, 3, ...).
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A position in the log; the first entry has index 1, index 0 means "before the log".
pub type LogIndex = u64;

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by a new leader so it can commit entries of earlier terms (Raft §5.4.2).
    Noop,
    /// An opaque command for the state machine (the KV layer encodes it).
    Command(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A new cluster configuration, whole; in force on every node from the moment it is in
    /// its log (see [`membership`]).
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: EntryPayload,
}

/// The state that must be durable before the node answers anything that depends on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// The highest index known committed. Persisting it is an optimisation, not a safety need.
    pub commit: LogIndex,
}

/// Where a snapshot ends: it stands for every entry up to and including `index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    /// The term of the entry at `index`, so the log matching rule still works at its edge.
    pub term: Term,
}

/// A state-machine snapshot: opaque bytes the driver's state machine produced once it had
/// applied exactly `meta.index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    /// The configuration in force at `meta.index` ([`RaftNode::membership_at`]). `None`
    /// only in snapshots written before configurations were stored: the initial one
    /// ([`Config::members`]).
    #[serde(default)]
    pub membership: Option<Membership>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// What a node restarts from: exactly what it had made durable, nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    pub hard_state: HardState,
    /// The last durable snapshot, if any; the driver has already restored its data into the
    /// state machine. The core keeps it to send to followers that fell behind.
    pub snapshot: Option<Snapshot>,
    /// The log after the snapshot, in order: starts at `snapshot.meta.index + 1` (at 1 without
    /// a snapshot).
    pub log: Vec<Entry>,
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Follower,
    /// Asking for pre-votes before campaigning (pre-vote on); the term is not bumped yet.
    PreCandidate,
    Candidate,
    Leader,
}

/// A message between two nodes. Every message carries the sender's term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

/// The RPCs of Raft (requests and responses as separate one-way messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    RequestVote {
        last_log_index: LogIndex,
        last_log_term: Term,
        /// The candidate campaigns because the leader asked it to (`TimeoutNow`): voters
        /// ignore their leader lease for it (the log rule still holds).
        #[serde(default)]
        transfer: bool,
    },
    RequestVoteResponse {
        granted: bool,
    },
    /// "Would you vote for me in `Message::term`?" The sender's own term is one less, and
    /// neither side changes its term or vote for it.
    PreVote {
        last_log_index: LogIndex,
        last_log_term: Term,
    },
    /// A granted pre-vote carries the term asked about; a refusal carries the voter's term.
    PreVoteResponse {
        granted: bool,
    },
    /// Leadership transfer: the leader tells an up-to-date follower to campaign now, without
    /// waiting for its election timeout or asking for pre-votes. `last_log_index` is the
    /// leader's last index, frozen while it hands over: a follower holding an entry of the
    /// leader's term past it knows the handover was abandoned (the leader appends a no-op when
    /// it gives up), so a late TimeoutNow starts no election.
    TimeoutNow {
        last_log_index: LogIndex,
    },
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        /// Heartbeat round number, echoed back so the leader can confirm ReadIndex requests.
        read_round: u64,
    },
    AppendEntriesResponse {
        success: bool,
        /// On success: the index of the last entry the follower now matches.
        match_index: LogIndex,
        /// On failure: the follower's hint for backtracking, one round trip per conflicting
        /// term: the term of the conflicting entry (None if the follower's log is too short)
        /// and the first index of that term in its log (or its log length + 1). A failure
        /// with `conflict_index` 0 answers a request of an older term: only `term` counts.
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
        /// Echo of the request's `read_round`.
        read_round: u64,
    },
    /// One chunk of the leader's snapshot, `offset` bytes into its data; `done` on the last
    /// chunk. A follower restarts assembly whenever `offset` is 0.
    InstallSnapshot {
        meta: SnapshotMeta,
        /// The snapshot's configuration (on every chunk; it is small).
        membership: Option<Membership>,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        done: bool,
    },
    /// Acknowledges a chunk: the follower expects `next_offset` next (0: start again), or,
    /// once the snapshot is installed and durable (or its log already covered it),
    /// `installed` with `match_index` = `meta.index`.
    InstallSnapshotResponse {
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
        match_index: LogIndex,
    },
}

/// A read that may now be answered: once the state machine has applied `index`, serve `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub id: u64,
    pub index: LogIndex,
}

/// The output of the core since the last [`RaftNode::advance`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Persist (fsync) this before sending any message, if `Some`.
    pub hard_state: Option<HardState>,
    /// Append these to the durable log, fsync, then send messages. If the first entry's index
    /// is not last-index + 1 of the durable log, the durable log is first truncated so that it
    /// ends just before that index (a conflicting suffix was replaced).
    pub entries: Vec<Entry>,
    /// Send these after the above is durable. Delivery may fail; Raft retries.
    pub messages: Vec<Message>,
    /// Newly committed entries, in order, to apply to the state machine.
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed by a majority heartbeat round that arrived after them.
    pub read_states: Vec<ReadState>,
    /// Reads that can no longer be confirmed (lost leadership): answer them with an error.
    pub failed_reads: Vec<u64>,
    /// A snapshot received from the leader. Persist it atomically BEFORE `entries` and before
    /// sending `messages`, then discard the WHOLE durable log: the core dropped its whole
    /// in-memory log (it installs only a snapshot whose last entry its log does not hold, so
    /// any entry after it belongs to a replaced history), and `entries` continue at
    /// `meta.index + 1`. Restore the state machine from it before applying
    /// `committed_entries`, which then start at `meta.index + 1`.
    pub snapshot: Option<Snapshot>,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.failed_reads.is_empty()
            && self.snapshot.is_none()
    }
}

/// Planted bugs for the harness's detection tests (issue 6). Each flag deliberately breaks one
/// Raft rule; all are off by default and must never be on in production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreBugs {
    /// Followers accept AppendEntries without the prevLogIndex/prevLogTerm consistency check:
    /// they write the entries at the given position whatever their entry at prevLogIndex is
    /// (a message that would leave a hole in the log is still refused).
    pub skip_log_check: bool,
    /// The leader commits any entry stored on a majority, whatever its term (breaks Figure 8).
    pub commit_old_term: bool,
    /// The leader confirms reads at once with its commit index, without a heartbeat round.
    pub leader_local_reads: bool,
    /// The leader accepts a membership change while another is still uncommitted (two
    /// single-server changes in flight can form disjoint majorities).
    pub two_changes_in_flight: bool,
}

/// Configuration of one node's core.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// The initial configuration's voters, this node included: in force until the snapshot
    /// or the log holds a configuration. Empty for a node that joins a running cluster: it
    /// learns the configuration from the leader and never campaigns before it is a voter.
    pub members: Vec<NodeId>,
    /// The leader sends a heartbeat every `heartbeat_ticks` ticks.
    pub heartbeat_ticks: u32,
    /// A follower starts an election after a random timeout in
    /// `[election_ticks, 2 * election_ticks)` ticks without hearing from a leader.
    pub election_ticks: u32,
    /// At most this many entries in one AppendEntries message.
    pub max_entries_per_message: usize,
    /// Soft cap on the payload bytes of one AppendEntries message (one entry is always sent,
    /// however large), so a follower far behind is not sent one huge message.
    pub max_bytes_per_message: usize,
    /// At most this many AppendEntries carrying entries may be unacknowledged per follower
    /// (pipelining window); further entries wait for acknowledgements.
    pub max_inflight_messages: usize,
    /// Seed of the core's own RNG (election timeouts).
    pub seed: u64,
    /// The index the caller's state machine has already applied when the node (re)starts;
    /// committed entries after it are delivered again through `Ready::committed_entries`.
    /// The snapshot's index for a state machine restored from `DurableState::snapshot` (it is
    /// raised to that index if lower), 0 for one rebuilt from the whole log.
    pub applied: LogIndex,
    /// Ask for pre-votes before campaigning, so a node cut off and rejoining does not depose
    /// a healthy leader (see the module docs). Default true.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority within an election timeout,
    /// and nodes that heard from a leader within one ignore higher-term vote requests.
    /// Default true.
    pub check_quorum: bool,
    /// Size of the data chunk of one InstallSnapshot message, so a large state is sent in
    /// pieces that fit the transport (the simulation uses a few bytes to exercise chunking).
    pub snapshot_chunk_bytes: usize,
    /// The catch-up window, like etcd's `SnapshotCatchUpEntries` (default 5000): a compaction
    /// keeps up to this many entries before the snapshot's index in memory, so a follower
    /// only that far behind is sent entries rather than the whole snapshot. Memory only: the
    /// driver still drops every entry up to the snapshot's index from its log on disk.
    pub compaction_keep_entries: u64,
    /// Reads the leader holds while they wait for confirmation; past it `read_index` refuses
    /// with [`RaftError::TooManyPendingReads`], so a leader that can never confirm them
    /// (cut off, without check-quorum) holds bounded memory. Default 65536, the driver's
    /// client queue.
    pub max_pending_reads: usize,
    /// A learner may be promoted only when its log matches the leader's up to at most this
    /// many entries before the leader's last (and it is being replicated to, not probed or
    /// sent a snapshot). Default 1000.
    pub promote_max_lag: u64,
    /// Planted bugs (all off by default).
    pub bugs: CoreBugs,
}

impl Config {
    /// A configuration with defaults in ticks close to etcd's ratio (heartbeat 1, election 10):
    /// the driver chooses the tick length. The seed defaults to the node id; set it from a real
    /// random source (or a test seed) when several nodes may start in the same state.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Config {
        Config {
            id,
            members,
            heartbeat_ticks: 1,
            election_ticks: 10,
            max_entries_per_message: 1024,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 256,
            seed: id,
            applied: 0,
            pre_vote: true,
            check_quorum: true,
            snapshot_chunk_bytes: 256 * 1024,
            compaction_keep_entries: 5000,
            max_pending_reads: 65536,
            promote_max_lag: 1000,
            bugs: CoreBugs::default(),
        }
    }
}

/// Why a proposal or a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// Only the leader takes proposals and reads; `leader` is the best known leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// [`Config::max_pending_reads`] reads already wait for confirmation (a leader that
    /// cannot reach a majority without check-quorum never confirms them).
    #[error("{limit} reads already wait for confirmation")]
    TooManyPendingReads { limit: usize },
}

/// Why [`RaftNode::compact`] refused a snapshot. All leave the core unchanged; none is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The snapshot claims state the core has not handed out as committed yet.
    #[error("snapshot index {index} is beyond the applied index {applied}")]
    NotApplied { index: LogIndex, applied: LogIndex },
    /// The log already starts after `index` (a newer snapshot was taken or received): the
    /// snapshot is older than what the core has, harmless to drop.
    #[error("snapshot index {index} is before the current snapshot at {snapshot_index}")]
    AlreadyCompacted {
        index: LogIndex,
        snapshot_index: LogIndex,
    },
    /// The snapshot's configuration is not the one in force at its index.
    #[error("snapshot at index {index} carries another configuration than the log's")]
    MembershipMismatch { index: LogIndex },
    /// `meta.term` is not the term of the log's entry at `meta.index`.
    #[error("snapshot term {term} at index {index} does not match the log's term {log_term:?}")]
    TermMismatch {
        index: LogIndex,
        term: Term,
        log_term: Option<Term>,
    },
}

/// A snapshot of a node's view, for `/status` and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    pub last_index: LogIndex,
    /// The index the latest snapshot covers (0 without one).
    pub snapshot_index: LogIndex,
    /// The configuration in force (the latest in the log, committed or not).
    pub membership: Membership,
    /// Where that configuration's entry is (0: the snapshot's or the initial one), and
    /// whether it is committed yet (false: a change is in flight).
    pub membership_index: LogIndex,
    pub membership_committed: bool,
    /// As leader: the index each other member's log is known to match.
    pub match_index: BTreeMap<NodeId, LogIndex>,
}
