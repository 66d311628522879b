//! [`RaftNode`]: one node's Raft state machine: roles and elections (§5.2), replication and
//! the consistency check (§5.3), commit of current-term entries only (§5.4.2, Figure 8),
//! ReadIndex ([`super::read_only`]), and log compaction with InstallSnapshot (§7: the leader
//! sends its snapshot in chunks to a follower whose next entries it compacted).
//!
//! Every input only changes memory and queues outputs; [`RaftNode::ready`] hands them out and
//! [`RaftNode::advance`] learns what became durable. See the driver contract in [`super`].

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::read_only::ReadOnly;
use super::{
    CompactError, ConfChange, ConfChangeError, Config, DurableState, Entry, EntryPayload,
    HardState, LogIndex, Membership, Message, MessageBody, NodeId, RaftError, ReadState, Ready,
    Role, Snapshot, SnapshotMeta, Status, Term,
};

/// One node's Raft core. Deterministic: the same inputs (and seed) give the same outputs.
pub struct RaftNode {
    config: Config,
    /// The configuration in force: the latest in the log, committed or not (§4.1).
    membership: Membership,
    /// The index of its entry; the snapshot's index when it comes from the snapshot (or
    /// the initial configuration).
    membership_index: LogIndex,
    /// The configuration at the snapshot point, where the log's configurations start from.
    base_membership: Membership,
    /// Every member of `membership` but this node, voters and learners.
    peers: Vec<NodeId>,
    /// Election timeouts come from here, seeded by `Config::seed`.
    rng: ChaCha8Rng,
    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    /// The leader of the current term, once known.
    leader: Option<NodeId>,
    log: RaftLog,
    /// Ticks since the last valid leader message or granted vote (followers, candidates).
    election_elapsed: u32,
    /// This term's timeout, drawn in `[election_ticks, 2 * election_ticks)`.
    randomized_election_timeout: u32,
    /// Ticks since the leader's last heartbeat broadcast.
    heartbeat_elapsed: u32,
    /// Votes received as candidate in the current term.
    votes: BTreeMap<NodeId, bool>,
    /// As leader: what it knows of each follower.
    progress: BTreeMap<NodeId, Progress>,
    read_only: ReadOnly,
    /// Number of the last heartbeat round sent; every AppendEntries carries it. Never decreases,
    /// so a round number identifies "sent after" across terms too.
    sent_round: u64,
    /// A read was admitted for round `sent_round + 1`: broadcast it at the next `ready()`, so
    /// every read arriving before then shares one round.
    read_round_wanted: bool,
    /// Proposals were appended: send them at the next `ready()`, batched into one message per
    /// follower.
    replicate_wanted: bool,
    /// The hard state last handed out in a Ready (or restored): a Ready carries it only when
    /// it changed.
    last_hard_state: HardState,
    messages: Vec<Message>,
    read_states: Vec<ReadState>,
    failed_reads: Vec<u64>,
    /// As leader: the follower leadership is being handed to, and the ticks since the
    /// transfer began (it is abandoned after an election timeout).
    lead_transferee: Option<NodeId>,
    transfer_elapsed: u32,
    /// The latest snapshot (restored, taken by the driver, or received): what a leader starts
    /// sending to followers whose next entries are compacted (transfers in progress hold on to
    /// the one they started with). Its meta is the log's snapshot point.
    snapshot: Option<Arc<Snapshot>>,
    /// A snapshot received and installed, for the next Ready to hand to the driver.
    pending_snapshot: Option<Snapshot>,
    /// The snapshot a leader is sending us, assembled chunk by chunk.
    incoming_snapshot: Option<Snapshot>,
}

impl RaftNode {
    /// A node restarting from its durable state only (an empty one for a fresh node). It starts
    /// as a follower in the persisted term, with the persisted vote.
    pub fn new(config: Config, durable: DurableState) -> RaftNode {
        let mut durable = durable;
        // A snapshot written before configurations were stored is of the initial one.
        if let Some(snapshot) = durable.snapshot.as_mut() {
            snapshot
                .membership
                .get_or_insert_with(|| Membership::from_voters(config.members.iter().copied()));
        }
        let base_membership = durable
            .snapshot
            .as_ref()
            .and_then(|s| s.membership.clone())
            .unwrap_or_else(|| Membership::from_voters(config.members.iter().copied()));
        let hard_state = durable.hard_state;
        let snapshot_meta = durable
            .snapshot
            .as_ref()
            .map_or(SnapshotMeta::default(), |s| s.meta);
        let log = RaftLog::restore(
            snapshot_meta,
            durable.log,
            hard_state.commit,
            config.applied,
        );
        let mut node = RaftNode {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            membership: base_membership.clone(),
            membership_index: snapshot_meta.index,
            base_membership,
            peers: Vec::new(),
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            read_only: ReadOnly::default(),
            sent_round: 0,
            read_round_wanted: false,
            replicate_wanted: false,
            last_hard_state: hard_state,
            messages: Vec::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            lead_transferee: None,
            transfer_elapsed: 0,
            snapshot: durable.snapshot.map(Arc::new),
            pending_snapshot: None,
            incoming_snapshot: None,
            config,
        };
        node.refresh_membership();
        node.reset_election_timer();
        node
    }

    /// One unit of logical time: drives election timeouts, leader heartbeats and the leader's
    /// check-quorum.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.config.election_ticks.max(1) {
                    self.election_elapsed = 0;
                    if self.config.check_quorum && !self.quorum_active() {
                        tracing::info!(
                            id = self.config.id,
                            term = self.term,
                            "check-quorum: no majority heard from, stepping down"
                        );
                        self.become_follower(self.term, None);
                        return;
                    }
                    for progress in self.progress.values_mut() {
                        progress.was_active = progress.recent_active;
                        progress.recent_active = false;
                    }
                }
                if self.lead_transferee.is_some() {
                    self.transfer_elapsed += 1;
                    if self.transfer_elapsed >= self.config.election_ticks.max(1) {
                        tracing::info!(id = self.config.id, "leadership transfer timed out");
                        self.lead_transferee = None;
                        // An entry past the index every TimeoutNow of the handover carries:
                        // followers that get it ignore a late TimeoutNow.
                        self.log.append(self.term, EntryPayload::Noop);
                        self.replicate_wanted = true;
                    }
                }
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.config.heartbeat_ticks.max(1) {
                    self.broadcast_heartbeat();
                }
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                self.election_elapsed = self.election_elapsed.saturating_add(1);
                if self.election_elapsed >= self.randomized_election_timeout && self.may_campaign()
                {
                    if self.config.pre_vote {
                        self.pre_campaign();
                    } else {
                        self.campaign();
                    }
                }
            }
        }
    }

    /// Handles a message from a peer. Messages not addressed to this node, from unknown nodes,
    /// or with a stale term are ignored, except stale requests, which are answered with the
    /// current term so that their sender steps down.
    pub fn step(&mut self, msg: Message) {
        // Messages from non-members are taken too: a new member may campaign before this
        // node has its configuration, and a joining node hears from a leader it does not know
        // yet. Only voters' votes and members' answers ever count.
        if msg.to != self.config.id || msg.from == self.config.id {
            return;
        }
        if msg.term > self.term {
            match msg.body {
                MessageBody::RequestVote {
                    transfer: false, ..
                }
                | MessageBody::PreVote { .. }
                    if self.in_leader_lease(matches!(msg.body, MessageBody::PreVote { .. }))
                        || self.lease_against_non_voter(msg.from) =>
                {
                    // We heard from a leader within the election timeout: the cluster is
                    // healthy, so refuse without adopting the term (a rejoining node must not
                    // depose the leader). The refusal carries our term: a real candidate drops
                    // it as stale, a pre-candidate behind us learns our term.
                    let pre = matches!(msg.body, MessageBody::PreVote { .. });
                    tracing::debug!(
                        id = self.config.id,
                        from = msg.from,
                        term = msg.term,
                        pre,
                        "vote refused: leader lease"
                    );
                    self.send(msg.from, vote_response(pre, false));
                    return;
                }
                // A pre-vote never changes a term: neither the voter's, nor (when granted,
                // carrying the term asked about) the pre-candidate's.
                MessageBody::PreVote { .. } | MessageBody::PreVoteResponse { granted: true } => {}
                // Any other message from a higher term makes this node a follower of that
                // term (§5.1).
                MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(msg.term, Some(msg.from))
                }
                _ => self.become_follower(msg.term, None),
            }
        } else if msg.term < self.term {
            self.answer_stale(msg);
            return;
        }
        match msg.body {
            MessageBody::InstallSnapshot {
                meta,
                membership,
                offset,
                data,
                done,
            } => self.handle_install_snapshot(msg.from, meta, membership, offset, data, done),
            MessageBody::InstallSnapshotResponse {
                meta,
                next_offset,
                installed,
                match_index,
            } => self.handle_snapshot_response(msg.from, meta, next_offset, installed, match_index),
            MessageBody::TimeoutNow { last_log_index } => {
                self.handle_timeout_now(msg.from, last_log_index)
            }
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(msg.from, msg.term, last_log_index, last_log_term, false),
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => self.handle_request_vote(msg.from, msg.term, last_log_index, last_log_term, true),
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(msg.from, msg.term, granted, false)
            }
            MessageBody::PreVoteResponse { granted } => {
                self.handle_vote_response(msg.from, msg.term, granted, true)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_round,
            } => self.handle_append_entries(
                msg.from,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_round,
            ),
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                conflict_term,
                conflict_index,
                read_round,
            } => self.handle_append_response(
                msg.from,
                success,
                match_index,
                conflict_term,
                conflict_index,
                read_round,
            ),
        }
    }

    /// Starts handing leadership over to the most up-to-date follower (see the module docs)
    /// and returns it; None when this node is not a leader with peers. The handover is done
    /// when this node sees a leader other than itself; it is abandoned after an election
    /// timeout. Proposals are refused meanwhile.
    pub fn transfer_leadership(&mut self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        let (&transferee, progress) = self
            .progress
            .iter()
            .filter(|(&id, _)| self.membership.is_voter(id))
            .max_by_key(|(&id, p)| (p.match_index, std::cmp::Reverse(id)))?;
        let caught_up = progress.match_index == self.log.last_index();
        tracing::info!(
            id = self.config.id,
            transferee,
            caught_up,
            "transferring leadership"
        );
        self.lead_transferee = Some(transferee);
        self.transfer_elapsed = 0;
        if caught_up {
            self.send_timeout_now(transferee);
        } else {
            self.send_append_while_allowed(transferee);
        }
        Some(transferee)
    }

    /// Appends a client command to the leader's log and returns where it will be if it commits.
    /// The command is committed once an entry with this index *and term* is applied; if the
    /// entry applied at that index has another term, the proposal was lost (a new leader
    /// replaced it) and may be retried. It leaves in the next Ready, batched with every other
    /// proposal made before that `ready()`.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(LogIndex, Term), RaftError> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.lead_transferee.is_some() {
            // Handing over: a new entry would hold the transfer back or be lost with it.
            return Err(RaftError::NotLeader { leader: None });
        }
        let index = self.log.append(self.term, EntryPayload::Command(command));
        self.replicate_wanted = true;
        Ok((index, self.term))
    }

    /// Proposes one single-server membership change (see [`super::membership`]) and returns
    /// where its entry is, like [`RaftNode::propose`]. The new configuration is in force on
    /// this leader at once; the change is done when that entry commits (the driver sees it
    /// applied with that term).
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
    ) -> Result<(LogIndex, Term), ConfChangeError> {
        if self.role != Role::Leader || self.lead_transferee.is_some() {
            let leader = if self.role == Role::Leader {
                None
            } else {
                self.leader
            };
            return Err(ConfChangeError::NotLeader { leader });
        }
        // PLANTED BUG (two_changes_in_flight): a second change before the first commits.
        if self.membership_index > self.log.commit() && !self.config.bugs.two_changes_in_flight {
            return Err(ConfChangeError::InFlight {
                index: self.membership_index,
            });
        }
        if !self.committed_in_current_term() {
            return Err(ConfChangeError::LeaderNotReady);
        }
        let next = self.membership.apply(&change)?;
        if let ConfChange::Promote { id } = change {
            let last_index = self.log.last_index();
            let (match_index, replicating) = self.progress.get(&id).map_or((0, false), |p| {
                (p.match_index, p.state == ProgressState::Replicate)
            });
            if !replicating || match_index.saturating_add(self.config.promote_max_lag) < last_index
            {
                return Err(ConfChangeError::LearnerBehind {
                    id,
                    match_index,
                    last_index,
                });
            }
        }
        if next.voter_count() != self.membership.voter_count()
            || matches!(change, ConfChange::Remove { .. })
        {
            let voters: Vec<NodeId> = next.voters().collect();
            let active = voters
                .iter()
                .filter(|&&id| {
                    id == self.config.id || self.progress.get(&id).is_some_and(|p| p.active())
                })
                .count();
            if active < next.quorum() {
                return Err(ConfChangeError::WouldLoseQuorum {
                    active,
                    voters: voters.len(),
                    needed: next.quorum(),
                });
            }
        }
        tracing::info!(id = self.config.id, ?change, "membership change proposed");
        let index = self
            .log
            .append(self.term, EntryPayload::Membership(next.clone()));
        self.set_membership(next, index);
        self.replicate_wanted = true;
        Ok((index, self.term))
    }

    /// The configuration in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The configuration in force at `index`, for the driver to store in a snapshot it takes
    /// there; None for an index before the snapshot point or after the log's end.
    pub fn membership_at(&self, index: LogIndex) -> Option<Membership> {
        let snapshot_index = self.log.snapshot().index;
        if index < snapshot_index || index > self.log.last_index() {
            return None;
        }
        if index >= self.membership_index {
            return Some(self.membership.clone());
        }
        Some(
            self.latest_membership_entry(snapshot_index + 1, index)
                .map_or_else(|| self.base_membership.clone(), |(_, m)| m.clone()),
        )
    }

    /// Starts a linearizable read with the caller's id. Leader only. Answered later through
    /// `Ready::read_states` (serve it once the state machine has applied the given index) or
    /// `Ready::failed_reads` (leadership lost; answer with an error).
    pub fn read_index(&mut self, id: u64) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.config.bugs.leader_local_reads {
            // PLANTED BUG (leader_local_reads): no proof of leadership at all.
            self.read_states.push(ReadState {
                id,
                index: self.log.commit(),
            });
            return Ok(());
        }
        if self.read_only.len() >= self.config.max_pending_reads {
            return Err(RaftError::TooManyPendingReads {
                limit: self.config.max_pending_reads,
            });
        }
        if self.committed_in_current_term() {
            self.read_only
                .admit(id, self.log.commit(), self.sent_round + 1);
            self.read_round_wanted = true;
        } else {
            self.read_only.wait_for_commit(id);
        }
        Ok(())
    }

    /// True when [`RaftNode::ready`] would return something to do.
    pub fn has_ready(&self) -> bool {
        self.hard_state() != self.last_hard_state
            || self.log.has_unsent()
            || !self.messages.is_empty()
            || self.log.has_committable()
            || !self.read_states.is_empty()
            || !self.failed_reads.is_empty()
            || self.pending_snapshot.is_some()
            || (self.role == Role::Leader && (self.read_round_wanted || self.replicate_wanted))
    }

    /// Takes everything produced since the last `ready()`: see the driver contract in the
    /// module docs.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.read_round_wanted {
                // Also carries any new entries to followers that can take them.
                self.broadcast_heartbeat();
            }
            if std::mem::take(&mut self.replicate_wanted) {
                for peer in self.peers.clone() {
                    self.send_append_while_allowed(peer);
                }
            }
            self.confirm_reads();
        }
        let hard_state = self.hard_state();
        let hard_state = if hard_state != self.last_hard_state {
            self.last_hard_state = hard_state;
            Some(hard_state)
        } else {
            None
        };
        Ready {
            hard_state,
            entries: self.log.take_unsent(),
            messages: std::mem::take(&mut self.messages),
            committed_entries: self.log.take_committable(),
            read_states: std::mem::take(&mut self.read_states),
            failed_reads: std::mem::take(&mut self.failed_reads),
            snapshot: self.pending_snapshot.take(),
        }
    }

    /// The last Ready's hard state and entries are now durable (fsynced).
    pub fn advance(&mut self) {
        self.log.advance();
        if self.role == Role::Leader {
            // The leader's own durable log counts toward the majority only from now on.
            self.maybe_commit();
        }
    }

    /// This node's view, for `/status` and tests.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.log.commit(),
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot().index,
            membership: self.membership.clone(),
            membership_index: self.membership_index,
            membership_committed: self.membership_index <= self.log.commit(),
            match_index: self
                .progress
                .iter()
                .map(|(&id, p)| (id, p.match_index))
                .collect(),
        }
    }

    /// The in-memory log, in order from [`RaftNode::first_index`] (durable or not; the
    /// catch-up window before the snapshot point included), for tests and status.
    pub fn entries(&self) -> &[Entry] {
        self.log.entries()
    }

    /// The entry at `index`, if the in-memory log still holds it (not compacted, catch-up
    /// window included, not beyond the end).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The term of the entry at `index` (catch-up window included), or of the point just before
    /// [`RaftNode::first_index`] (`Some(0)` for index 0 without a snapshot); `None` when
    /// compacted or beyond the log. Always known for the snapshot's index and every index after
    /// it up to the last. The driver uses it to label a snapshot it takes.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// The first index the in-memory log still holds as an entry: the snapshot's index + 1 (1
    /// without a snapshot), or lower while a catch-up window
    /// ([`Config::compaction_keep_entries`]) keeps entries the snapshot covers. The durable log
    /// the driver keeps starts after the snapshot's index whatever this says.
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// Where the latest snapshot ends, if there is one.
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshot.as_ref().map(|s| s.meta)
    }

    /// Log compaction: the driver took `snapshot` of its state machine once it had applied
    /// exactly `snapshot.meta.index` (an index the core handed out in `committed_entries`),
    /// labelled it with [`RaftNode::term_at`] of that index, and made it durable. The core
    /// keeps the snapshot to send to followers that need compacted entries and as its restart
    /// point, and drops its in-memory log up to that index except the last
    /// [`Config::compaction_keep_entries`] entries (the catch-up window, served to followers
    /// only slightly behind). The driver then drops the whole prefix up to that index from
    /// its own log on disk (the window is memory only). Transfers of an older snapshot in
    /// progress go on with it.
    ///
    /// A refusal changes nothing: [`CompactError::AlreadyCompacted`] means a newer snapshot
    /// (one received from the leader, say) is already in place.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), CompactError> {
        let meta = snapshot.meta;
        let current = self.log.snapshot();
        if meta.index < current.index {
            return Err(CompactError::AlreadyCompacted {
                index: meta.index,
                snapshot_index: current.index,
            });
        }
        if meta.index > self.log.applied() {
            return Err(CompactError::NotApplied {
                index: meta.index,
                applied: self.log.applied(),
            });
        }
        let log_term = self.log.term_at(meta.index);
        if log_term != Some(meta.term) {
            return Err(CompactError::TermMismatch {
                index: meta.index,
                term: meta.term,
                log_term,
            });
        }
        let membership = self.membership_at(meta.index);
        if snapshot.membership.is_some() && snapshot.membership != membership {
            return Err(CompactError::MembershipMismatch { index: meta.index });
        }
        let mut snapshot = snapshot;
        snapshot.membership = membership.clone();
        if let Some(membership) = membership {
            self.base_membership = membership;
        }
        self.log.compact(meta, self.config.compaction_keep_entries);
        tracing::debug!(
            id = self.config.id,
            index = meta.index,
            term = meta.term,
            first_index = self.log.first_index(),
            "log compacted"
        );
        self.snapshot = Some(Arc::new(snapshot));
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.commit(),
        }
    }

    fn not_leader(&self) -> RaftError {
        RaftError::NotLeader {
            leader: self.leader,
        }
    }

    fn quorum(&self) -> usize {
        self.membership.quorum()
    }

    /// Recomputes the configuration in force from the log after a truncation, a restart or a
    /// snapshot install: the latest configuration entry after the snapshot point, or the
    /// snapshot's configuration.
    fn refresh_membership(&mut self) {
        let snapshot_index = self.log.snapshot().index;
        let (index, membership) =
            match self.latest_membership_entry(snapshot_index + 1, self.log.last_index()) {
                Some((index, membership)) => (index, membership.clone()),
                None => (snapshot_index, self.base_membership.clone()),
            };
        self.set_membership(membership, index);
    }

    /// The last configuration entry in `[from, to]` of the in-memory log.
    fn latest_membership_entry(
        &self,
        from: LogIndex,
        to: LogIndex,
    ) -> Option<(LogIndex, &Membership)> {
        let from = from.max(self.log.first_index());
        (from..=to)
            .rev()
            .find_map(|index| match self.log.entry(index) {
                Some(Entry {
                    payload: EntryPayload::Membership(m),
                    ..
                }) => Some((index, m)),
                _ => None,
            })
    }

    /// Puts a configuration in force: the peers to replicate to, the leader's progress of new
    /// members (removed ones are dropped), and no campaign by a node that no longer votes.
    fn set_membership(&mut self, membership: Membership, index: LogIndex) {
        if membership != self.membership {
            tracing::info!(
                id = self.config.id,
                index,
                voters = ?membership.voters().collect::<Vec<_>>(),
                learners = ?membership.learners().collect::<Vec<_>>(),
                "configuration in force"
            );
        }
        self.membership = membership;
        self.membership_index = index;
        self.peers = self
            .membership
            .members
            .keys()
            .copied()
            .filter(|&id| id != self.config.id)
            .collect();
        if self.role == Role::Leader {
            let next = self.log.last_index() + 1;
            let max_inflight = self.config.max_inflight_messages;
            let members = &self.membership;
            self.progress.retain(|id, _| members.contains(*id));
            for &peer in &self.peers {
                self.progress
                    .entry(peer)
                    .or_insert_with(|| Progress::new(next, max_inflight));
            }
        }
        if matches!(self.role, Role::PreCandidate | Role::Candidate)
            && !self.membership.is_voter(self.config.id)
        {
            self.become_follower(self.term, None);
        }
    }

    /// After a follower's log took new entries: put the latest configuration among them in
    /// force, or recompute it when the merge cut the entry of the one in force.
    fn membership_after_merge(&mut self, truncated_at: Option<LogIndex>, from: LogIndex) {
        if truncated_at.is_some_and(|t| t <= self.membership_index) {
            self.refresh_membership();
            return;
        }
        let last = self.log.last_index();
        if let Some((index, membership)) = self
            .latest_membership_entry(from.max(self.membership_index + 1), last)
            .map(|(i, m)| (i, m.clone()))
        {
            self.set_membership(membership, index);
        }
    }

    /// A leader outside its own configuration steps down once that configuration commits
    /// (§4.2.2); it hands leadership to the most up-to-date voter first so the cluster does
    /// not wait out an election timeout.
    fn step_down_if_removed(&mut self) {
        if self.role != Role::Leader
            || self.membership.is_voter(self.config.id)
            || self.membership_index > self.log.commit()
        {
            return;
        }
        tracing::info!(
            id = self.config.id,
            term = self.term,
            "removed from the configuration: stepping down"
        );
        // Followers learn the commit index of the change before anyone takes over.
        self.broadcast_heartbeat();
        let last_index = self.log.last_index();
        let successor = self
            .progress
            .iter()
            .filter(|(&id, p)| self.membership.is_voter(id) && p.match_index == last_index)
            .map(|(&id, _)| id)
            .next();
        if let Some(successor) = successor {
            self.send_timeout_now(successor);
        }
        self.become_follower(self.term, None);
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_in_term(to, self.term, body);
    }

    /// Sends with an explicit term: pre-vote messages carry the term asked about.
    fn send_in_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.messages.push(Message {
            from: self.config.id,
            to,
            term,
            body,
        });
    }

    /// True when this node heard from a leader (or is one) within the base election timeout,
    /// so it refuses higher-term votes: pre-votes whenever pre-vote is on, real votes only
    /// with check-quorum, as in etcd (check-quorum is what makes a leader that lost its
    /// majority step down; without it real votes follow classic Raft).
    fn in_leader_lease(&self, pre_vote: bool) -> bool {
        let lease_applies = self.config.check_quorum || (pre_vote && self.config.pre_vote);
        lease_applies
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_ticks.max(1)
    }

    /// The lease against a node that is not a voter here (§4.2.3): a removed node that never
    /// learned of its removal times out and campaigns with ever higher terms; while a leader
    /// is heard from, its requests are refused without adopting their term, whatever the
    /// pre-vote and check-quorum settings, or it would depose every leader forever.
    fn lease_against_non_voter(&self, candidate: NodeId) -> bool {
        !self.membership.is_voter(candidate)
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_ticks.max(1)
    }

    /// Check-quorum: the leader and the followers that answered since the last check are a
    /// majority.
    fn quorum_active(&self) -> bool {
        let active = self.per_voter(true, |p| p.recent_active);
        active.into_iter().filter(|&a| a).count() >= self.quorum()
    }

    /// One value per voter of the configuration in force: `mine` for this node when it votes
    /// (a leader that removed itself does not), `of` its progress for every other voter.
    fn per_voter<T>(&self, mine: T, of: impl Fn(&Progress) -> T) -> Vec<T> {
        let me = self.membership.is_voter(self.config.id).then_some(mine);
        self.progress
            .iter()
            .filter(|(&id, _)| self.membership.is_voter(id))
            .map(|(_, p)| of(p))
            .chain(me)
            .collect()
    }

    fn reset_election_timer(&mut self) {
        let base = self.config.election_ticks.max(1);
        self.election_elapsed = 0;
        self.randomized_election_timeout = self.rng.gen_range(base..2 * base);
    }

    /// Follower of `term` (a higher one, or the current one when a candidate meets the leader).
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        let previous = self.role;
        self.role = Role::Follower;
        self.leader = leader;
        if previous == Role::Leader {
            self.lead_transferee = None;
            self.read_only.fail_all(&mut self.failed_reads);
            self.progress.clear();
            self.read_round_wanted = false;
            self.replicate_wanted = false;
        }
        if previous != Role::Follower {
            // A follower keeps its timer: only a granted vote or a valid leader message resets
            // it, so a stream of doomed higher-term candidates cannot postpone elections.
            self.reset_election_timer();
        }
        self.votes.clear();
    }

    /// Pre-vote: asks whether a majority would vote for this node in the next term, without
    /// changing its term or vote, so a node that cannot win (cut off, or behind) disturbs no
    /// one.
    fn pre_campaign(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        if self.membership.is_voter(self.config.id) {
            self.votes.insert(self.config.id, true);
        }
        self.reset_election_timer();
        tracing::debug!(id = self.config.id, term = self.term + 1, "pre-campaign");
        if self.votes.len() >= self.quorum() {
            self.campaign();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let next_term = self.term + 1;
        for peer in self.voter_peers() {
            self.send_in_term(
                peer,
                next_term,
                MessageBody::PreVote {
                    last_log_index,
                    last_log_term,
                },
            );
        }
    }

    /// Starts an election in the next term, voting for itself (§5.2). The vote and term reach
    /// the disk in the same Ready as the RequestVote messages, so before they are sent.
    fn campaign(&mut self) {
        self.campaign_with(false);
    }

    /// A campaign, `transfer` when the leader asked for it (voters then waive their lease).
    fn campaign_with(&mut self, transfer: bool) {
        self.term += 1;
        self.voted_for = Some(self.config.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        if self.membership.is_voter(self.config.id) {
            self.votes.insert(self.config.id, true);
        }
        self.reset_election_timer();
        tracing::debug!(id = self.config.id, term = self.term, "campaign");
        if self.votes.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voter_peers() {
            self.send(
                peer,
                MessageBody::RequestVote {
                    last_log_index,
                    last_log_term,
                    transfer,
                },
            );
        }
    }

    /// Voters campaign; learners, removed nodes and nodes still joining do not. Nor does a
    /// node that the latest configuration removes, except while that configuration is not
    /// committed: a leader that removed itself and crashed may hold the only log a majority
    /// of the old configuration would vote for, and it must be able to win (counting votes
    /// in the new configuration, without its own), commit the change and step down.
    fn may_campaign(&self) -> bool {
        let id = self.config.id;
        self.membership.is_voter(id)
            || (self.membership_index > self.log.commit()
                && self
                    .membership_at(self.membership_index - 1)
                    .is_some_and(|previous| previous.is_voter(id)))
    }

    /// The voters but this node: whom to ask for votes.
    fn voter_peers(&self) -> Vec<NodeId> {
        self.membership
            .voters()
            .filter(|&id| id != self.config.id)
            .collect()
    }

    /// Takes office: probe every follower from the end of the log and append a no-op, which is
    /// what lets entries of earlier terms commit (§5.4.2) and ReadIndex learn the commit index.
    fn become_leader(&mut self) {
        tracing::debug!(id = self.config.id, term = self.term, "leader");
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.heartbeat_elapsed = 0;
        // Check-quorum counts from here: the followers have an election timeout to answer.
        self.election_elapsed = 0;
        self.votes.clear();
        let next = self.log.last_index() + 1;
        let max_inflight = self.config.max_inflight_messages;
        self.progress = self
            .peers
            .iter()
            .map(|&peer| (peer, Progress::new(next, max_inflight)))
            .collect();
        self.log.append(self.term, EntryPayload::Noop);
        self.sent_round += 1;
        for peer in self.peers.clone() {
            self.send_append_while_allowed(peer);
        }
    }

    /// Answers a request of an older term with the current term, so its sender steps down.
    /// Stale responses are dropped.
    ///
    /// The answer carries no information but the term: its sender may meanwhile lead the
    /// current term (a restarted node numbers its heartbeat rounds from 0 again), so echoing
    /// the stale request's read round would confirm reads that no majority acknowledged, and
    /// a backtracking hint would be about another term's log. `conflict_index: 0` marks it.
    fn answer_stale(&mut self, msg: Message) {
        match msg.body {
            MessageBody::RequestVote { .. } => self.send(msg.from, vote_response(false, false)),
            MessageBody::PreVote { .. } => self.send(msg.from, vote_response(true, false)),
            MessageBody::AppendEntries { .. } => self.send(
                msg.from,
                MessageBody::AppendEntriesResponse {
                    success: false,
                    match_index: 0,
                    conflict_term: None,
                    conflict_index: 0,
                    read_round: 0,
                },
            ),
            MessageBody::InstallSnapshot { meta, .. } => self.send(
                msg.from,
                MessageBody::InstallSnapshotResponse {
                    meta,
                    next_offset: 0,
                    installed: false,
                    match_index: 0,
                },
            ),
            MessageBody::RequestVoteResponse { .. }
            | MessageBody::PreVoteResponse { .. }
            | MessageBody::TimeoutNow { .. }
            | MessageBody::AppendEntriesResponse { .. }
            | MessageBody::InstallSnapshotResponse { .. } => {}
        }
    }

    /// Tells the transferee to campaign now, with the last index the handover froze.
    fn send_timeout_now(&mut self, transferee: NodeId) {
        let last_log_index = self.log.last_index();
        self.send(transferee, MessageBody::TimeoutNow { last_log_index });
    }

    /// The leader of our term hands leadership to us: campaign now, skipping pre-vote, unless
    /// we hold an entry of its term past `last_log_index` (the handover was given up since).
    fn handle_timeout_now(&mut self, from: NodeId, last_log_index: LogIndex) {
        if self.role != Role::Follower || self.leader != Some(from) || !self.may_campaign() {
            return;
        }
        if self.log.last_index() > last_log_index && self.log.last_term() == self.term {
            tracing::info!(
                id = self.config.id,
                from,
                last_log_index,
                "ignoring a TimeoutNow of an abandoned handover"
            );
            return;
        }
        tracing::info!(
            id = self.config.id,
            from,
            "leadership handed over: campaigning"
        );
        self.campaign_with(true);
    }

    /// Grants at most one vote per term, and only to a candidate whose log is at least as
    /// up-to-date as this node's (§5.4.1): a higher last term, or the same and at least as long.
    /// A pre-vote (`pre`) is granted for any later term under the same log rule (the leader
    /// lease was checked in `step`) and records nothing; a granted one carries the term asked
    /// about, a refusal this node's term.
    fn handle_request_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
        pre: bool,
    ) {
        // A pre-candidate has not voted for itself (a pre-vote changes no term), so it can
        // grant a real vote in its term, like a follower (etcd does too).
        let can_vote = if pre {
            term > self.term
        } else {
            matches!(self.role, Role::Follower | Role::PreCandidate)
                && (self.voted_for.is_none() || self.voted_for == Some(candidate))
        };
        let up_to_date =
            (last_log_term, last_log_index) >= (self.log.last_term(), self.log.last_index());
        let granted = can_vote && up_to_date;
        if granted && !pre {
            if self.role == Role::PreCandidate {
                self.become_follower(self.term, None);
            }
            self.voted_for = Some(candidate);
            self.reset_election_timer();
        }
        let answer_term = if granted { term } else { self.term };
        self.send_in_term(candidate, answer_term, vote_response(pre, granted));
    }

    /// Counts a (pre-)vote. A majority of grants moves a pre-candidate to a real campaign and
    /// a candidate to leader; a majority of refusals sends either back to follower.
    fn handle_vote_response(&mut self, voter: NodeId, term: Term, granted: bool, pre: bool) {
        let expected_role = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected_role {
            return;
        }
        // A grant must be for the term this round asks about (a pre-vote of an earlier round
        // could carry the current term).
        let asked_term = if pre { self.term + 1 } else { self.term };
        if granted && term != asked_term {
            return;
        }
        if !self.membership.is_voter(voter) {
            return;
        }
        self.votes.insert(voter, granted);
        let granted_count = self.votes.values().filter(|&&g| g).count();
        let refused_count = self.votes.len() - granted_count;
        if granted_count >= self.quorum() {
            if pre {
                self.campaign();
            } else {
                self.become_leader();
            }
        } else if refused_count >= self.quorum() {
            self.become_follower(self.term, None);
        }
    }

    /// The follower side of AppendEntries (§5.3): the consistency check on
    /// (prev_log_index, prev_log_term), then the merge that replaces only a conflicting suffix.
    fn handle_append_entries(
        &mut self,
        leader: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_round: u64,
    ) {
        match self.role {
            Role::Leader => {
                // Two leaders in one term cannot happen with one vote per term per node.
                tracing::error!(
                    id = self.config.id,
                    from = leader,
                    "AppendEntries in own term"
                );
                return;
            }
            Role::PreCandidate | Role::Candidate => self.become_follower(self.term, Some(leader)),
            Role::Follower => self.leader = Some(leader),
        }
        self.election_elapsed = 0;

        let reject = |node: &mut RaftNode, conflict_term: Option<Term>, conflict_index| {
            node.send(
                leader,
                MessageBody::AppendEntriesResponse {
                    success: false,
                    match_index: 0,
                    conflict_term,
                    conflict_index,
                    read_round,
                },
            );
        };
        let term_at_prev = if self.log.is_compacted(prev_log_index) {
            // Inside our snapshot: committed entries, so they match the leader's (leader
            // completeness). `merge` skips the entries the snapshot covers.
            Some(prev_log_term)
        } else {
            self.log.term_at(prev_log_index)
        };
        let Some(term_at_prev) = term_at_prev else {
            // Our log is too short: the leader should continue right after our last entry.
            let next = self.log.last_index() + 1;
            reject(self, None, next);
            return;
        };
        // PLANTED BUG (skip_log_check): accept whatever our entry at prev_log_index is.
        if term_at_prev != prev_log_term && !self.config.bugs.skip_log_check {
            let first = self.log.first_index_of_term_at(prev_log_index);
            reject(self, Some(term_at_prev), first);
            return;
        }
        // Everything up to our snapshot matches too (committed).
        let verified_last =
            (prev_log_index + entries.len() as LogIndex).max(self.log.snapshot().index);
        let first_new = entries.first().map_or(0, |e| e.index);
        let truncated_at = self.log.merge(entries);
        if first_new > 0 {
            self.membership_after_merge(truncated_at, first_new);
        }
        // Only what the leader just proved matches may be committed from its commit index.
        self.log.commit_to(leader_commit.min(verified_last));
        self.send(
            leader,
            MessageBody::AppendEntriesResponse {
                success: true,
                match_index: verified_last,
                conflict_term: None,
                conflict_index: 0,
                read_round,
            },
        );
    }

    /// The follower side of InstallSnapshot. A snapshot this node's state already covers (its
    /// index is committed here, or the log holds its last entry) is acknowledged at once and
    /// never installed: installing it would drop entries, maybe committed ones. Otherwise the
    /// chunks are assembled in order (offset 0 restarts, any other gap is ignored and the
    /// expected offset sent back), and the last one installs the snapshot: the whole log is
    /// replaced by it, and the `installed` answer leaves in the Ready that carries it, so only
    /// after the driver made it durable.
    fn handle_install_snapshot(
        &mut self,
        leader: NodeId,
        meta: SnapshotMeta,
        membership: Option<Membership>,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        match self.role {
            Role::Leader => {
                tracing::error!(
                    id = self.config.id,
                    from = leader,
                    "InstallSnapshot in own term"
                );
                return;
            }
            Role::PreCandidate | Role::Candidate => self.become_follower(self.term, Some(leader)),
            Role::Follower => self.leader = Some(leader),
        }
        self.election_elapsed = 0;
        let answer = |node: &mut RaftNode, next_offset: u64, installed: bool| {
            node.send(
                leader,
                MessageBody::InstallSnapshotResponse {
                    meta,
                    next_offset,
                    installed,
                    match_index: if installed { meta.index } else { 0 },
                },
            );
        };
        if meta.index <= self.log.commit() {
            // Older than what we know committed: our log (or snapshot) holds all of it.
            self.incoming_snapshot = None;
            answer(self, 0, true);
            return;
        }
        if self.log.term_at(meta.index) == Some(meta.term) {
            // Our log already holds its last entry, so (log matching) all of it: the snapshot
            // is committed, and so is our log up to its index.
            self.incoming_snapshot = None;
            self.log.commit_to(meta.index);
            answer(self, 0, true);
            return;
        }
        if offset == 0 {
            self.incoming_snapshot = Some(Snapshot {
                meta,
                membership,
                data: Vec::new(),
            });
        }
        let Some(incoming) = self.incoming_snapshot.as_mut().filter(|s| s.meta == meta) else {
            // A chunk of a transfer we have not seen start (or lost in a restart).
            answer(self, 0, false);
            return;
        };
        if incoming.data.len() as u64 != offset {
            // Duplicated or out of order: say where we are.
            let expected = incoming.data.len() as u64;
            answer(self, expected, false);
            return;
        }
        incoming.data.extend_from_slice(&data);
        let received = incoming.data.len() as u64;
        if !done {
            answer(self, received, false);
            return;
        }
        let Some(snapshot) = self.incoming_snapshot.take() else {
            return;
        };
        tracing::info!(
            id = self.config.id,
            index = meta.index,
            term = meta.term,
            bytes = snapshot.data.len(),
            "installing snapshot from the leader"
        );
        self.log.install(meta);
        if let Some(membership) = snapshot.membership.clone() {
            self.base_membership = membership;
        }
        self.refresh_membership();
        self.pending_snapshot = Some(snapshot.clone());
        self.snapshot = Some(Arc::new(snapshot));
        answer(self, received, true);
    }

    /// The leader side of InstallSnapshot: send the next chunk the follower asks for, or, once
    /// it has the snapshot, stream entries from the snapshot's index + 1. Answers about another
    /// snapshot than the one being sent only count for what they prove (`installed`).
    fn handle_snapshot_response(
        &mut self,
        follower: NodeId,
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
        match_index: LogIndex,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        progress.recent_active = true;
        let sending = progress.snapshot_meta();
        if installed {
            let match_moved = progress.on_success(match_index.min(last_index));
            if progress.state != ProgressState::Snapshot
                || sending.is_none_or(|s| progress.match_index >= s.index)
            {
                // The follower holds everything up to the snapshot we were sending (or more).
                if progress.state != ProgressState::Replicate {
                    progress.become_replicate();
                }
            }
            if match_moved {
                self.maybe_commit();
            }
        } else if progress.state == ProgressState::Snapshot && sending == Some(meta) {
            if progress.probe_sent && next_offset == progress.snapshot_offset {
                // The answer to a duplicate: the chunk it asks for is already on its way
                // (resent at the next heartbeat if lost). Sending it again would keep two
                // chunks in flight for the rest of the transfer.
                return;
            }
            progress.snapshot_offset = next_offset;
            progress.probe_sent = false;
        } else {
            return;
        }
        if self.role == Role::Leader {
            self.send_append_while_allowed(follower);
        }
    }

    /// The leader side: move the follower's progress, commit what a majority holds, confirm
    /// reads, and keep the follower fed.
    #[allow(clippy::too_many_arguments)]
    fn handle_append_response(
        &mut self,
        follower: NodeId,
        success: bool,
        match_index: LogIndex,
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
        read_round: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&follower) {
            // Any answer in this term shows the follower is reachable (check-quorum).
            progress.recent_active = true;
        }
        if !success && conflict_index == 0 {
            // Only a term notice in our own term (see `answer_stale`).
            return;
        }
        let last_index = self.log.last_index();
        // The hint says where the follower's log may diverge: skip the whole conflicting term.
        let hinted_next = match conflict_term {
            None => conflict_index,
            Some(term) => match self.log.last_index_of_term(term) {
                Some(index) => index + 1,
                None => conflict_index,
            },
        };
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        // Any answer in this term proves the follower still followed us when it answered.
        progress.acked_round = progress.acked_round.max(read_round);
        let mut match_moved = false;
        if success {
            match_moved = progress.on_success(match_index.min(last_index));
            let snapshot_done = progress.state == ProgressState::Snapshot
                && progress
                    .snapshot_meta()
                    .is_none_or(|s| progress.match_index >= s.index);
            if progress.state == ProgressState::Probe || snapshot_done {
                progress.become_replicate();
            }
        } else if progress.state == ProgressState::Snapshot {
            // An answer to an append sent before the transfer began: the snapshot is the
            // follower's way forward, restarting it would only waste the chunks sent.
        } else {
            if hinted_next <= progress.match_index {
                // The follower lacks entries it acknowledged: it restarted with an empty (or
                // older) data dir. A probe after its old match index would be rejected forever
                // (a hot loop of rejections); go back to what it holds now. (A rejection that
                // is merely stale costs a resend: the follower acknowledges again.)
                progress.match_index = hinted_next.saturating_sub(1);
            }
            progress.become_probe(hinted_next.clamp(1, last_index + 1));
        }
        let caught_up = progress.match_index == last_index;
        if match_moved {
            self.maybe_commit();
        }
        if self.lead_transferee == Some(follower) && success && caught_up {
            // Also on later acknowledgements (heartbeats), in case a TimeoutNow was lost; one
            // that arrives after the transferee campaigned is of an older term and ignored.
            self.send_timeout_now(follower);
        }
        self.confirm_reads();
        if self.role == Role::Leader {
            self.send_append_while_allowed(follower);
        }
    }

    /// Commits the highest index stored on a majority (the leader counting only its durable
    /// log), but only if that entry is of the current term: an entry of an earlier term can be
    /// on a majority and still be overwritten (Figure 8); it commits indirectly.
    fn maybe_commit(&mut self) {
        let mut matches = self.per_voter(self.log.persisted(), |p| p.match_index);
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&majority_index) = matches.get(self.quorum() - 1) else {
            return;
        };
        if majority_index <= self.log.commit() {
            return;
        }
        // PLANTED BUG (commit_old_term): count replicas of entries of any term.
        if self.log.term_at(majority_index) != Some(self.term) && !self.config.bugs.commit_old_term
        {
            return;
        }
        self.log.commit_to(majority_index);
        self.step_down_if_removed();
        if self.role != Role::Leader {
            return;
        }
        if self.read_only.has_waiting_for_commit() && self.committed_in_current_term() {
            self.read_only
                .admit_waiting(self.log.commit(), self.sent_round + 1);
            self.read_round_wanted = true;
        }
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term_at(self.log.commit()) == Some(self.term)
    }

    /// Confirms every read whose round a majority (the leader included) has acknowledged.
    fn confirm_reads(&mut self) {
        let mut rounds = self.per_voter(self.sent_round, |p| p.acked_round);
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&quorum_round) = rounds.get(self.quorum() - 1) else {
            return;
        };
        self.read_only.confirm(quorum_round, &mut self.read_states);
    }

    /// A heartbeat to every follower, starting a new read round. It carries entries when the
    /// follower can take some, and re-probes followers whose probe may have been lost.
    fn broadcast_heartbeat(&mut self) {
        self.heartbeat_elapsed = 0;
        self.read_round_wanted = false;
        self.sent_round += 1;
        for peer in self.peers.clone() {
            if let Some(progress) = self.progress.get_mut(&peer) {
                progress.on_heartbeat();
            }
            self.send_append(peer, true);
        }
    }

    /// Sends entries to `peer` as long as its state allows (pipelining in Replicate).
    fn send_append_while_allowed(&mut self, peer: NodeId) {
        while self.send_append(peer, false) {}
    }

    /// Sends one AppendEntries to `peer` and returns true when it carried entries and more may
    /// follow (pipelining). Without `heartbeat`, only sends what the follower's state allows:
    /// one probe at a time in Probe, entries while the window has room in Replicate. A
    /// heartbeat always sends: the probe again in Probe, entries or else an empty message
    /// anchored at `match_index` (which the follower is sure to accept) in Replicate.
    ///
    /// A follower in Snapshot state, or one whose next entries are compacted, is sent a chunk
    /// of the snapshot instead (see [`RaftNode::send_snapshot_chunk`]).
    fn send_append(&mut self, peer: NodeId, heartbeat: bool) -> bool {
        let commit = self.log.commit();
        let last_index = self.log.last_index();
        // The first point whose term the leader still knows (catch-up window included).
        let log_start = self.log.first_index() - 1;
        let Some(progress) = self.progress.get_mut(&peer) else {
            return false;
        };
        if progress.state == ProgressState::Snapshot {
            if heartbeat || progress.can_send_entries() {
                self.send_snapshot_chunk(peer);
            }
            return false;
        }
        let (prev_log_index, entries) = match progress.state {
            ProgressState::Probe if !progress.probe_sent => {
                let entries = self.log.slice_from(
                    progress.next_index,
                    self.config.max_entries_per_message,
                    self.config.max_bytes_per_message,
                );
                (progress.next_index - 1, entries)
            }
            ProgressState::Replicate
                if progress.can_send_entries() && progress.next_index <= last_index =>
            {
                let entries = self.log.slice_from(
                    progress.next_index,
                    self.config.max_entries_per_message,
                    self.config.max_bytes_per_message,
                );
                (progress.next_index - 1, entries)
            }
            // Anchored where the follower is sure to match, or at the start of the in-memory
            // log when that is compacted (a follower behind it rejects, and is then sent the
            // snapshot).
            _ if heartbeat => (progress.match_index.max(log_start), Vec::new()),
            _ => return false,
        };
        if self.log.is_compacted(prev_log_index) {
            if let Some(snapshot) = &self.snapshot {
                progress.become_snapshot(Arc::clone(snapshot));
                self.send_snapshot_chunk(peer);
                return false;
            }
        }
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            // Cannot happen: next_index never passes the end of the log + 1.
            tracing::error!(peer, prev_log_index, "next_index beyond the log");
            progress.become_probe(last_index + 1);
            return false;
        };
        let last_sent = entries.last().map(|e| e.index);
        if progress.state == ProgressState::Probe || last_sent.is_some() {
            progress.on_sent(last_sent);
        }
        let more = last_sent.is_some()
            && progress.state == ProgressState::Replicate
            && progress.next_index <= last_index;
        self.send(
            peer,
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: commit,
                read_round: self.sent_round,
            },
        );
        more
    }
}

impl RaftNode {
    /// Sends `peer` the chunk at the offset it expects of the snapshot its transfer is pinned
    /// to: a compaction since the transfer began does not restart it (the follower continues
    /// with the leader's newer snapshot or entries once it has installed this one).
    fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes.max(1);
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        if progress.state != ProgressState::Snapshot || progress.snapshot.is_none() {
            let Some(latest) = &self.snapshot else {
                return;
            };
            progress.become_snapshot(Arc::clone(latest));
        }
        let Some(snapshot) = progress.snapshot.clone() else {
            return;
        };
        let len = snapshot.data.len();
        let offset = usize::try_from(progress.snapshot_offset)
            .unwrap_or(usize::MAX)
            .min(len);
        let end = offset.saturating_add(chunk_bytes).min(len);
        let body = MessageBody::InstallSnapshot {
            meta: snapshot.meta,
            membership: snapshot.membership.clone(),
            offset: offset as u64,
            data: snapshot.data[offset..end].to_vec(),
            done: end == len,
        };
        progress.snapshot_offset = offset as u64;
        progress.on_sent(None);
        self.send(peer, body);
    }
}

/// The answer to a vote request, real or pre.
fn vote_response(pre: bool, granted: bool) -> MessageBody {
    if pre {
        MessageBody::PreVoteResponse { granted }
    } else {
        MessageBody::RequestVoteResponse { granted }
    }
}
