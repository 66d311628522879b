//! The Raft loop: the one task that owns the Raft core and the storage.
//!
//! It follows the driver contract of [`crate::raft`], with the state machine on the applier
//! thread ([`super::applier`]), so applying entries and answering clients is off its critical
//! path:
//!
//! ```text
//! loop {
//!     wait for an input, then drain every input already queued   (peer messages, client
//!                                                                 writes and reads, ticks,
//!                                                                 durable snapshots)
//!     rd = core.ready()
//!     install rd.snapshot: snapshot.bin, then an empty WAL       (a leader's snapshot, rare)
//!     persist rd.hard_state + rd.entries, ONE fsync              (group commit)
//!     send rd.messages                                            (only now: they may promise
//!                                                                 what was just persisted)
//!     fail rd.failed_reads
//!     core.advance()
//!     publish the core's status
//!     hand the applier, in order: the restore from rd.snapshot, rd.committed_entries,
//!     rd.read_states (with their reads), a leadership loss
//! }
//! ```
//!
//! A write proposed to the core is registered with the applier at once, with its (index,
//! term): the applier answers it when that index is applied (if that index is applied with
//! another term, the entry was overwritten by a new leader and the write failed). The inputs
//! reach the applier in this loop's order through one channel, so it sees the same sequence
//! of states the loop would have seen applying inline. When this node stops being leader,
//! writes still waiting are answered "unknown outcome" (they may yet commit under the new
//! leader); the HTTP layer turns that, and its own timeout, into a `504`. Reads stay here
//! until their leadership round confirms them (or fails), then move to the applier.
//!
//! # Membership changes
//!
//! A change (`ClientRequest::ConfChange`) goes to [`RaftNode::propose_conf_change`] and waits
//! here, not in the applier: its entry changes nothing in the state machine, and the change is
//! done as soon as the entry at its index commits with its term (the configuration is in
//! force from the moment it is appended). After every turn the loop answers the changes whose
//! index is committed (with its term: done; with another: overwritten) and, when this node no
//! longer leads, the others "unknown outcome". When the configuration changed, the address
//! book learns the members' contexts and a link is opened to every new member
//! ([`PeerLinks`]).
//!
//! # Snapshots
//!
//! The applier snapshots the state machine at its own applied index every `--snapshot-entries`
//! entries and a writer thread makes it durable (see [`super::applier`]). The loop gets it as
//! an input, hands it to the core ([`RaftNode::compact`]: the core drops its log prefix and
//! keeps the snapshot for followers that fall behind) and drops the same prefix from the WAL
//! (a rewrite of the short unapplied suffix, two fsyncs). A leader's snapshot is written to
//! the same file under the same [`SnapshotFileLock`], so the two writes never overlap and the
//! file never goes backwards; a local snapshot that arrives after a newer leader's snapshot
//! was installed is ignored.
//!
//! Draining every queued input before taking a `Ready` is what batches many client writes into
//! one log append and one fsync. The loop runs on its own OS thread (a current-thread tokio
//! runtime) because the fsync blocks: nothing else (HTTP, transport, applier) waits behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::applier::{
    ApplierInput, LocalReadReply, PendingRead, PendingWrite, SnapshotFileLock, SnapshotWritten,
};
use super::members::AddressBook;
use super::metrics::Metrics;
use super::transport::PeerLinks;
use super::NodeStatus;
use crate::kv::{Applied, Command, KvStore, RestoreError};
use crate::raft::{
    ConfChange, ConfChangeError, LogIndex, Membership, Message, NodeId, RaftError, RaftNode, Role,
    Snapshot, Status, Term,
};
use crate::storage::{Storage, StorageError};

/// Why the Raft loop had to stop: the node can no longer keep its promises.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// Persisting failed: durability can no longer be promised.
    #[error("storage failed")]
    Storage(#[from] StorageError),
    /// A snapshot received from the leader cannot be restored into the state machine.
    #[error("cannot restore the snapshot at index {index}")]
    Restore {
        index: LogIndex,
        #[source]
        source: RestoreError,
    },
    /// A snapshot whose data says it was taken at another index than its label.
    #[error("the snapshot labelled index {label} holds the state at index {applied}")]
    SnapshotIndexMismatch { label: LogIndex, applied: LogIndex },
    /// A leader's snapshot older than the one already in the snapshot file.
    #[error("the leader's snapshot at index {index} is older than ours at {durable}")]
    SnapshotBackwards { index: LogIndex, durable: LogIndex },
    /// The applier thread is gone: committed entries can no longer be applied.
    #[error("the applier thread died")]
    ApplierGone,
}

/// Restores the state machine from a snapshot, checking it is the state at `meta.index`.
pub fn restore_kv(snapshot: &Snapshot) -> Result<KvStore, LoopError> {
    let kv = KvStore::restore(&snapshot.data).map_err(|source| LoopError::Restore {
        index: snapshot.meta.index,
        source,
    })?;
    if kv.applied_index() != snapshot.meta.index {
        return Err(LoopError::SnapshotIndexMismatch {
            label: snapshot.meta.index,
            applied: kv.applied_index(),
        });
    }
    Ok(kv)
}

/// A client request handed from the HTTP layer to the Raft loop.
#[derive(Debug)]
pub enum ClientRequest {
    /// Replicate and apply a write.
    Propose {
        command: Command,
        reply: oneshot::Sender<ProposeOutcome>,
    },
    /// A linearizable read by ReadIndex.
    Read {
        key: String,
        reply: oneshot::Sender<ReadOutcome>,
    },
    /// A read of the local state with no linearizability (`?stale`).
    StaleRead {
        key: String,
        reply: oneshot::Sender<Option<String>>,
    },
    /// One single-server membership change.
    ConfChange {
        change: ConfChange,
        reply: oneshot::Sender<ConfChangeOutcome>,
    },
}

/// How a membership change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChangeOutcome {
    /// Its entry committed at `index`; `status` is the leader's view right then.
    Committed {
        index: LogIndex,
        status: Box<Status>,
    },
    /// Not proposed: this node is not the leader (or hands leadership over).
    NotLeader { leader: Option<NodeId> },
    /// Not proposed: the leader refused it, for this reason.
    Refused(ConfChangeError),
    /// Proposed, but leadership was lost before it committed (it may still commit), or its
    /// entry was overwritten (it did not).
    Unknown { reason: &'static str },
}

/// A proposed membership change waiting for its entry to commit.
struct PendingChange {
    term: Term,
    reply: oneshot::Sender<ConfChangeOutcome>,
    deadline: Instant,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeOutcome {
    /// Applied (or answered from the session table, for a retry).
    Applied(Applied),
    /// Not proposed: this node is not the leader.
    NotLeader { leader: Option<NodeId> },
    /// Proposed, but the outcome is unknown here (leadership lost) or it certainly failed
    /// (overwritten); either way the client may retry with the same Request-Id.
    Unknown { reason: &'static str },
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The value (None when absent) as of a point between the request and the answer.
    Value(Option<String>),
    /// Not attempted: this node is not the leader.
    NotLeader { leader: Option<NodeId> },
    /// Leadership could not be confirmed.
    Failed { reason: &'static str },
}

/// Channels and settings the loop needs besides its core and storage.
pub struct LoopIo {
    /// Outbound queue of every peer, opened as peers become known; sending never waits.
    pub peers: PeerLinks,
    /// How to reach each member; told of every new configuration.
    pub address_book: Arc<AddressBook>,
    /// Messages decoded by the inbound peer connections.
    pub from_peers: mpsc::Receiver<Message>,
    /// Requests from the HTTP handlers.
    pub from_clients: mpsc::Receiver<ClientRequest>,
    /// Where the loop publishes its view for `/status` and `/metrics` (the applier publishes
    /// the apply index in the same status).
    pub status: Arc<watch::Sender<NodeStatus>>,
    pub metrics: Arc<Metrics>,
    /// Real time of one Raft tick.
    pub tick: Duration,
    /// How long a request may wait before it is given up.
    pub request_timeout: Duration,
    /// Planted bugs of the loop and the state machine (test only; see [`crate::bugs`]).
    pub bugs: crate::bugs::PlantedBugs,
    /// Becomes true when the node is asked to stop: a leader then hands leadership over.
    pub handover: watch::Receiver<bool>,
    /// Told once the handover is settled: true when another node leads, false when this node
    /// was not leading or the transfer did not finish within the election timeout.
    pub handover_done: Option<oneshot::Sender<bool>>,
    /// Base election timeout: how long a handover may take before the node stops anyway.
    pub election: Duration,
    /// The applier's inputs, in order (see [`super::applier`]); sending never waits.
    pub to_applier: std::sync::mpsc::Sender<Vec<ApplierInput>>,
    /// Snapshots of the state machine made durable by the applier's writer (or its error).
    pub snapshots_written: mpsc::UnboundedReceiver<Result<SnapshotWritten, StorageError>>,
    /// Who may write the snapshot file; the loop takes it to install a leader's snapshot.
    pub snapshot_file: Arc<SnapshotFileLock>,
}

/// The state of the Raft loop.
pub struct RaftLoop {
    id: NodeId,
    /// The sans-IO Raft core; only this loop touches it.
    core: RaftNode,
    /// Where each `Ready` is made durable before its messages leave.
    storage: Storage,
    io: LoopIo,
    /// Inputs for the applier not sent yet, in order; sent as one batch at the end of each
    /// `Ready` and of each turn, so the applier wakes once per batch, not per request.
    to_apply: Vec<ApplierInput>,
    /// Reads handed to `read_index`, not yet confirmed, by read id.
    unconfirmed_reads: HashMap<u64, PendingRead>,
    next_read_id: u64,
    /// The role seen at the end of the previous iteration, to notice leadership loss.
    last_role: Role,
    /// When the handover started to be waited for must end (None: no handover asked yet).
    handover_deadline: Option<Instant>,
    /// Membership changes proposed here and not answered yet, by index.
    pending_changes: std::collections::BTreeMap<LogIndex, PendingChange>,
    /// The configuration the address book and the links were last brought up to date with.
    known_membership: Option<Membership>,
}

/// At most this many inputs are taken before a `Ready` is processed, so ticks and output are
/// never starved by a flood of requests.
const MAX_INPUTS_PER_BATCH: usize = 8192;
/// At most this many `Ready`s are processed in a row before inputs are read again.
const MAX_READY_ROUNDS: usize = 4;

impl RaftLoop {
    /// The loop over a core and its storage; the applier holds the state machine at the
    /// core's `Config::applied`.
    pub fn new(id: NodeId, core: RaftNode, storage: Storage, io: LoopIo) -> RaftLoop {
        RaftLoop {
            id,
            core,
            storage,
            io,
            to_apply: Vec::new(),
            unconfirmed_reads: HashMap::new(),
            next_read_id: 1,
            last_role: Role::Follower,
            handover_deadline: None,
            pending_changes: std::collections::BTreeMap::new(),
            known_membership: None,
        }
    }

    /// Runs until shutdown, or until storage fails (then the node must stop: it can no longer
    /// promise durability).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), LoopError> {
        self.publish_disk_usage();
        self.notice_membership();
        let mut ticker = tokio::time::interval(self.io.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = self.io.handover.changed(), if self.handover_deadline.is_none() => {
                    self.start_handover();
                }
                _ = ticker.tick() => self.core.tick(),
                Some(written) = self.io.snapshots_written.recv() => {
                    self.finish_snapshot(written)?;
                }
                Some(message) = self.io.from_peers.recv() => self.step(message),
                Some(request) = self.io.from_clients.recv() => self.handle_client(request),
            }
            self.drain_inputs();
            // `advance` (and messages a node sends itself) can make more output ready at once,
            // e.g. a commit counted from the leader's own now-durable entries: take it now
            // rather than at the next input or tick.
            for _ in 0..MAX_READY_ROUNDS {
                if !self.core.has_ready() {
                    break;
                }
                self.process_ready()?;
            }
            self.flush_to_applier()?;
            self.notice_membership();
            self.answer_changes();
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                self.expire_reads();
                last_sweep = Instant::now();
            }
            self.publish_status();
            self.check_handover();
        }
        tracing::info!("raft loop stopped");
        Ok(())
    }

    /// The node is asked to stop: a leader hands leadership to an up-to-date follower, so the
    /// cluster does not wait an election timeout for a new leader.
    fn start_handover(&mut self) {
        self.handover_deadline = Some(Instant::now() + self.io.election);
        match self.core.transfer_leadership() {
            Some(transferee) => tracing::info!(transferee, "stopping: handing leadership over"),
            None => {
                // Not leading: nothing to hand over.
                if let Some(done) = self.io.handover_done.take() {
                    let _ = done.send(false);
                }
            }
        }
    }

    /// Reports the handover settled once another node leads (our vote for it has left with
    /// the Ready that made us a follower), or at the deadline.
    fn check_handover(&mut self) {
        let Some(deadline) = self.handover_deadline else {
            return;
        };
        if self.io.handover_done.is_none() {
            return;
        }
        let status = self.core.status();
        let handed_over =
            status.role != Role::Leader && status.leader.is_some_and(|leader| leader != self.id);
        if handed_over || Instant::now() >= deadline {
            if let Some(done) = self.io.handover_done.take() {
                let _ = done.send(handed_over);
            }
        }
    }

    /// Takes every input already queued (group commit comes from here).
    fn drain_inputs(&mut self) {
        for _ in 0..MAX_INPUTS_PER_BATCH {
            if let Ok(message) = self.io.from_peers.try_recv() {
                self.step(message);
            } else if let Ok(request) = self.io.from_clients.try_recv() {
                self.handle_client(request);
            } else {
                break;
            }
        }
    }

    fn step(&mut self, message: Message) {
        self.core.step(message);
    }

    fn handle_client(&mut self, request: ClientRequest) {
        match request {
            ClientRequest::Propose { command, reply } => {
                match self.core.propose(command.encode()) {
                    Ok((index, term)) => {
                        Metrics::inc(&self.io.metrics.proposals_total);
                        self.to_apply.push(ApplierInput::Register(PendingWrite {
                            index,
                            term,
                            reply,
                            deadline: Instant::now() + self.io.request_timeout,
                            // PLANTED BUG (ack-before-commit): the applier computes a
                            // speculative result from it, to answer early.
                            speculative: self.io.bugs.ack_before_commit.then_some(command),
                        }));
                    }
                    Err(RaftError::NotLeader { leader }) => {
                        let _ = reply.send(ProposeOutcome::NotLeader { leader });
                    }
                    // The core refuses a proposal only with NotLeader; were it to refuse with
                    // the read bound, nothing was proposed either.
                    Err(RaftError::TooManyPendingReads { .. }) => {
                        let _ = reply.send(ProposeOutcome::NotLeader { leader: None });
                    }
                }
            }
            // PLANTED BUG (stale-follower-reads): a follower answers from its own state.
            ClientRequest::Read { key, reply }
                if self.io.bugs.stale_follower_reads && self.core.status().role != Role::Leader =>
            {
                self.to_apply.push(ApplierInput::LocalRead {
                    key,
                    reply: LocalReadReply::Linearizable(reply),
                });
            }
            ClientRequest::Read { key, reply } => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                match self.core.read_index(id) {
                    Ok(()) => {
                        let pending = PendingRead {
                            key,
                            reply,
                            deadline: Instant::now() + self.io.request_timeout,
                        };
                        self.unconfirmed_reads.insert(id, pending);
                    }
                    Err(RaftError::NotLeader { leader }) => {
                        let _ = reply.send(ReadOutcome::NotLeader { leader });
                    }
                    Err(RaftError::TooManyPendingReads { .. }) => {
                        let _ = reply.send(ReadOutcome::Failed {
                            reason: "too many reads wait for the leader's confirmation",
                        });
                    }
                }
            }
            ClientRequest::StaleRead { key, reply } => {
                self.to_apply.push(ApplierInput::LocalRead {
                    key,
                    reply: LocalReadReply::Stale(reply),
                });
            }
            ClientRequest::ConfChange { change, reply } => {
                match self.core.propose_conf_change(change) {
                    Ok((index, term)) => {
                        let pending = PendingChange {
                            term,
                            reply,
                            deadline: Instant::now() + self.io.request_timeout,
                        };
                        self.pending_changes.insert(index, pending);
                    }
                    Err(ConfChangeError::NotLeader { leader }) => {
                        let _ = reply.send(ConfChangeOutcome::NotLeader { leader });
                    }
                    Err(refused) => {
                        let _ = reply.send(ConfChangeOutcome::Refused(refused));
                    }
                }
            }
        }
    }

    /// Answers the membership changes whose entry committed (or was overwritten), all of
    /// them "unknown" once this node no longer leads, and forgets those whose client gave up.
    fn answer_changes(&mut self) {
        if self.pending_changes.is_empty() {
            return;
        }
        let status = self.core.status();
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending_changes);
        for (index, change) in pending {
            let outcome = if index <= status.commit_index {
                if self.core.term_at(index) == Some(change.term) {
                    ConfChangeOutcome::Committed {
                        index,
                        status: Box::new(status.clone()),
                    }
                } else {
                    ConfChangeOutcome::Unknown {
                        reason: "the change's entry was overwritten by another leader's: not \
                                 applied",
                    }
                }
            } else if status.role != Role::Leader || status.term != change.term {
                ConfChangeOutcome::Unknown {
                    reason: "leadership lost before the change committed: it may still commit",
                }
            } else if change.deadline <= now || change.reply.is_closed() {
                continue;
            } else {
                self.pending_changes.insert(index, change);
                continue;
            };
            let _ = change.reply.send(outcome);
        }
    }

    /// When the configuration in force changed: the address book learns the members'
    /// contexts and every new member gets a link.
    fn notice_membership(&mut self) {
        let membership = self.core.membership();
        if self.known_membership.as_ref() == Some(membership) {
            return;
        }
        let membership = membership.clone();
        self.io.address_book.note_membership(&membership);
        self.io.peers.open_members(&membership);
        self.known_membership = Some(membership);
    }

    /// Sends the applier what is queued for it, as one batch.
    fn flush_to_applier(&mut self) -> Result<(), LoopError> {
        if self.to_apply.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.to_apply);
        self.io
            .to_applier
            .send(batch)
            .map_err(|_| LoopError::ApplierGone)
    }

    /// One turn of the driver contract.
    fn process_ready(&mut self) -> Result<(), LoopError> {
        if !self.core.has_ready() {
            return Ok(());
        }
        let ready = self.core.ready();
        // A leader's snapshot: decoded first (a snapshot this node cannot use must not replace
        // its log), made durable before the entries that follow it and before the messages
        // (the acknowledgement among them says "installed").
        let restored = match &ready.snapshot {
            Some(snapshot) => {
                let kv = restore_kv(snapshot)?;
                self.install_snapshot(snapshot)?;
                Some((snapshot.meta, snapshot.membership.clone(), kv))
            }
            None => None,
        };
        if ready.hard_state.is_some() || !ready.entries.is_empty() {
            let started = Instant::now();
            let fsyncs_before = self.storage.fsync_count();
            self.storage
                .persist(ready.hard_state.as_ref(), &ready.entries)?;
            let metrics = &self.io.metrics;
            Metrics::inc(&metrics.persist_batches_total);
            Metrics::add(&metrics.persisted_entries_total, ready.entries.len() as u64);
            Metrics::add(
                &metrics.persist_micros_total,
                started.elapsed().as_micros() as u64,
            );
            Metrics::add(
                &metrics.fsyncs_total,
                self.storage.fsync_count() - fsyncs_before,
            );
            self.publish_disk_usage();
        }
        // PLANTED BUG (ack-before-commit): the applier answers writes as soon as they are in
        // our own log.
        if self.io.bugs.ack_before_commit && !ready.entries.is_empty() {
            let durable = ready.entries.iter().map(|e| (e.index, e.term)).collect();
            self.to_apply.push(ApplierInput::Durable(durable));
        }
        // Only now may messages leave: they can promise a vote or acknowledge entries. A
        // member added by this Ready's entries gets its link first.
        self.notice_membership();
        for message in ready.messages {
            if message.to == self.id {
                self.core.step(message);
            } else if let Some(peer) = self.io.peers.get_or_open(message.to) {
                peer.send(message);
            }
        }
        for id in ready.failed_reads {
            if let Some(pending) = self.unconfirmed_reads.remove(&id) {
                Metrics::inc(&self.io.metrics.reads_failed_total);
                let _ = pending.reply.send(ReadOutcome::Failed {
                    reason: "leadership lost before the read was confirmed",
                });
            }
        }
        self.core.advance();
        // The applier answers after publishing its apply index, which must never pass the
        // commit index shown: publish the core's view first.
        self.publish_status();
        // In this order: the snapshot replaces the state machine before the entries after it
        // apply; reads confirmed here were confirmed even if leadership is lost below.
        if let Some((meta, membership, kv)) = restored {
            self.to_apply.push(ApplierInput::Restore {
                meta,
                membership,
                kv,
            });
        }
        if !ready.committed_entries.is_empty() {
            self.to_apply
                .push(ApplierInput::Committed(ready.committed_entries));
        }
        let mut confirmed: Vec<(LogIndex, PendingRead)> = ready
            .read_states
            .iter()
            .filter_map(|read| {
                let pending = self.unconfirmed_reads.remove(&read.id)?;
                Some((read.index, pending))
            })
            .collect();
        // One heartbeat round confirms many reads at the same index: one input for them all.
        confirmed.sort_by_key(|(index, _)| *index);
        let mut confirmed = confirmed.into_iter().peekable();
        while let Some((index, first)) = confirmed.next() {
            let mut reads = vec![first];
            while let Some((_, read)) = confirmed.next_if(|(i, _)| *i == index) {
                reads.push(read);
            }
            self.to_apply
                .push(ApplierInput::ReadsConfirmed { index, reads });
        }
        self.notice_role_change();
        self.flush_to_applier()
    }

    /// Makes a leader's snapshot durable: `snapshot.bin` (never concurrently with the
    /// applier's own snapshot writer, never backwards), then an empty WAL after it.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LoopError> {
        let meta = snapshot.meta;
        // A local snapshot is at most at our commit index, which a leader's snapshot is
        // beyond (the core installs no other): it can only be newer than the file.
        let installed = self
            .io
            .snapshot_file
            .write_if_newer(meta.index, || self.storage.install_snapshot(snapshot));
        match installed {
            Some(result) => result?,
            None => {
                return Err(LoopError::SnapshotBackwards {
                    index: meta.index,
                    durable: self.io.snapshot_file.durable_index(),
                })
            }
        }
        Metrics::inc(&self.io.metrics.snapshots_installed_total);
        tracing::info!(
            index = meta.index,
            term = meta.term,
            bytes = snapshot.data.len(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Takes a snapshot the applier made durable: records it, hands it to the core and
    /// compacts the WAL up to it. A storage error writing it stops the node, as any other.
    fn finish_snapshot(
        &mut self,
        written: Result<SnapshotWritten, StorageError>,
    ) -> Result<(), LoopError> {
        let SnapshotWritten {
            snapshot,
            file_bytes,
            started,
        } = written?;
        let meta = snapshot.meta;
        if let Some(current) = self.storage.snapshot_meta() {
            if current.index >= meta.index {
                // A leader's snapshot was installed after this one was written: the file and
                // the WAL already start after it.
                tracing::info!(
                    index = meta.index,
                    installed = current.index,
                    "our snapshot was overtaken by the leader's"
                );
                return Ok(());
            }
        }
        self.storage.snapshot_saved(meta, file_bytes)?;
        let wal_before = self.storage.wal_bytes();
        let compacted = match self.core.compact(snapshot) {
            Ok(()) => {
                self.storage.compact_log(meta.index)?;
                true
            }
            // The core already holds a newer snapshot: it keeps that one and its log.
            Err(e) => {
                tracing::info!(error = %e, "the core did not compact with our snapshot");
                false
            }
        };
        let metrics = &self.io.metrics;
        Metrics::inc(&metrics.snapshots_taken_total);
        Metrics::add(
            &metrics.snapshot_micros_total,
            started.elapsed().as_micros() as u64,
        );
        self.publish_disk_usage();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            file_bytes,
            compacted,
            total_ms = started.elapsed().as_millis() as u64,
            wal_bytes_before = wal_before,
            wal_bytes_after = self.storage.wal_bytes(),
            "snapshot taken"
        );
        Ok(())
    }

    /// Publishes the sizes of the WAL and the snapshot file for `/metrics`.
    fn publish_disk_usage(&self) {
        let metrics = &self.io.metrics;
        Metrics::set(&metrics.wal_bytes, self.storage.wal_bytes());
        Metrics::set(&metrics.snapshot_bytes, self.storage.snapshot_bytes());
    }

    /// On a role change the applier resets its speculative state (ack-before-commit); when
    /// leadership is lost, it answers waiting writes "unknown outcome", and unconfirmed reads
    /// fail here, so their clients can go to the new leader instead of waiting for a timeout.
    fn notice_role_change(&mut self) {
        let role = self.core.status().role;
        if role == self.last_role {
            return;
        }
        let leadership_lost = self.last_role == Role::Leader;
        self.to_apply
            .push(ApplierInput::RoleChanged { leadership_lost });
        if leadership_lost {
            tracing::info!(?role, "lost leadership");
            for (_, pending) in std::mem::take(&mut self.unconfirmed_reads) {
                Metrics::inc(&self.io.metrics.reads_failed_total);
                let _ = pending.reply.send(ReadOutcome::Failed {
                    reason: "leadership lost before the read was confirmed",
                });
            }
        } else if role == Role::Leader {
            tracing::info!(term = self.core.status().term, "became leader");
        }
        self.last_role = role;
    }

    /// Drops unconfirmed reads whose client has stopped waiting (the HTTP layer answered 504
    /// and counted them as failed); the applier expires waiting writes itself.
    fn expire_reads(&mut self) {
        let now = Instant::now();
        self.unconfirmed_reads.retain(|_, p| p.deadline > now);
    }

    /// Publishes the core's view (the applier publishes the apply index itself).
    fn publish_status(&self) {
        let raft = self.core.status();
        self.io.status.send_if_modified(|current| {
            if current.raft == raft {
                false
            } else {
                current.raft = raft;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Op;
    use crate::raft::SnapshotMeta;

    fn kv_at(index: LogIndex) -> KvStore {
        let mut kv = KvStore::new();
        for i in 1..=index {
            let command = Command {
                request_id: None,
                op: Op::Write {
                    key: format!("k{i}"),
                    value: "v".to_string(),
                },
            };
            kv.apply(i, &command);
        }
        kv
    }

    fn snapshot_of(kv: &KvStore, label: LogIndex) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: label,
                term: 1,
            },
            membership: None,
            data: kv.snapshot(),
        }
    }

    #[test]
    fn restored_state_machine_is_the_one_the_snapshot_was_taken_of() {
        let kv = kv_at(5);
        assert_eq!(restore_kv(&snapshot_of(&kv, 5)).unwrap(), kv);
    }

    #[test]
    fn snapshot_whose_label_is_not_its_state_is_refused() {
        let err = restore_kv(&snapshot_of(&kv_at(5), 7)).unwrap_err();
        assert!(
            matches!(
                err,
                LoopError::SnapshotIndexMismatch {
                    label: 7,
                    applied: 5
                }
            ),
            "{err}"
        );
        let garbage = Snapshot {
            meta: SnapshotMeta { index: 3, term: 1 },
            membership: None,
            data: b"not a kv snapshot".to_vec(),
        };
        assert!(matches!(
            restore_kv(&garbage),
            Err(LoopError::Restore { index: 3, .. })
        ));
    }
}
