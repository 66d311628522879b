//! The Raft loop: the one task that owns the Raft core, the storage and the state machine.
//!
//! It follows the driver contract of [`crate::raft`]:
//!
//! ```text
//! loop {
//!     wait for an input, then drain every input already queued   (peer messages, client
//!                                                                 writes and reads, ticks)
//!     rd = core.ready()
//!     install rd.snapshot: snapshot.bin, then an empty WAL       (a leader's snapshot, rare)
//!     persist rd.hard_state + rd.entries, ONE fsync              (group commit)
//!     send rd.messages                                            (only now: they may promise
//!                                                                 what was just persisted)
//!     restore the KV from rd.snapshot                             (before any entry after it)
//!     apply rd.committed_entries, answer the writes they carry
//!     queue rd.read_states until applied_index >= their index, then answer them
//!     fail rd.failed_reads
//!     core.advance()
//!     snapshot when applied - snapshot index >= --snapshot-entries
//! }
//! ```
//!
//! # Snapshots
//!
//! Once `--snapshot-entries` entries have been applied since the last snapshot, the loop
//! clones the KV store between two `Ready`s, so the copy is exactly the state at the apply
//! index, labelled with the term of the entry there. A background thread serialises the copy
//! (data, client sessions, applied index) and makes it durable (`snapshot.bin`: write, fsync,
//! rename, fsync the directory) while the loop goes on. When the loop sees it done (checked on
//! every turn, so within a tick), it hands the snapshot to the core ([`RaftNode::compact`]:
//! the core drops its log prefix and keeps the snapshot for followers that fall behind) and
//! drops the same prefix from the WAL (a rewrite of the short unapplied suffix, two fsyncs).
//! So the loop pays for a clone of the store and the WAL rewrite; serialisation and the
//! snapshot's fsyncs happen off it. One snapshot is in flight at a time; a leader's snapshot
//! to install waits for it (both write `snapshot.bin`).
//!
//! Draining every queued input before taking a `Ready` is what batches many client writes into
//! one log append and one fsync. The loop runs on its own OS thread (a current-thread tokio
//! runtime) because the fsync blocks: nothing else (HTTP, transport) waits behind it.
//!
//! A write is answered when the entry at its (index, term) is applied; if that index is applied
//! with another term the entry was overwritten by a new leader and the write failed. When this
//! node stops being leader, writes still waiting are answered "unknown outcome" (they may yet
//! commit under the new leader); the HTTP layer turns that, and its own timeout, into a `504`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::Metrics;
use super::transport::PeerSender;
use super::NodeStatus;
use crate::kv::{Applied, Command, KvStore, RestoreError};
use crate::raft::{
    Entry, EntryPayload, LogIndex, Message, NodeId, RaftError, RaftNode, Role, Snapshot,
    SnapshotMeta, Term,
};
use crate::storage::snapshot::write_atomically;
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
    /// The background thread writing a snapshot could not start or died.
    #[error("snapshot thread failed: {0}")]
    SnapshotThread(String),
}

/// A snapshot of this node's state machine being serialised and written off the loop.
struct SnapshotJob {
    meta: SnapshotMeta,
    started: Instant,
    /// The writer's answer once the snapshot is durable: the snapshot and its file size.
    done: std::sync::mpsc::Receiver<Result<(Snapshot, u64), StorageError>>,
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

/// A write waiting for its entry to be applied.
struct PendingWrite {
    /// The term the entry was proposed in: the write succeeded only if the entry applied at
    /// its index has this term.
    term: Term,
    reply: oneshot::Sender<ProposeOutcome>,
    /// After this, nobody is waiting any more (the HTTP layer answered 504); drop it.
    deadline: Instant,
    /// PLANTED BUG (ack-before-commit): the speculative result to answer with as soon as the
    /// entry is durable in this node's own log.
    early_ack: Option<Applied>,
}

/// A read waiting for leadership confirmation and then for the apply index.
struct PendingRead {
    /// The key to read once the read is confirmed and applied.
    key: String,
    reply: oneshot::Sender<ReadOutcome>,
    deadline: Instant,
}

/// Channels and settings the loop needs besides its core, storage and state machine.
pub struct LoopIo {
    /// Outbound queue of every peer; sending never waits.
    pub peers: HashMap<NodeId, PeerSender>,
    /// Messages decoded by the inbound peer connections.
    pub from_peers: mpsc::Receiver<Message>,
    /// Requests from the HTTP handlers.
    pub from_clients: mpsc::Receiver<ClientRequest>,
    /// Where the loop publishes its view for `/status` and `/metrics`.
    pub status: watch::Sender<NodeStatus>,
    pub metrics: Arc<Metrics>,
    /// Real time of one Raft tick.
    pub tick: Duration,
    /// How long a request may wait in the loop before it is given up.
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
    /// Take a snapshot and compact the log once this many entries were applied since the
    /// last snapshot (0: never; snapshots received from the leader are still installed).
    pub snapshot_entries: u64,
}

/// The state of the Raft loop.
pub struct RaftLoop {
    id: NodeId,
    /// The sans-IO Raft core; only this loop touches it.
    core: RaftNode,
    /// Where each `Ready` is made durable before its messages leave.
    storage: Storage,
    /// The state machine: restored from the snapshot on start (or empty), then driven by the
    /// log after it.
    kv: KvStore,
    io: LoopIo,
    /// Writes waiting for their index to be applied, by index.
    pending_writes: BTreeMap<LogIndex, PendingWrite>,
    /// Reads handed to `read_index`, not yet confirmed, by read id.
    unconfirmed_reads: HashMap<u64, PendingRead>,
    /// Reads confirmed by a heartbeat round, waiting for `applied_index >= index`.
    confirmed_reads: BTreeMap<LogIndex, Vec<PendingRead>>,
    next_read_id: u64,
    /// The role seen at the end of the previous iteration, to notice leadership loss.
    last_role: Role,
    /// Answers to applied writes and served reads, sent only after `/status` shows the apply
    /// index they depend on, so a client never sees `/status` behind its own acknowledged write.
    write_answers: Vec<(oneshot::Sender<ProposeOutcome>, ProposeOutcome)>,
    read_answers: Vec<(oneshot::Sender<ReadOutcome>, ReadOutcome)>,
    /// PLANTED BUG (ack-before-commit): the state machine plus this leader's proposals not yet
    /// applied, which early acknowledgements are computed against. Reset on a role change.
    speculative: Option<KvStore>,
    /// When the handover started to be waited for must end (None: no handover asked yet).
    handover_deadline: Option<Instant>,
    /// The snapshot being written in the background, if any (at most one).
    snapshot_job: Option<SnapshotJob>,
}

/// At most this many inputs are taken before a `Ready` is processed, so ticks and output are
/// never starved by a flood of requests.
const MAX_INPUTS_PER_BATCH: usize = 8192;
/// At most this many `Ready`s are processed in a row before inputs are read again.
const MAX_READY_ROUNDS: usize = 4;

impl RaftLoop {
    /// The loop over a core and its storage; `kv` is the state machine at the core's
    /// `Config::applied` (restored from the durable snapshot, or empty).
    pub fn new(
        id: NodeId,
        core: RaftNode,
        storage: Storage,
        mut kv: KvStore,
        io: LoopIo,
    ) -> RaftLoop {
        kv.set_no_dedup(io.bugs.no_dedup);
        RaftLoop {
            id,
            core,
            storage,
            kv,
            io,
            pending_writes: BTreeMap::new(),
            unconfirmed_reads: HashMap::new(),
            confirmed_reads: BTreeMap::new(),
            next_read_id: 1,
            last_role: Role::Follower,
            write_answers: Vec::new(),
            read_answers: Vec::new(),
            speculative: None,
            handover_deadline: None,
            snapshot_job: None,
        }
    }

    /// Runs until shutdown, or until storage fails (then the node must stop: it can no longer
    /// promise durability).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), LoopError> {
        self.publish_disk_usage();
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
            self.finish_snapshot(false)?;
            // A snapshot that fell due while one was in flight starts now, not at the next
            // Ready: an idle node (a single node, say) may see no Ready for a long time, and
            // its WAL would keep up to twice `--snapshot-entries` entries until then.
            self.maybe_start_snapshot()?;
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                self.expire_requests();
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
                        // PLANTED BUG (ack-before-commit): compute the result now, against
                        // the state machine plus the pending proposals, to answer it early.
                        let early_ack = self.io.bugs.ack_before_commit.then(|| {
                            self.speculative
                                .get_or_insert_with(|| self.kv.clone())
                                .apply(index, &command)
                        });
                        let pending = PendingWrite {
                            term,
                            reply,
                            deadline: Instant::now() + self.io.request_timeout,
                            early_ack,
                        };
                        // An older write still waiting at this index was overwritten.
                        if let Some(old) = self.pending_writes.insert(index, pending) {
                            let _ = old.reply.send(ProposeOutcome::Unknown {
                                reason: "entry overwritten by a new leader",
                            });
                        }
                    }
                    Err(RaftError::NotLeader { leader }) => {
                        let _ = reply.send(ProposeOutcome::NotLeader { leader });
                    }
                }
            }
            // PLANTED BUG (stale-follower-reads): a follower answers from its own state.
            ClientRequest::Read { key, reply }
                if self.io.bugs.stale_follower_reads && self.core.status().role != Role::Leader =>
            {
                let _ = reply.send(ReadOutcome::Value(self.kv.get(&key).map(str::to_string)));
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
                }
            }
            ClientRequest::StaleRead { key, reply } => {
                let _ = reply.send(self.kv.get(&key).map(str::to_string));
            }
        }
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
                // Our own snapshot in flight writes the same file: let it land first (the
                // core, already past it, refuses to compact with it; the file is replaced).
                self.finish_snapshot(true)?;
                self.storage.install_snapshot(snapshot)?;
                Metrics::inc(&self.io.metrics.snapshots_installed_total);
                tracing::info!(
                    index = snapshot.meta.index,
                    term = snapshot.meta.term,
                    bytes = snapshot.data.len(),
                    "installed a snapshot from the leader"
                );
                Some((snapshot.meta, kv))
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
        }
        // PLANTED BUG (ack-before-commit): answer writes as soon as they are in our own log.
        for entry in &ready.entries {
            let early = self
                .pending_writes
                .get(&entry.index)
                .is_some_and(|p| p.term == entry.term && p.early_ack.is_some());
            if early {
                if let Some(PendingWrite {
                    reply,
                    early_ack: Some(applied),
                    ..
                }) = self.pending_writes.remove(&entry.index)
                {
                    let _ = reply.send(ProposeOutcome::Applied(applied));
                }
            }
        }
        // Only now may messages leave: they can promise a vote or acknowledge entries.
        for message in ready.messages {
            if message.to == self.id {
                self.core.step(message);
            } else if let Some(peer) = self.io.peers.get(&message.to) {
                peer.send(message);
            }
        }
        // The snapshot replaces the state machine before the entries that follow it apply.
        if let Some((meta, kv)) = restored {
            self.replace_state_machine(meta, kv);
        }
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        for read in ready.read_states {
            if let Some(pending) = self.unconfirmed_reads.remove(&read.id) {
                self.confirmed_reads
                    .entry(read.index)
                    .or_default()
                    .push(pending);
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
        self.answer_confirmed_reads();
        self.notice_role_change();
        self.publish_status();
        for (reply, outcome) in self.write_answers.drain(..) {
            let _ = reply.send(outcome);
        }
        for (reply, outcome) in self.read_answers.drain(..) {
            let _ = reply.send(outcome);
        }
        self.maybe_start_snapshot()?;
        self.publish_disk_usage();
        Ok(())
    }

    /// Puts the state machine restored from a leader's snapshot in place. Writes this node
    /// was waiting for at indexes the snapshot covers cannot be told apart any more: their
    /// outcome is unknown here (the client retries with its Request-Id, which the snapshot's
    /// sessions answer).
    fn replace_state_machine(&mut self, meta: SnapshotMeta, mut kv: KvStore) {
        kv.set_no_dedup(self.io.bugs.no_dedup);
        self.kv = kv;
        self.speculative = None;
        while let Some(first) = self.pending_writes.first_entry() {
            if *first.key() > meta.index {
                break;
            }
            let pending = first.remove();
            Metrics::inc(&self.io.metrics.proposals_failed_total);
            self.write_answers.push((
                pending.reply,
                ProposeOutcome::Unknown {
                    reason: "replaced by a snapshot from the leader",
                },
            ));
        }
    }

    /// Starts a snapshot at the apply index on a background thread, once enough entries were
    /// applied since the last one and none is in flight (see the module docs).
    fn maybe_start_snapshot(&mut self) -> Result<(), LoopError> {
        let every = self.io.snapshot_entries;
        let applied = self.kv.applied_index();
        let last = self.storage.snapshot_meta().map_or(0, |m| m.index);
        if every == 0 || self.snapshot_job.is_some() || applied < last.saturating_add(every) {
            return Ok(());
        }
        let Some(term) = self.core.term_at(applied) else {
            // Cannot happen: the applied entry stays in the log until a snapshot covers it.
            tracing::warn!(applied, "no term for the applied index: snapshot skipped");
            return Ok(());
        };
        let meta = SnapshotMeta {
            index: applied,
            term,
        };
        let started = Instant::now();
        // The copy is the state at exactly `applied`: nothing applies while we are here.
        let kv = self.kv.clone();
        let path = self.storage.snapshot_path().to_path_buf();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("snapshot-{}", self.id))
            .spawn(move || {
                let snapshot = Snapshot {
                    meta,
                    data: kv.snapshot(),
                };
                let written = write_atomically(&path, &snapshot).map(|bytes| (snapshot, bytes));
                let _ = tx.send(written);
            })
            .map_err(|e| LoopError::SnapshotThread(format!("cannot start: {e}")))?;
        tracing::debug!(
            index = applied,
            clone_us = started.elapsed().as_micros() as u64,
            "snapshot started"
        );
        self.snapshot_job = Some(SnapshotJob {
            meta,
            started,
            done,
        });
        Ok(())
    }

    /// Collects the background snapshot once it is durable (waiting for it when `wait`), hands
    /// it to the core and compacts the WAL up to it.
    fn finish_snapshot(&mut self, wait: bool) -> Result<(), LoopError> {
        let Some(job) = &self.snapshot_job else {
            return Ok(());
        };
        let written = if wait {
            job.done
                .recv()
                .map_err(|_| LoopError::SnapshotThread("it died".to_string()))?
        } else {
            match job.done.try_recv() {
                Ok(written) => written,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(LoopError::SnapshotThread("it died".to_string()))
                }
            }
        };
        let Some(job) = self.snapshot_job.take() else {
            return Ok(());
        };
        let (snapshot, file_bytes) = written?;
        let meta = job.meta;
        self.storage.snapshot_saved(meta, file_bytes)?;
        let wal_before = self.storage.wal_bytes();
        let compacted = match self.core.compact(snapshot) {
            Ok(()) => {
                self.storage.compact_log(meta.index)?;
                true
            }
            // A leader's newer snapshot got in first: the core keeps that one and its log.
            Err(e) => {
                tracing::info!(error = %e, "the core did not compact with our snapshot");
                false
            }
        };
        let metrics = &self.io.metrics;
        Metrics::inc(&metrics.snapshots_taken_total);
        Metrics::add(
            &metrics.snapshot_micros_total,
            job.started.elapsed().as_micros() as u64,
        );
        self.publish_disk_usage();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            file_bytes,
            compacted,
            total_ms = job.started.elapsed().as_millis() as u64,
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

    /// Applies one committed entry and answers the write waiting for it, if any.
    fn apply(&mut self, entry: &Entry) {
        Metrics::inc(&self.io.metrics.applied_entries_total);
        let applied = match &entry.payload {
            EntryPayload::Noop => {
                self.kv.apply_noop(entry.index);
                None
            }
            EntryPayload::Command(bytes) => match Command::decode(bytes) {
                Ok(command) => Some(self.kv.apply(entry.index, &command)),
                Err(e) => {
                    // Every node sees the same bytes, so every node skips it the same way.
                    tracing::error!(index = entry.index, error = %e, "skipping an undecodable command");
                    self.kv.apply_noop(entry.index);
                    None
                }
            },
        };
        // Writes at lower indexes can no longer be applied: their slots were overwritten.
        while let Some(first) = self.pending_writes.first_entry() {
            if *first.key() > entry.index {
                break;
            }
            let index = *first.key();
            let pending = first.remove();
            let outcome = match &applied {
                Some(applied) if index == entry.index && pending.term == entry.term => {
                    Metrics::inc(&self.io.metrics.proposals_applied_total);
                    if applied.duplicate {
                        Metrics::inc(&self.io.metrics.duplicate_requests_total);
                    }
                    ProposeOutcome::Applied(applied.clone())
                }
                _ => {
                    Metrics::inc(&self.io.metrics.proposals_failed_total);
                    ProposeOutcome::Unknown {
                        reason: "entry overwritten by a new leader",
                    }
                }
            };
            self.write_answers.push((pending.reply, outcome));
        }
    }

    /// Answers the confirmed reads whose index has been applied.
    fn answer_confirmed_reads(&mut self) {
        let applied = self.kv.applied_index();
        while let Some(first) = self.confirmed_reads.first_entry() {
            if *first.key() > applied {
                break;
            }
            for read in first.remove() {
                Metrics::inc(&self.io.metrics.reads_total);
                let value = self.kv.get(&read.key).map(str::to_string);
                self.read_answers
                    .push((read.reply, ReadOutcome::Value(value)));
            }
        }
    }

    /// When leadership is lost, waiting writes get "unknown outcome" and unconfirmed reads fail,
    /// so their clients can go to the new leader instead of waiting for a timeout.
    fn notice_role_change(&mut self) {
        let role = self.core.status().role;
        if role != self.last_role {
            // PLANTED BUG (ack-before-commit): a new role starts from the real state again.
            self.speculative = None;
        }
        if self.last_role == Role::Leader && role != Role::Leader {
            tracing::info!(?role, "lost leadership");
            for (_, pending) in std::mem::take(&mut self.pending_writes) {
                Metrics::inc(&self.io.metrics.proposals_failed_total);
                let _ = pending.reply.send(ProposeOutcome::Unknown {
                    reason: "leadership lost before the write was applied",
                });
            }
            for (_, pending) in std::mem::take(&mut self.unconfirmed_reads) {
                Metrics::inc(&self.io.metrics.reads_failed_total);
                let _ = pending.reply.send(ReadOutcome::Failed {
                    reason: "leadership lost before the read was confirmed",
                });
            }
        } else if self.last_role != Role::Leader && role == Role::Leader {
            tracing::info!(term = self.core.status().term, "became leader");
        }
        self.last_role = role;
    }

    /// Drops requests whose client has stopped waiting (the HTTP layer answered 504).
    fn expire_requests(&mut self) {
        let now = Instant::now();
        let expired: Vec<LogIndex> = self
            .pending_writes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&i, _)| i)
            .collect();
        for index in expired {
            self.pending_writes.remove(&index);
            Metrics::inc(&self.io.metrics.proposals_failed_total);
        }
        // The HTTP layer counts these reads as failed when it answers 504.
        self.unconfirmed_reads.retain(|_, p| p.deadline > now);
        // Confirmed reads stay: they are answered as soon as the apply index catches up.
    }

    fn publish_status(&self) {
        let status = NodeStatus {
            raft: self.core.status(),
            applied_index: self.kv.applied_index(),
        };
        self.io.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Op;

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
            data: b"not a kv snapshot".to_vec(),
        };
        assert!(matches!(
            restore_kv(&garbage),
            Err(LoopError::Restore { index: 3, .. })
        ));
    }
}
