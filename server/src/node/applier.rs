//! The applier: the thread that owns the state machine, applies committed entries and answers
//! the clients waiting for them, off the Raft loop's critical path.
//!
//! The Raft loop ([`super::raft_loop`]) persists, replicates and commits; everything that only
//! depends on *what* was committed happens here, on its own OS thread, while the loop is
//! already persisting the next batch:
//!
//! ```text
//! raft loop                                  applier (this module)
//! ---------                                  ---------------------
//! propose -> Register(index, term, reply) ──▶ remember the waiting write
//! ready: persist, send                       (ack-before-commit only: Durable -> early ack)
//!        Restore(leader's snapshot)       ──▶ replace the state machine
//!        Committed(entries)               ──▶ apply in order; publish applied_index;
//!                                             answer the writes at those (index, term)
//!        ReadsConfirmed(index, reads)     ──▶ answer once applied_index >= index
//!        LeadershipLost                   ──▶ waiting writes: "unknown outcome"
//! snapshot durable: core.compact + WAL  ◀── snapshot taken at the applier's applied index
//! ```
//!
//! Every input goes through one FIFO channel, in the loop's order, so the applier sees exactly
//! the sequence of states the loop used to see when it applied inline: a write is registered
//! before the entry that carries it can commit, a restore comes before the entries after it,
//! and the entries committed in a `Ready` are applied before a leadership loss noticed after
//! that `Ready` fails the writes still waiting.
//!
//! # Answers and `/status`
//!
//! After each batch of inputs the applier first publishes its `applied_index` in the node's
//! status, then answers: a client never sees `/status` behind its own acknowledged write.
//!
//! # Snapshots
//!
//! Once `--snapshot-entries` entries were applied since the last snapshot, the applier clones
//! the store at its applied index (labelled with the term of the entry it applied there, so no
//! question to the core) and a writer thread serialises the copy and makes it durable
//! (`snapshot.bin`: write, fsync, rename, fsync the directory, through the storage's file
//! system seam, so tests crash it between any two calls), then hands it to the loop, which
//! calls [`RaftNode::compact`](crate::raft::RaftNode::compact) and drops the WAL prefix.
//! One snapshot is in flight at a time. The snapshot file is shared with the loop, which
//! installs a leader's snapshot into it: [`SnapshotFileLock`] makes the two writes exclusive
//! and keeps the file from going backwards (a local snapshot older than an installed one is
//! dropped, not written).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::Metrics;
use super::raft_loop::{ProposeOutcome, ReadOutcome};
use super::NodeStatus;
use crate::kv::{Applied, Command, EntryKind, KvStore};
use crate::raft::{Entry, EntryPayload, LogIndex, Membership, Snapshot, SnapshotMeta, Term};
use crate::storage::fs::Fs;
use crate::storage::snapshot::write_atomically;
use crate::storage::StorageError;

/// How often waiting writes are checked against their deadline.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// At most this many queued batches are handled before the applier publishes and answers.
const MAX_BATCHES_PER_ROUND: usize = 64;

/// One input from the Raft loop, handled in the order sent.
#[derive(Debug)]
pub enum ApplierInput {
    /// A write was proposed at `index` in `term`: answer it when `index` is applied.
    Register(PendingWrite),
    /// PLANTED BUG (ack-before-commit): these entries, `(index, term)`, are durable in this
    /// node's own log; writes waiting for them are answered with their speculative result.
    Durable(Vec<(LogIndex, Term)>),
    /// A leader's snapshot, already durable: it replaces the state machine.
    Restore {
        meta: SnapshotMeta,
        membership: Option<Membership>,
        kv: KvStore,
    },
    /// Newly committed entries, in log order.
    Committed(Vec<Entry>),
    /// Reads whose leadership round confirmed them at `index`: answer once it is applied.
    ReadsConfirmed {
        index: LogIndex,
        reads: Vec<PendingRead>,
    },
    /// A read of the local state with no linearizability (`?stale`, or a follower's read
    /// with the planted `stale-follower-reads` bug).
    LocalRead { key: String, reply: LocalReadReply },
    /// This node's role changed; `leadership_lost` when it was the leader and is not any more.
    RoleChanged { leadership_lost: bool },
}

/// Where the answer to a [`ApplierInput::LocalRead`] goes.
#[derive(Debug)]
pub enum LocalReadReply {
    /// A `?stale` read.
    Stale(oneshot::Sender<Option<String>>),
    /// PLANTED BUG (stale-follower-reads): a linearizable read answered from local state.
    Linearizable(oneshot::Sender<ReadOutcome>),
}

/// A write waiting for its entry to be applied.
#[derive(Debug)]
pub struct PendingWrite {
    pub index: LogIndex,
    /// The term the entry was proposed in: the write succeeded only if the entry applied at
    /// its index has this term.
    pub term: Term,
    pub reply: oneshot::Sender<ProposeOutcome>,
    /// After this, nobody is waiting any more (the HTTP layer answered 504); drop it.
    pub deadline: Instant,
    /// PLANTED BUG (ack-before-commit): the command, to compute a speculative result from;
    /// None without the bug.
    pub speculative: Option<Command>,
}

/// A read waiting for leadership confirmation and then for the apply index.
#[derive(Debug)]
pub struct PendingRead {
    /// The key to read once the read is confirmed and applied.
    pub key: String,
    pub reply: oneshot::Sender<ReadOutcome>,
    /// After this the HTTP layer has answered 504; an unconfirmed read is dropped then.
    pub deadline: Instant,
}

/// A registered write, as the applier keeps it.
struct WaitingWrite {
    term: Term,
    reply: oneshot::Sender<ProposeOutcome>,
    deadline: Instant,
    /// PLANTED BUG (ack-before-commit): the result computed against the speculative state,
    /// answered as soon as the entry is durable locally.
    early_ack: Option<Applied>,
}

/// A snapshot of this node's own state machine, durable in `snapshot.bin`, for the loop to
/// compact the core and the WAL with.
#[derive(Debug)]
pub struct SnapshotWritten {
    pub snapshot: Snapshot,
    /// Size of the snapshot file.
    pub file_bytes: u64,
    /// When the applier cloned the store, for the snapshot time metric.
    pub started: Instant,
}

/// The snapshot file's single-writer rule, shared by the applier's snapshot writer and the
/// loop's install of a leader's snapshot: one write at a time, and never an older snapshot
/// over a newer one.
#[derive(Debug)]
pub struct SnapshotFileLock {
    /// The index of the snapshot durable in the file (0: none yet); the lock is held for the
    /// whole write.
    durable_index: Mutex<LogIndex>,
}

impl SnapshotFileLock {
    /// The lock of a snapshot file holding the snapshot at `durable_index` (0: no file).
    pub fn new(durable_index: LogIndex) -> Arc<SnapshotFileLock> {
        Arc::new(SnapshotFileLock {
            durable_index: Mutex::new(durable_index),
        })
    }

    /// The index of the snapshot in the file.
    pub fn durable_index(&self) -> LogIndex {
        *self
            .durable_index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write`, which makes the snapshot at `index` durable, alone, if `index` is newer
    /// than the file's; None (and nothing written) when it is not.
    pub fn write_if_newer<T>(
        &self,
        index: LogIndex,
        write: impl FnOnce() -> Result<T, StorageError>,
    ) -> Option<Result<T, StorageError>> {
        let mut durable = self
            .durable_index
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if index <= *durable {
            return None;
        }
        let written = write();
        if written.is_ok() {
            *durable = index;
        }
        Some(written)
    }
}

/// How often the applier snapshots its state machine, and the way to its writer thread.
pub struct SnapshotPolicy {
    /// Snapshot once this many entries were applied since the last one (0: never).
    pub every: u64,
    pub file: Arc<SnapshotFileLock>,
    /// Copies of the store for the writer thread to serialise and make durable.
    jobs: std::sync::mpsc::Sender<SnapshotJob>,
    /// True from handing a job to the writer until it is done with it (at most one at a time).
    in_flight: Arc<AtomicBool>,
}

/// A copy of the store to snapshot.
struct SnapshotJob {
    meta: SnapshotMeta,
    membership: Option<Membership>,
    kv: KvStore,
    started: Instant,
}

/// Starts the thread that serialises snapshots and makes them durable at `path` on `fs` (the
/// storage's file system, [`Storage::fs`](crate::storage::Storage::fs)), handing each to the
/// Raft loop through `written`; it stops when the applier drops the policy.
pub fn spawn_snapshot_writer(
    node_id: u64,
    every: u64,
    fs: Arc<dyn Fs>,
    path: PathBuf,
    file: Arc<SnapshotFileLock>,
    written: mpsc::UnboundedSender<Result<SnapshotWritten, StorageError>>,
) -> std::io::Result<SnapshotPolicy> {
    let (jobs, job_rx) = std::sync::mpsc::channel::<SnapshotJob>();
    let in_flight = Arc::new(AtomicBool::new(false));
    let policy = SnapshotPolicy {
        every,
        file: file.clone(),
        jobs,
        in_flight: in_flight.clone(),
    };
    std::thread::Builder::new()
        .name(format!("snapshot-{node_id}"))
        .spawn(move || {
            for job in job_rx {
                let snapshot = Snapshot {
                    meta: job.meta,
                    membership: job.membership,
                    data: job.kv.snapshot(),
                };
                drop(job.kv);
                let outcome = file
                    .write_if_newer(job.meta.index, || write_atomically(&*fs, &path, &snapshot));
                in_flight.store(false, Ordering::Release);
                match outcome {
                    // A leader's newer snapshot is already in the file: this one is moot.
                    None => {}
                    Some(Err(e)) => {
                        let _ = written.send(Err(e));
                    }
                    Some(Ok(file_bytes)) => {
                        let _ = written.send(Ok(SnapshotWritten {
                            snapshot,
                            file_bytes,
                            started: job.started,
                        }));
                    }
                }
            }
        })?;
    Ok(policy)
}

/// The state of the applier thread.
pub struct Applier {
    /// The state machine; only this thread touches it.
    kv: KvStore,
    /// The term of the entry at `kv.applied_index()`: the label of a snapshot taken now.
    applied_term: Term,
    /// The configuration in force at `kv.applied_index()` (the latest applied, or the
    /// snapshot's), which a snapshot taken now carries. None: the initial one.
    membership: Option<Membership>,
    /// Writes waiting for their index to be applied, by index.
    pending_writes: BTreeMap<LogIndex, WaitingWrite>,
    /// Reads confirmed by a leadership round, waiting for `applied_index >= index`.
    confirmed_reads: BTreeMap<LogIndex, Vec<PendingRead>>,
    /// Answers collected while handling a batch, sent once `/status` shows the apply index
    /// they depend on.
    write_answers: Vec<(oneshot::Sender<ProposeOutcome>, ProposeOutcome)>,
    read_answers: Vec<(oneshot::Sender<ReadOutcome>, ReadOutcome)>,
    /// PLANTED BUG (ack-before-commit): the state machine plus this leader's proposals not yet
    /// applied, which early acknowledgements are computed against. Reset on a role change.
    speculative: Option<KvStore>,
    /// The node's status; the applier owns its `applied_index` (the loop owns the rest).
    status: Arc<watch::Sender<NodeStatus>>,
    metrics: Arc<Metrics>,
    snapshots: SnapshotPolicy,
    /// The index of the last snapshot started here (0: none yet).
    last_snapshot_index: LogIndex,
    /// PLANTED BUG (no-dedup): kept on a store restored from a leader's snapshot too.
    no_dedup: bool,
    /// The session bound of the store given at start, kept on a store restored from a
    /// leader's snapshot too.
    max_sessions: usize,
}

impl Applier {
    /// The applier of the state machine `kv`, restored from the durable snapshot labelled
    /// `applied_term` (0 for an empty store).
    pub fn new(
        mut kv: KvStore,
        applied_term: Term,
        membership: Option<Membership>,
        status: Arc<watch::Sender<NodeStatus>>,
        metrics: Arc<Metrics>,
        snapshots: SnapshotPolicy,
        bugs: crate::bugs::PlantedBugs,
    ) -> Applier {
        kv.set_no_dedup(bugs.no_dedup);
        let max_sessions = kv.max_sessions();
        let last_snapshot_index = snapshots.file.durable_index();
        Applier {
            kv,
            applied_term,
            membership,
            pending_writes: BTreeMap::new(),
            confirmed_reads: BTreeMap::new(),
            write_answers: Vec::new(),
            read_answers: Vec::new(),
            speculative: None,
            status,
            metrics,
            snapshots,
            last_snapshot_index,
            no_dedup: bugs.no_dedup,
            max_sessions,
        }
    }

    /// Runs until the loop drops its end of the channel. Whatever is still waiting is then
    /// dropped: the HTTP layer answers those clients that the node stopped.
    pub fn run(mut self, inputs: Receiver<Vec<ApplierInput>>) {
        let mut last_sweep = Instant::now();
        loop {
            match inputs.recv_timeout(SWEEP_INTERVAL) {
                Ok(batch) => {
                    self.handle_batch(batch);
                    for _ in 1..MAX_BATCHES_PER_ROUND {
                        match inputs.try_recv() {
                            Ok(batch) => self.handle_batch(batch),
                            Err(_) => break,
                        }
                    }
                    self.finish_round();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                self.expire_writes();
                last_sweep = Instant::now();
                // A snapshot that fell due while one was being written starts once that one
                // landed, even with nothing to apply (an idle node would otherwise keep up to
                // twice `--snapshot-entries` entries in its WAL until its next write).
                self.maybe_start_snapshot();
            }
        }
        tracing::debug!("applier stopped");
    }

    /// Handles a batch of inputs in order, without answering yet.
    pub fn handle_batch(&mut self, batch: Vec<ApplierInput>) {
        for input in batch {
            self.handle(input);
        }
    }

    /// Publishes the apply index, then answers (see the module docs), then starts a snapshot
    /// if one is due.
    pub fn finish_round(&mut self) {
        let applied = self.kv.applied_index();
        let digest = self.kv.applied_digest();
        self.status.send_if_modified(|status| {
            let changed = status.applied_index != applied || status.applied_digest != digest;
            status.applied_index = applied;
            status.applied_digest = digest;
            changed
        });
        for (reply, outcome) in self.write_answers.drain(..) {
            let _ = reply.send(outcome);
        }
        for (reply, outcome) in self.read_answers.drain(..) {
            let _ = reply.send(outcome);
        }
        self.maybe_start_snapshot();
    }

    fn handle(&mut self, input: ApplierInput) {
        match input {
            ApplierInput::Register(write) => self.register(write),
            ApplierInput::Durable(entries) => self.answer_early(&entries),
            ApplierInput::Restore {
                meta,
                membership,
                kv,
            } => {
                self.membership = membership;
                self.restore(meta, kv)
            }
            ApplierInput::Committed(entries) => {
                for entry in &entries {
                    self.apply(entry);
                }
                self.answer_confirmed_reads();
            }
            ApplierInput::ReadsConfirmed { index, reads } => {
                self.confirmed_reads.entry(index).or_default().extend(reads);
                self.answer_confirmed_reads();
            }
            ApplierInput::LocalRead { key, reply } => {
                let value = self.kv.get(&key).map(str::to_string);
                match reply {
                    LocalReadReply::Stale(reply) => {
                        let _ = reply.send(value);
                    }
                    LocalReadReply::Linearizable(reply) => {
                        let _ = reply.send(ReadOutcome::Value(value));
                    }
                }
            }
            ApplierInput::RoleChanged { leadership_lost } => {
                // PLANTED BUG (ack-before-commit): a new role starts from the real state again.
                self.speculative = None;
                if leadership_lost {
                    self.fail_waiting_writes("leadership lost before the write was applied");
                }
            }
        }
    }

    fn register(&mut self, write: PendingWrite) {
        // PLANTED BUG (ack-before-commit): compute the result now, against the state machine
        // plus the pending proposals, to answer it early.
        let early_ack = write.speculative.as_ref().map(|command| {
            self.speculative
                .get_or_insert_with(|| self.kv.clone())
                .apply(write.index, command)
        });
        let waiting = WaitingWrite {
            term: write.term,
            reply: write.reply,
            deadline: write.deadline,
            early_ack,
        };
        // An older write still waiting at this index was overwritten.
        if let Some(old) = self.pending_writes.insert(write.index, waiting) {
            Metrics::inc(&self.metrics.proposals_failed_total);
            self.write_answers.push((
                old.reply,
                ProposeOutcome::Unknown {
                    reason: "entry overwritten by a new leader",
                },
            ));
        }
    }

    /// PLANTED BUG (ack-before-commit): answer writes as soon as they are in our own log.
    fn answer_early(&mut self, entries: &[(LogIndex, Term)]) {
        for &(index, term) in entries {
            let early = self
                .pending_writes
                .get(&index)
                .is_some_and(|w| w.term == term && w.early_ack.is_some());
            if !early {
                continue;
            }
            if let Some(WaitingWrite {
                reply,
                early_ack: Some(applied),
                ..
            }) = self.pending_writes.remove(&index)
            {
                self.write_answers
                    .push((reply, ProposeOutcome::Applied(applied)));
            }
        }
    }

    /// Puts the state machine restored from a leader's snapshot in place. Writes waiting at
    /// indexes the snapshot covers cannot be told apart any more: their outcome is unknown
    /// here (the client retries with its Request-Id, which the snapshot's sessions answer).
    fn restore(&mut self, meta: SnapshotMeta, mut kv: KvStore) {
        kv.set_no_dedup(self.no_dedup);
        kv.set_max_sessions(self.max_sessions);
        self.kv = kv;
        self.applied_term = meta.term;
        self.speculative = None;
        while let Some(first) = self.pending_writes.first_entry() {
            if *first.key() > meta.index {
                break;
            }
            let waiting = first.remove();
            Metrics::inc(&self.metrics.proposals_failed_total);
            self.write_answers.push((
                waiting.reply,
                ProposeOutcome::Unknown {
                    reason: "replaced by a snapshot from the leader",
                },
            ));
        }
        self.answer_confirmed_reads();
    }

    /// Applies one committed entry and answers the write waiting for it, if any.
    fn apply(&mut self, entry: &Entry) {
        Metrics::inc(&self.metrics.applied_entries_total);
        let (kind, bytes): (EntryKind, &[u8]) = match &entry.payload {
            EntryPayload::Noop => (EntryKind::Noop, &[]),
            EntryPayload::Membership(_) => (EntryKind::Membership, &[]),
            EntryPayload::Command(bytes) => (EntryKind::Command, bytes),
        };
        self.kv.chain_entry(entry.index, entry.term, kind, bytes);
        let applied = match &entry.payload {
            EntryPayload::Noop => {
                self.kv.apply_noop(entry.index);
                None
            }
            EntryPayload::Membership(membership) => {
                self.membership = Some(membership.clone());
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
        self.applied_term = entry.term;
        // Writes at lower indexes can no longer be applied: their slots were overwritten.
        while let Some(first) = self.pending_writes.first_entry() {
            if *first.key() > entry.index {
                break;
            }
            let index = *first.key();
            let waiting = first.remove();
            let outcome = match &applied {
                Some(applied) if index == entry.index && waiting.term == entry.term => {
                    Metrics::inc(&self.metrics.proposals_applied_total);
                    if applied.duplicate {
                        Metrics::inc(&self.metrics.duplicate_requests_total);
                    }
                    ProposeOutcome::Applied(applied.clone())
                }
                _ => {
                    Metrics::inc(&self.metrics.proposals_failed_total);
                    ProposeOutcome::Unknown {
                        reason: "entry overwritten by a new leader",
                    }
                }
            };
            self.write_answers.push((waiting.reply, outcome));
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
                Metrics::inc(&self.metrics.reads_total);
                let value = self.kv.get(&read.key).map(str::to_string);
                self.read_answers
                    .push((read.reply, ReadOutcome::Value(value)));
            }
        }
    }

    /// Answers every waiting write "unknown outcome": they may yet commit under a new leader.
    fn fail_waiting_writes(&mut self, reason: &'static str) {
        for (_, waiting) in std::mem::take(&mut self.pending_writes) {
            Metrics::inc(&self.metrics.proposals_failed_total);
            self.write_answers
                .push((waiting.reply, ProposeOutcome::Unknown { reason }));
        }
    }

    /// Drops writes whose client has stopped waiting (the HTTP layer answered 504). Confirmed
    /// reads stay: they are answered as soon as the apply index catches up.
    fn expire_writes(&mut self) {
        let now = Instant::now();
        let before = self.pending_writes.len();
        self.pending_writes.retain(|_, w| w.deadline > now);
        let expired = (before - self.pending_writes.len()) as u64;
        Metrics::add(&self.metrics.proposals_failed_total, expired);
    }

    /// Hands a snapshot at the applied index to the writer thread, once enough entries were
    /// applied since the last one and none is in flight (see the module docs).
    fn maybe_start_snapshot(&mut self) {
        let every = self.snapshots.every;
        if every == 0 || self.snapshots.in_flight.load(Ordering::Acquire) {
            return;
        }
        let applied = self.kv.applied_index();
        let last = self
            .last_snapshot_index
            .max(self.snapshots.file.durable_index());
        if applied < last.saturating_add(every) {
            return;
        }
        let started = Instant::now();
        let job = SnapshotJob {
            meta: SnapshotMeta {
                index: applied,
                term: self.applied_term,
            },
            membership: self.membership.clone(),
            // The copy is the state at exactly `applied`: nothing applies while we are here.
            kv: self.kv.clone(),
            started,
        };
        self.snapshots.in_flight.store(true, Ordering::Release);
        if self.snapshots.jobs.send(job).is_err() {
            // The writer is gone (it only stops with the node): no more snapshots.
            tracing::error!("snapshot writer gone: no snapshot taken");
            return;
        }
        self.last_snapshot_index = applied;
        tracing::debug!(
            index = applied,
            clone_us = started.elapsed().as_micros() as u64,
            "snapshot started"
        );
    }

    /// The state machine (for tests).
    #[cfg(test)]
    fn kv(&self) -> &KvStore {
        &self.kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Op, OpResult};
    use oneshot::error::TryRecvError;

    /// An applier, with its status and the snapshots it writes.
    struct Harness {
        applier: Applier,
        status: watch::Receiver<NodeStatus>,
        written: mpsc::UnboundedReceiver<Result<SnapshotWritten, StorageError>>,
        file: Arc<SnapshotFileLock>,
        /// The data dir on the real disk (None for one on another file system).
        dir: Option<tempfile::TempDir>,
    }

    /// An applier over an empty store, writing its snapshots to a temporary directory.
    fn harness(snapshot_every: u64, bugs: crate::bugs::PlantedBugs) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        let mut h = harness_on(
            crate::storage::fs::StdFs::shared(),
            path,
            (KvStore::new(), SnapshotMeta::default()),
            snapshot_every,
            bugs,
        );
        h.dir = Some(dir);
        h
    }

    /// An applier over `kv`, restored from the durable snapshot `meta`, writing its snapshots
    /// to `path` on `fs`.
    fn harness_on(
        fs: Arc<dyn Fs>,
        path: PathBuf,
        (kv, meta): (KvStore, SnapshotMeta),
        snapshot_every: u64,
        bugs: crate::bugs::PlantedBugs,
    ) -> Harness {
        let (status_tx, status) = watch::channel(NodeStatus::fresh_leader());
        let file = SnapshotFileLock::new(meta.index);
        let (written_tx, written) = mpsc::unbounded_channel();
        let policy =
            spawn_snapshot_writer(1, snapshot_every, fs, path, file.clone(), written_tx).unwrap();
        let applier = Applier::new(
            kv,
            meta.term,
            None,
            Arc::new(status_tx),
            Arc::new(Metrics::default()),
            policy,
            bugs,
        );
        Harness {
            applier,
            status,
            written,
            file,
            dir: None,
        }
    }

    fn append(key: &str, suffix: &str) -> Command {
        Command {
            request_id: None,
            op: Op::Append {
                key: key.into(),
                suffix: suffix.into(),
            },
        }
    }

    fn entry(index: LogIndex, term: Term, command: &Command) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Command(command.encode()),
        }
    }

    fn register(
        index: LogIndex,
        term: Term,
        speculative: Option<Command>,
    ) -> (ApplierInput, oneshot::Receiver<ProposeOutcome>) {
        let (reply, answer) = oneshot::channel();
        let write = PendingWrite {
            index,
            term,
            reply,
            deadline: Instant::now() + Duration::from_secs(60),
            speculative,
        };
        (ApplierInput::Register(write), answer)
    }

    fn read(key: &str) -> (PendingRead, oneshot::Receiver<ReadOutcome>) {
        let (reply, answer) = oneshot::channel();
        let read = PendingRead {
            key: key.into(),
            reply,
            deadline: Instant::now() + Duration::from_secs(60),
        };
        (read, answer)
    }

    fn round(h: &mut Harness, batch: Vec<ApplierInput>) {
        h.applier.handle_batch(batch);
        h.applier.finish_round();
    }

    #[test]
    fn write_is_answered_once_its_entry_is_applied_and_status_shows_it_first() {
        let mut h = harness(0, Default::default());
        let (registration, mut answer) = register(1, 1, None);
        round(&mut h, vec![registration]);
        assert_eq!(answer.try_recv(), Err(TryRecvError::Empty));
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![entry(
                1,
                1,
                &append("k", "ab"),
            )])],
        );
        // The status was published before the answer was sent.
        assert_eq!(h.status.borrow().applied_index, 1);
        match answer.try_recv() {
            Ok(ProposeOutcome::Applied(applied)) => {
                assert_eq!(applied.result, OpResult::Appended { length: 2 });
                assert_eq!(applied.index, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.applier.kv().get("k"), Some("ab"));
    }

    #[test]
    fn write_whose_index_is_applied_with_another_term_fails_as_overwritten() {
        let mut h = harness(0, Default::default());
        let (at_2, mut answer_2) = register(2, 1, None);
        let (at_3, mut answer_3) = register(3, 1, None);
        round(&mut h, vec![at_2, at_3]);
        // A new leader's entries (term 2) took both slots; only index 2 is committed yet.
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![
                entry(1, 1, &append("k", "a")),
                entry(2, 2, &append("k", "b")),
            ])],
        );
        assert_eq!(
            answer_2.try_recv(),
            Ok(ProposeOutcome::Unknown {
                reason: "entry overwritten by a new leader"
            })
        );
        assert_eq!(answer_3.try_recv(), Err(TryRecvError::Empty));
        round(
            &mut h,
            vec![ApplierInput::RoleChanged {
                leadership_lost: true,
            }],
        );
        assert!(matches!(
            answer_3.try_recv(),
            Ok(ProposeOutcome::Unknown { .. })
        ));
    }

    #[test]
    fn confirmed_read_waits_for_its_index_and_survives_leadership_loss() {
        let mut h = harness(0, Default::default());
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![entry(
                1,
                1,
                &append("k", "a"),
            )])],
        );
        let (pending, mut answer) = read("k");
        round(
            &mut h,
            vec![
                ApplierInput::ReadsConfirmed {
                    index: 2,
                    reads: vec![pending],
                },
                ApplierInput::RoleChanged {
                    leadership_lost: true,
                },
            ],
        );
        assert_eq!(answer.try_recv(), Err(TryRecvError::Empty));
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![entry(
                2,
                1,
                &append("k", "b"),
            )])],
        );
        assert_eq!(
            answer.try_recv(),
            Ok(ReadOutcome::Value(Some("ab".to_string())))
        );
    }

    #[test]
    fn leaders_snapshot_replaces_the_store_and_fails_the_writes_it_covers() {
        let mut h = harness(0, Default::default());
        let (covered, mut covered_answer) = register(3, 1, None);
        let (after, mut after_answer) = register(6, 2, None);
        let mut leader_kv = KvStore::new();
        for i in 1..=5 {
            leader_kv.apply(i, &append("k", "x"));
        }
        round(
            &mut h,
            vec![
                covered,
                after,
                ApplierInput::Restore {
                    meta: SnapshotMeta { index: 5, term: 2 },
                    membership: None,
                    kv: leader_kv,
                },
                ApplierInput::Committed(vec![entry(6, 2, &append("k", "y"))]),
            ],
        );
        assert_eq!(
            covered_answer.try_recv(),
            Ok(ProposeOutcome::Unknown {
                reason: "replaced by a snapshot from the leader"
            })
        );
        assert!(matches!(
            after_answer.try_recv(),
            Ok(ProposeOutcome::Applied(_))
        ));
        assert_eq!(h.applier.kv().get("k"), Some("xxxxxy"));
        assert_eq!(h.status.borrow().applied_index, 6);
    }

    #[test]
    fn local_reads_see_the_state_applied_before_them() {
        let mut h = harness(0, Default::default());
        let (stale, mut stale_answer) = oneshot::channel();
        round(
            &mut h,
            vec![
                ApplierInput::Committed(vec![entry(1, 1, &append("k", "a"))]),
                ApplierInput::LocalRead {
                    key: "k".into(),
                    reply: LocalReadReply::Stale(stale),
                },
            ],
        );
        assert_eq!(stale_answer.try_recv(), Ok(Some("a".to_string())));
    }

    #[test]
    fn planted_ack_before_commit_answers_durable_writes_speculatively() {
        let bugs = crate::bugs::PlantedBugs {
            ack_before_commit: true,
            ..Default::default()
        };
        let mut h = harness(0, bugs);
        let (first, mut first_answer) = register(1, 1, Some(append("k", "ab")));
        let (second, mut second_answer) = register(2, 1, Some(append("k", "c")));
        round(
            &mut h,
            vec![first, second, ApplierInput::Durable(vec![(1, 1), (2, 1)])],
        );
        // Answered before anything was committed, each against the state before it.
        let length = |answer: Result<ProposeOutcome, TryRecvError>| match answer {
            Ok(ProposeOutcome::Applied(Applied {
                result: OpResult::Appended { length },
                ..
            })) => length,
            other => panic!("{other:?}"),
        };
        assert_eq!(length(first_answer.try_recv()), 2);
        assert_eq!(length(second_answer.try_recv()), 3);
        assert_eq!(h.applier.kv().applied_index(), 0);
    }

    #[test]
    fn snapshot_is_taken_at_the_applied_index_with_its_term() {
        let mut h = harness(2, Default::default());
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![entry(
                1,
                1,
                &append("k", "a"),
            )])],
        );
        round(
            &mut h,
            vec![ApplierInput::Committed(vec![entry(
                2,
                3,
                &append("k", "b"),
            )])],
        );
        let written = h.written.blocking_recv().unwrap().unwrap();
        assert_eq!(written.snapshot.meta, SnapshotMeta { index: 2, term: 3 });
        let restored = KvStore::restore(&written.snapshot.data).unwrap();
        assert_eq!(restored.get("k"), Some("ab"));
        assert_eq!(h.file.durable_index(), 2);
        let dir = h.dir.as_ref().expect("on the real disk");
        let on_disk = std::fs::metadata(dir.path().join("snapshot.bin")).unwrap();
        assert_eq!(on_disk.len(), written.file_bytes);
    }

    #[test]
    fn snapshot_file_never_goes_backwards() {
        let file = SnapshotFileLock::new(10);
        let mut writes = 0;
        assert!(file
            .write_if_newer(10, || {
                writes += 1;
                Ok(())
            })
            .is_none());
        assert!(file.write_if_newer(11, || Ok(())).is_some());
        assert_eq!(writes, 0);
        assert_eq!(file.durable_index(), 11);
        // A failed write leaves the file's index where it was.
        let failed = file.write_if_newer(12, || {
            Err::<(), _>(StorageError::Missing {
                path: "x".into(),
                why: "test",
            })
        });
        assert!(matches!(failed, Some(Err(_))));
        assert_eq!(file.durable_index(), 11);
    }

    /// The snapshot writer's calls go through the storage's file system: a crash between any
    /// two of them (the process dying or the power going) leaves a directory that opens, with
    /// the old snapshot or the new one, each restoring to exactly the state it was taken at;
    /// and a snapshot the writer reported durable is the one found.
    #[test]
    fn a_crash_at_any_step_of_the_snapshot_writer_restarts_from_the_old_or_the_new_snapshot() {
        use crate::raft::HardState;
        use crate::storage::memfs::{Crash, MemFs};
        use crate::storage::{wal::WalBugs, Storage};
        use rand::SeedableRng;
        let dir = std::path::Path::new("/data");
        let commands: Vec<Command> = (1..=4).map(|i| append("k", &i.to_string())).collect();
        let entries: Vec<Entry> = (1..=4)
            .map(|i| entry(i, 1, &commands[i as usize - 1]))
            .collect();
        // The state the applier reaches at `index`, its digest chained through the same entries.
        let state_at = |index: LogIndex| {
            let mut kv = KvStore::new();
            for i in 1..=index {
                let e = &entries[i as usize - 1];
                if let EntryPayload::Command(bytes) = &e.payload {
                    kv.chain_entry(e.index, e.term, EntryKind::Command, bytes);
                }
                kv.apply(i, &commands[i as usize - 1]);
            }
            kv
        };
        let (mut old_found, mut new_found, mut finished) = (0, 0, 0);
        for crash_after in 0..8 {
            for kind in [Crash::Process, Crash::PowerLoss] {
                let disk = MemFs::with_sector(16);
                let open = || Storage::open_on(Arc::new(disk.clone()), dir, WalBugs::default());
                let (mut storage, _) = open().unwrap();
                let hard_state = HardState {
                    term: 1,
                    voted_for: Some(1),
                    commit: 4,
                };
                storage.persist(Some(&hard_state), &entries).unwrap();
                let old = Snapshot {
                    meta: SnapshotMeta { index: 2, term: 1 },
                    membership: None,
                    data: state_at(2).snapshot(),
                };
                storage.save_snapshot(&old).unwrap();
                let mut h = harness_on(
                    storage.fs(),
                    storage.snapshot_path().to_path_buf(),
                    (state_at(2), old.meta),
                    2,
                    Default::default(),
                );
                // Applying 3..=4 starts a snapshot at 4; the disk dies after `crash_after`
                // changing calls of writing it.
                disk.arm_crash(crash_after);
                round(&mut h, vec![ApplierInput::Committed(entries[2..].to_vec())]);
                let written = h.written.blocking_recv().expect("the writer answers");
                let crashed = disk.crashed();
                drop(h);
                drop(storage);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crash_after);
                disk.crash(kind, &mut rng);
                let what = format!("crash after {crash_after} calls ({kind:?})");
                let (_, durable) =
                    open().unwrap_or_else(|e| panic!("{what}: a good directory refused: {e}"));
                let snapshot = durable.snapshot.expect("the old snapshot at least");
                let kv = super::super::raft_loop::restore_kv(&snapshot)
                    .unwrap_or_else(|e| panic!("{what}: a broken snapshot: {e}"));
                match snapshot.meta.index {
                    2 => old_found += 1,
                    4 => new_found += 1,
                    other => panic!("{what}: a snapshot at {other}"),
                }
                assert_eq!(kv, state_at(snapshot.meta.index), "{what}");
                assert_eq!(
                    durable.log,
                    entries[snapshot.meta.index as usize..],
                    "{what}: the log continues the snapshot"
                );
                if written.is_ok() {
                    assert_eq!(snapshot.meta.index, 4, "{what}: a durable snapshot lost");
                }
                if !crashed {
                    assert!(written.is_ok(), "{what}: {:?}", written.err());
                    finished += 1;
                }
            }
        }
        // Crashes before the rename give the old snapshot, after it (or a finished write)
        // the new one.
        assert!(
            old_found > 0 && new_found > 0 && finished > 0,
            "old {old_found}, new {new_found}, finished {finished}"
        );
    }
}
