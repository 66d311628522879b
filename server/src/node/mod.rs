//! The node: the Raft core driven by tokio, with real disk, real sockets and a real clock.
//!
//! [`run`] wires the parts together and runs them until shutdown:
//!
//! - the Raft loop ([`raft_loop`]) on its own thread: core + storage;
//! - the applier ([`applier`]) on another thread: the KV state machine, applying committed
//!   entries and answering the clients waiting for them, off the loop's critical path;
//! - the peer transport ([`transport`]): one outbound connection task per peer, opened as
//!   members become known ([`members`]: the address book), an inbound listener feeding the
//!   loop;
//! - with `--join`, the join ([`join`]): adds this node to a running cluster as a learner, then
//!   promotes it;
//! - the HTTP API ([`crate::http`]) handing client requests to the loop over a channel.
//!
//! The data path of a write: HTTP handler -> `ClientRequest::Propose` -> `RaftNode::propose`
//! -> `Ready::entries` persisted (group commit) -> replicated -> `Ready::committed_entries`
//! -> applier: `KvStore::apply` -> the handler's oneshot -> HTTP response.
//!
//! On start the state machine is restored from the data dir's snapshot, if there is one, and
//! the core restarts with `Config::applied` at the snapshot's index, so only the log suffix
//! is applied again (a snapshot that cannot be restored stops the start, naming
//! `snapshot.bin` and what is wrong with it). While running, the applier snapshots every `--snapshot-entries` applied
//! entries and the loop then compacts the log (see [`applier`] and [`raft_loop`]).

pub mod applier;
pub mod join;
pub mod members;
pub mod metrics;
pub mod raft_loop;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::raft::{Config, NodeId, RaftNode, Role, Status};
use crate::storage::{Storage, StorageError};
use applier::{Applier, SnapshotFileLock};
use members::{AddressBook, MemberContext};
use metrics::Metrics;
use raft_loop::{ClientRequest, LoopError, LoopIo, RaftLoop};

/// Everything a node needs to know to run (the binary builds it from its flags).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Address this node uses to reach each peer's peer port (maybe a proxy), by peer id:
    /// members, and spare ids that may join later. Beats the address in a member's context.
    pub peers: BTreeMap<NodeId, String>,
    /// Each peer's client URL, for redirects to the leader.
    pub peer_client_urls: BTreeMap<NodeId, String>,
    /// The initial configuration's voters, this node included; empty for a node that joins a
    /// running cluster ([`Config::members`]). A configuration in the data dir replaces it.
    pub initial_members: Vec<NodeId>,
    /// This node's own client URL (reported in `/status` when it leads).
    pub client_url: String,
    /// This node's peer address as others should use it (stored in its context when it joins).
    pub advertise_peer: String,
    /// Join a running cluster (`--join`).
    pub join: Option<join::JoinOptions>,
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Leader heartbeat interval (rounded to ticks).
    pub heartbeat: Duration,
    /// Base election timeout (rounded to ticks; the core randomises in [t, 2t)).
    pub election: Duration,
    /// How long a client request may wait for commit (writes) or confirmation (reads).
    pub request_timeout: Duration,
    /// Raft pre-vote (see [`crate::raft`]); on in production.
    pub pre_vote: bool,
    /// Raft check-quorum (see [`crate::raft`]); on in production.
    pub check_quorum: bool,
    /// Take a snapshot and compact the log every this many applied entries (0: never).
    pub snapshot_entries: u64,
    /// Entries the core keeps in memory before its latest snapshot, so followers slightly
    /// behind get entries instead of a snapshot ([`Config::compaction_keep_entries`]).
    pub snapshot_catchup_entries: u64,
    /// At most this many entries in one AppendEntries message (at least 1).
    pub max_entries_per_message: usize,
    /// Client sessions the state machine keeps ([`crate::kv::KvStore::set_max_sessions`]).
    pub max_sessions: usize,
    /// Planted bugs (test only, all off by default; see [`crate::bugs`]).
    pub bugs: crate::bugs::PlantedBugs,
}

/// What `/status` and the metrics show: the core's view plus the apply index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub raft: Status,
    /// The state machine's apply index (the core does not track it).
    pub applied_index: crate::raft::LogIndex,
    /// The applied digest at `applied_index` ([`crate::kv::KvStore::applied_digest`]).
    pub applied_digest: Option<u64>,
}

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage failed")]
    Storage(#[from] StorageError),
    #[error("the raft loop failed")]
    Loop(#[from] LoopError),
    /// The snapshot file passed its own checks, but the state machine cannot be restored from
    /// it (a format this build does not read, or data that does not decode): the node does
    /// not start rather than start from some other state.
    #[error("cannot restore the state machine from {path}")]
    Snapshot {
        path: PathBuf,
        #[source]
        source: LoopError,
    },
    #[error("cannot start the raft thread")]
    Thread(#[source] std::io::Error),
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the raft loop ended unexpectedly")]
    LoopGone,
    #[error("joining the cluster failed")]
    Join(#[from] join::JoinError),
}

/// What the HTTP layer holds to talk to the node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub id: NodeId,
    /// Requests to the Raft loop (writes, reads); bounded, so a flood waits here.
    pub to_raft: mpsc::Sender<ClientRequest>,
    /// The loop's latest view, for `/status` and `/metrics` without asking the loop.
    pub status: watch::Receiver<NodeStatus>,
    pub metrics: Arc<Metrics>,
    /// How to reach every member (this node included), for redirects and the members list.
    pub addresses: Arc<AddressBook>,
    pub request_timeout: Duration,
}

/// Converts a duration to whole ticks, at least one.
fn to_ticks(duration: Duration, tick: Duration) -> u32 {
    let ticks = duration.as_micros() / tick.as_micros().max(1);
    ticks.clamp(1, u32::MAX as u128) as u32
}

/// Runs a node until `shutdown` becomes true or something fatal happens.
pub async fn run(
    options: NodeOptions,
    client_listener: TcpListener,
    peer_listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let (storage, mut durable) = Storage::open_with_bugs(&options.data_dir, options.bugs.wal)?;
    if options.bugs.forget_vote {
        // PLANTED BUG (forget-vote): restart from the log's last term with no vote, as if
        // term and vote had never been persisted.
        let snapshot_term = durable.snapshot.as_ref().map_or(0, |s| s.meta.term);
        durable.hard_state.term = durable.log.last().map_or(snapshot_term, |e| e.term);
        durable.hard_state.voted_for = None;
    }
    if options.bugs.any() {
        tracing::warn!(bugs = ?options.bugs, "PLANTED BUGS ON: this node is deliberately unsafe");
    }
    tracing::info!(
        data_dir = %options.data_dir.display(),
        term = durable.hard_state.term,
        voted_for = ?durable.hard_state.voted_for,
        snapshot_index = durable.snapshot.as_ref().map_or(0, |s| s.meta.index),
        last_index = durable.log.last().map_or(0, |e| e.index),
        "storage opened"
    );
    // The state machine starts from the snapshot; the core delivers the entries after it.
    let mut kv = match &durable.snapshot {
        Some(snapshot) => {
            raft_loop::restore_kv(snapshot).map_err(|source| NodeError::Snapshot {
                path: storage.snapshot_path().to_path_buf(),
                source,
            })?
        }
        None => crate::kv::KvStore::new(),
    };
    kv.set_max_sessions(options.max_sessions);
    let applied = kv.applied_index();
    let snapshot_meta = durable
        .snapshot
        .as_ref()
        .map(|s| s.meta)
        .unwrap_or_default();
    let mut config = Config::new(options.id, options.initial_members.clone());
    config.heartbeat_ticks = to_ticks(options.heartbeat, options.tick);
    config.election_ticks =
        to_ticks(options.election, options.tick).max(config.heartbeat_ticks + 1);
    config.seed = rand::random::<u64>() ^ options.id;
    config.applied = applied;
    config.pre_vote = options.pre_vote;
    config.check_quorum = options.check_quorum;
    config.compaction_keep_entries = options.snapshot_catchup_entries;
    config.max_entries_per_message = options.max_entries_per_message.max(1);
    config.bugs = options.bugs.core;
    let core = RaftNode::new(config, durable);
    // The core filled in the initial configuration for a snapshot written without one.
    let snapshot_membership = core.membership_at(snapshot_meta.index);

    let metrics = Arc::new(Metrics::default());
    let (status_tx, status_rx) = watch::channel(NodeStatus {
        raft: core.status(),
        applied_index: applied,
        applied_digest: kv.applied_digest(),
    });
    let status_tx = Arc::new(status_tx);
    let (peer_tx, peer_rx) = mpsc::channel(8192);
    let (client_tx, client_rx) = mpsc::channel(65536);
    let (internal_shutdown_tx, internal_shutdown) = watch::channel(false);
    let (handover_tx, handover_rx) = watch::channel(false);
    let (handover_done_tx, handover_done_rx) = oneshot::channel();

    let addresses = Arc::new(AddressBook::new(
        options.id,
        MemberContext {
            peer_addr: Some(options.advertise_peer.clone()),
            client_url: Some(options.client_url.clone()),
        },
        options.peers.clone(),
        options.peer_client_urls.clone(),
    ));
    // The members' links open with the loop's first look at the configuration; spare ids
    // given with --peer get theirs when they join.
    let peers = transport::PeerLinks::new(
        options.id,
        addresses.clone(),
        tokio::runtime::Handle::current(),
        metrics.clone(),
        internal_shutdown.clone(),
    );
    tokio::spawn(transport::serve_inbound(
        peer_listener,
        options.id,
        peer_tx,
        metrics.clone(),
        internal_shutdown.clone(),
    ));

    // The applier and its snapshot writer; they stop when the loop drops its channel.
    let snapshot_file = SnapshotFileLock::new(snapshot_meta.index);
    let (written_tx, snapshots_written) = mpsc::unbounded_channel();
    let snapshot_policy = applier::spawn_snapshot_writer(
        options.id,
        options.snapshot_entries,
        storage.fs(),
        storage.snapshot_path().to_path_buf(),
        snapshot_file.clone(),
        written_tx,
    )
    .map_err(NodeError::Thread)?;
    let applier = Applier::new(
        kv,
        snapshot_meta.term,
        snapshot_membership,
        status_tx.clone(),
        metrics.clone(),
        snapshot_policy,
        options.bugs,
    );
    let (to_applier, applier_inputs) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("apply-{}", options.id))
        .spawn(move || applier.run(applier_inputs))
        .map_err(NodeError::Thread)?;

    let io = LoopIo {
        peers,
        address_book: addresses.clone(),
        from_peers: peer_rx,
        from_clients: client_rx,
        status: status_tx,
        metrics: metrics.clone(),
        tick: options.tick,
        request_timeout: options.request_timeout,
        bugs: options.bugs,
        handover: handover_rx,
        handover_done: Some(handover_done_tx),
        election: options.election,
        to_applier,
        snapshots_written,
        snapshot_file,
    };
    let raft_loop = RaftLoop::new(options.id, core, storage, io);
    let (loop_done_tx, mut loop_done) = oneshot::channel();
    let loop_shutdown = internal_shutdown.clone();
    std::thread::Builder::new()
        .name(format!("raft-{}", options.id))
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime
                    .block_on(raft_loop.run(loop_shutdown))
                    .map_err(NodeError::Loop),
                Err(e) => Err(NodeError::Thread(e)),
            };
            let _ = loop_done_tx.send(result);
        })
        .map_err(NodeError::Thread)?;

    let join_status = status_rx.clone();
    let handle = NodeHandle {
        id: options.id,
        to_raft: client_tx,
        status: status_rx,
        metrics,
        addresses: addresses.clone(),
        request_timeout: options.request_timeout,
    };
    let app = crate::http::router(handle);
    let mut http_shutdown = internal_shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(client_listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });

    // The join runs next to the node; only its failure ends the node.
    let join_task = options
        .join
        .clone()
        .map(|join| tokio::spawn(join::join(options.id, join, addresses, join_status)));
    let join_failed = async move {
        if let Some(task) = join_task {
            match task.await {
                Ok(Err(e)) => return e,
                Ok(Ok(())) => {}
                Err(e) => tracing::error!(error = %e, "the join task died"),
            }
        }
        std::future::pending().await
    };

    let mut shutdown = shutdown;
    let result = tokio::select! {
        e = join_failed => Err(NodeError::Join(e)),
        _ = shutdown.wait_for(|stop| *stop) => {
            // A leader first hands leadership over (bounded by the election timeout in the
            // loop; the margin here only covers a loop that is stuck).
            let _ = handover_tx.send(true);
            let wait = options.election + Duration::from_secs(1);
            match tokio::time::timeout(wait, handover_done_rx).await {
                Ok(Ok(true)) => tracing::info!("leadership handed over"),
                Ok(Ok(false)) => {}
                Ok(Err(_)) | Err(_) => tracing::warn!("no leadership handover"),
            }
            tracing::info!("shutting down");
            Ok(())
        }
        done = &mut loop_done => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(NodeError::LoopGone),
        },
    };
    let _ = internal_shutdown_tx.send(true);
    if result.is_ok() {
        // Let the loop finish its current batch so nothing half-persisted is left behind.
        let _ = tokio::time::timeout(Duration::from_secs(5), loop_done).await;
    }
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), http).await {
        return Err(NodeError::Http(e));
    }
    result
}

#[cfg(test)]
impl NodeStatus {
    /// The view of node 1 leading a fresh cluster alone in term 1, for unit tests.
    pub(crate) fn fresh_leader() -> NodeStatus {
        NodeStatus {
            raft: Status {
                id: 1,
                role: Role::Leader,
                term: 1,
                leader: Some(1),
                commit_index: 0,
                last_index: 0,
                snapshot_index: 0,
                membership: crate::raft::Membership::from_voters([1]),
                membership_index: 0,
                membership_committed: true,
                match_index: BTreeMap::new(),
            },
            applied_index: 0,
            applied_digest: Some(0),
        }
    }
}

impl NodeStatus {
    /// True when this node believes it leads.
    pub fn is_leader(&self) -> bool {
        self.raft.role == Role::Leader
    }
}
