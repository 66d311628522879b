//! The system under test, as the harness sees it: Jepsen's `db` and `client` protocols.
//!
//! The engine ([`crate::run`]) knows nothing of Riptide: it starts a cluster through a [`Db`]
//! (how node `i` is started with its peers reached through the nemesis proxies, when it is
//! ready, who is primary, how far it has applied, what in its log means it crashed) and drives
//! it with the [`Client`] the `Db` opens (invoke one operation with a request id and a
//! deadline, get `ok`, `fail` or `info`). Kill, pause and links stay in the nemesis crate,
//! which acts on processes and TCP links of any system. [`riptide`] implements both seams for
//! `riptide-server` and [`etcd`] for an etcd cluster; another store needs one module like
//! them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riptide_nemesis::{FaultKind, ProcessSpec};

pub mod etcd;
pub mod riptide;

/// Where node `index` of the cluster lives: its ports and files, chosen by the harness.
#[derive(Debug, Clone)]
pub struct NodeSlot {
    /// 0-based position, as the nemesis numbers nodes.
    pub index: usize,
    /// 1-based id, as in `n1`.
    pub id: u64,
    /// Where clients reach it.
    pub client_addr: SocketAddr,
    /// Where its peers' traffic must arrive (the proxies forward to it).
    pub peer_addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub client_url: String,
    pub data_dir: PathBuf,
    /// The node's stdout and stderr.
    pub log: PathBuf,
    /// A spare slot: not in the initial configuration; its node, when a membership fault
    /// starts one, joins the running cluster.
    pub spare: bool,
}

/// What a node says of itself, as far as the harness needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// It believes it is the primary (the Raft leader).
    pub primary: bool,
    /// Its term (or epoch): of two nodes that say they lead, the higher term wins.
    pub term: u64,
    /// What it knows to be committed.
    pub commit_index: u64,
    /// What it has applied to its state machine.
    pub applied_index: u64,
    /// The index of the last entry of its log, when it says (for the `figure-8` fault).
    pub last_index: Option<u64>,
    /// Its digest of everything applied up to `applied_index`, when it reports one (see
    /// [`crate::run::replicas`]).
    pub applied_digest: Option<String>,
    /// Its role in its own words (`leader`, `follower`, `candidate`, ...), as recorded in
    /// `cluster.jsonl`.
    pub role: String,
    /// The node (1-based id) it believes leads, when it knows one.
    pub leader: Option<u64>,
}

/// Why a system could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{0}")]
    Setup(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// How clients behave, whatever the system.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub timeouts: ClientTimeouts,
    /// Where reads go first.
    pub read_from: Route,
    /// Where writes go first.
    pub write_to: Route,
    /// The slots clients may pick on their own (round-robin); `None`: every slot.
    pub targets: Option<Arc<ClientTargets>>,
}

/// Which of the cluster's slots clients pick on their own: every initial node, killed or not
/// (a client of a real cluster keeps trying a member that is down), and a spare slot from the
/// moment a membership fault's node on it answers until the harness stops it for good. A
/// removed node that keeps running stays open: that is how one serving stale state is caught.
/// A spare never started, or a node stopped for good, would only cost every client an attempt
/// on a closed port. A redirect is followed wherever it points. Shared by the harness, which
/// opens and closes slots, and the clients.
#[derive(Debug)]
pub struct ClientTargets {
    open: Vec<std::sync::atomic::AtomicBool>,
}

impl ClientTargets {
    /// The initial nodes of `slots` open, the spares closed.
    pub fn new(slots: &[NodeSlot]) -> ClientTargets {
        ClientTargets::from_open(slots.iter().map(|s| !s.spare))
    }

    /// Slot `i` open when the `i`th item is true.
    pub fn from_open(open: impl IntoIterator<Item = bool>) -> ClientTargets {
        ClientTargets {
            open: open
                .into_iter()
                .map(std::sync::atomic::AtomicBool::new)
                .collect(),
        }
    }

    /// Clients may pick slot `index` from now on.
    pub fn open(&self, index: usize) {
        if let Some(o) = self.open.get(index) {
            o.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Clients no longer pick slot `index`.
    pub fn close(&self, index: usize) {
        if let Some(o) = self.open.get(index) {
            o.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether clients may pick slot `index` (slots it does not know of: yes).
    pub fn is_open(&self, index: usize) -> bool {
        self.open
            .get(index)
            .is_none_or(|o| o.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Which system a run tests (`--system`). Stored in `config.json` only when it is not
/// Riptide, so Riptide's runs are stored as before.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// `riptide-server` nodes.
    #[default]
    Riptide,
    /// A local etcd cluster (the `etcd` binary of etcd-server 3.4).
    Etcd,
}

impl SystemKind {
    pub fn is_riptide(&self) -> bool {
        *self == SystemKind::Riptide
    }
}

/// How the harness starts and watches the nodes of one system (Jepsen's `db` protocol).
#[async_trait::async_trait]
pub trait Db: Send + Sync {
    /// The system's name, as `--system` takes it.
    fn name(&self) -> &str;
    /// The process of `node`. `peer_addr(j)` is the address through which `node` must reach
    /// peer `j` (the proxy of the directed link `node -> j`), for every other node `j`.
    fn process(
        &self,
        node: &NodeSlot,
        cluster: &[NodeSlot],
        peer_addr: &dyn Fn(usize) -> SocketAddr,
    ) -> ProcessSpec;
    /// Whether the node answers (is ready to serve clients).
    async fn ready(&self, node: &NodeSlot, http: &reqwest::Client) -> bool;
    /// What the node says of its role and progress; `None` when it does not answer.
    async fn state(&self, node: &NodeSlot, http: &reqwest::Client) -> Option<NodeState>;
    /// Whether a line of the node's log means it crashed on its own (a panic, an assertion).
    fn is_crash_line(&self, line: &str) -> bool;
    /// The line of a node's log (its last lines) in which it refused to start because its data
    /// is damaged, naming what is damaged; `None` when the log says no such thing. After a
    /// `corrupt` fault that refusal is what a correct node must do, not a crash.
    fn damaged_data_refusal(&self, log_tail: &[String]) -> Option<String>;
    /// Whether the log of a node that did not start says its port was taken (the harness
    /// then starts the cluster again on fresh ports).
    fn is_port_taken(&self, log_tail: &str) -> bool;
    /// The fault kinds of `kinds` this system cannot be given on a cluster of `nodes`, each
    /// with why (the run is refused before it starts, naming them); empty when all can.
    fn unsupported_faults(&self, kinds: &[FaultKind], nodes: usize) -> Vec<(FaultKind, String)> {
        let _ = (kinds, nodes);
        Vec::new()
    }
    /// The process of spare slot `node`, started while the cluster runs, that joins it through
    /// `join_url` (a member's client URL): as a learner that promotes itself once caught up, or
    /// one that stays a learner (`learner_only`). Peers are reached as in [`Db::process`].
    /// `None` when the system cannot change its membership (the `membership` faults are then
    /// refused before the run).
    fn join_process(
        &self,
        node: &NodeSlot,
        cluster: &[NodeSlot],
        peer_addr: &dyn Fn(usize) -> SocketAddr,
        join_url: &str,
        learner_only: bool,
    ) -> Option<ProcessSpec> {
        let _ = (node, cluster, peer_addr, join_url, learner_only);
        None
    }
    /// One request of the system's membership API, sent to the node at `url` (its client URL).
    async fn member_request(
        &self,
        url: &str,
        http: &reqwest::Client,
        request: &MemberRequest,
    ) -> MemberAnswer {
        let _ = (url, http, request);
        MemberAnswer::Unreachable(format!("{} has no membership API", self.name()))
    }
    /// A client of the whole cluster, shared by every worker.
    fn open_client(
        &self,
        nodes: &[NodeSlot],
        options: ClientOptions,
    ) -> Result<Arc<dyn Client>, SystemError>;
}

/// A request of a system's membership API; nodes by 1-based id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRequest {
    /// The configuration as the node knows it.
    List,
    /// Add node `id` as a learner.
    AddLearner {
        id: u64,
        peer_addr: SocketAddr,
        client_url: String,
    },
    /// Promote learner `id` to voter.
    Promote { id: u64 },
    /// Remove node `id`.
    Remove { id: u64 },
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// 1-based id.
    pub id: u64,
    /// A voter, or a learner.
    pub voter: bool,
}

/// How a membership request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAnswer {
    /// Done (a change is committed); the configuration when the answer carries it.
    Done(Option<Vec<Member>>),
    /// Not now: another change in flight, no leader ready, a learner still behind. Retry.
    Busy(String),
    /// Invalid (the last voter, a lost quorum, an unknown id, already a member): retrying
    /// cannot help.
    Refused(String),
    /// No usable answer from this node (down, cut off, timed out, not the API): try another.
    Unreachable(String),
}

/// One operation against the cluster with Jepsen's outcomes (the `client` protocol).
#[async_trait::async_trait]
pub trait Client: Send + Sync {
    /// Runs `request` until it is settled or `deadline` passes. `request_id` (`PROCESS:SEQ`)
    /// is the same for every attempt, so a system with exactly-once writes can make retries
    /// safe; a client without them must answer `info` for a write whose fate it cannot know.
    /// The answer names the node whose reply settled the operation, when one did.
    async fn invoke(&self, request: &Request, request_id: &str, deadline: Instant) -> Answer;
}

/// One operation of the key-value API every system under test offers (the workloads'
/// vocabulary; each [`Client`] maps it onto its own protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read a key (absent: `None`).
    Read { key: String },
    /// Set a key.
    Write { key: String, value: String },
    /// Set a key to `to` only if it holds `from`.
    Cas {
        key: String,
        from: String,
        to: String,
    },
    /// Remove a key.
    Delete { key: String },
    /// Append to a key's value (creating it when absent).
    Append { key: String, suffix: String },
}

impl Request {
    /// Reads have no effect, so they need no `Request-Id` and are never ambiguous.
    pub fn is_read(&self) -> bool {
        matches!(self, Request::Read { .. })
    }

    /// The key the operation is about.
    pub fn key(&self) -> &str {
        match self {
            Request::Read { key }
            | Request::Write { key, .. }
            | Request::Cas { key, .. }
            | Request::Delete { key }
            | Request::Append { key, .. } => key,
        }
    }
}

/// Which node answered an operation and what it knew then, as Jepsen's `:node`: recorded on
/// the completion in `history.jsonl` (`"node":"n2","term":3,"commit_index":118,"role":"follower"`),
/// so a report can tell a stale read from a follower from one from a deposed leader. Every
/// field but the node is optional: a system says what it can (etcd's gateway gives its
/// member's term, not its role).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// 1-based id of the node whose answer settled the operation (after redirects), written
    /// `n2`.
    #[serde(with = "node_name")]
    pub node: u64,
    /// Its Raft term when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Its commit index when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_index: Option<u64>,
    /// Its role when it answered (`leader`, `follower`, `candidate`, `precandidate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Served {
    /// Whether the node said it led when it answered (`None` when it did not say).
    pub fn was_leader(&self) -> Option<bool> {
        self.role.as_deref().map(|r| r == "leader")
    }
}

/// `n2` in files, `2` in memory.
mod node_name {
    pub fn serialize<S: serde::Serializer>(node: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("n{node}"))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.strip_prefix('n')
            .unwrap_or(&text)
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a node name: {text:?}")))
    }
}

/// An operation's completion and the node that answered it, when one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub completion: Completion,
    /// `None` when no node's answer settled it (a deadline passed, a timeout).
    pub served: Option<Served>,
}

impl Answer {
    /// A completion no node's answer settled.
    pub fn unserved(completion: Completion) -> Answer {
        Answer {
            completion,
            served: None,
        }
    }
}

/// How one operation ended, as written in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// `ok`; for a read, the value it returned.
    Ok(Option<String>),
    /// `fail` with an error, e.g. `precondition-failed`.
    Fail(String),
    /// `info`: unknown; the caller retires the process.
    Info(String),
}

/// Where an operation's first attempt goes (reads and writes each have one). Stored in
/// `config.json`; runs stored before a field existed replay with `leader`, the old behaviour.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// To the node the clients believe leads (learned from redirects).
    #[default]
    Leader,
    /// Round-robin over every node, as a load-balancing client would, following redirects
    /// from there: a correct follower redirects to the leader, a buggy one answers from its
    /// own state, and a cut-off old leader keeps getting its share (this is what exposes stale
    /// reads and writes acknowledged by a leader that is no longer one).
    Any,
}

/// One attempt's default timeout: short, so a client leaves a cut-off node quickly and meets
/// the new leader while the old one may still answer (the planted-bug matrix measured 250 ms
/// for a stale leader's reads); long next to a healthy cluster's p99 (tens of ms).
pub const DEFAULT_ATTEMPT_TIMEOUT_MS: u64 = 500;

/// Timeouts of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// One HTTP attempt (connect + request + response).
    pub attempt: Duration,
    /// Connection establishment; short, so a killed or unreachable node is skipped fast.
    pub connect: Duration,
    /// Pause between attempts after a refusal or an ambiguous failure.
    pub backoff: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            attempt: Duration::from_millis(DEFAULT_ATTEMPT_TIMEOUT_MS),
            connect: Duration::from_millis(300),
            backoff: Duration::from_millis(50),
        }
    }
}

/// What a transport error says of a request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// Certainly not sent (the connection could not be made), or a read: try again.
    NotSent(String),
    /// Sent, perhaps applied (timeout, reset after sending): unknown for a write.
    MaybeApplied(String),
    /// The request could not be built: retrying cannot help.
    Invalid(String),
}

/// Classifies a transport error: nothing was sent when the connection could not be made;
/// anything else (timeout, reset after sending) is unknown for a write.
pub fn transport_failure(request_is_read: bool, err: &reqwest::Error) -> TransportFailure {
    let text = if err.is_timeout() {
        "timeout".to_string()
    } else if err.is_connect() {
        "connection refused".to_string()
    } else {
        let mut s = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            s = format!("{s}: {inner}");
            source = inner.source();
        }
        s
    };
    if err.is_builder() {
        TransportFailure::Invalid(text)
    } else if err.is_connect() || request_is_read {
        TransportFailure::NotSent(text)
    } else {
        TransportFailure::MaybeApplied(text)
    }
}

/// The HTTP client of a cluster client: no redirects followed (a client decides), short
/// connects; fails on an empty node list.
pub fn cluster_http_client(
    nodes: &[String],
    timeouts: &ClientTimeouts,
) -> Result<reqwest::Client, SystemError> {
    if nodes.is_empty() {
        return Err(SystemError::Setup(
            "a client needs at least one node".into(),
        ));
    }
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(10))
        .build()?)
}
