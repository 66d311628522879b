//! etcd as a system under test: a local cluster of `etcd` 3.4 members (Debian's
//! `etcd-server`), started as real processes and driven through the same workloads, nemesis,
//! checker and store as Riptide. It exists to show the harness tests stores it was not written
//! for, and that it finds a real store's documented anomaly (serializable reads are stale)
//! with code nobody here wrote.
//!
//! # Client API: the v3 JSON gateway
//! The client ([`client::EtcdClient`]) speaks etcd's v3 API through its JSON gateway
//! (`POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/kv/deleterange`, keys and values in
//! base64), which etcd 3.4 serves on the client port under `/v3/`. Not the v2 API: etcd 3.4
//! turns v2 off unless `--enable-v2` is given, it is deprecated (removed in 3.6), and its data
//! is a separate store the v3 API and every current client never see. The gateway is plain
//! HTTP/JSON, so no gRPC stack is needed.
//!
//! # Network faults: one front per member, the dialer told by its headers
//! The nemesis cuts directed links, each a TCP proxy that node `a` dials to reach node `b`.
//! etcd members share one list of peer URLs (`--initial-cluster`; a member's id is a hash of
//! its URLs, so every member must be given the same list): a member cannot be told to reach
//! `b` through a proxy of its own. Worse, the traffic between two members travels on
//! connections dialed by *both*: `a` opens streams to `b` on which `b` sends its messages to
//! `a`, and posts its own messages to `b` when its stream is down. A proxy in front of `b`'s
//! advertised URL alone would therefore not isolate `b` (measured: `b` keeps talking through
//! the connections it dials itself).
//!
//! So each member advertises a *front* ([`PeerFront`]), one listener per member. Every peer
//! request etcd sends (`rafthttp` streams, message posts, snapshots) names its sender's peer
//! URLs in an `X-PeerURLs` header; the front reads the request head, finds the dialer `a`
//! there and forwards the connection through the nemesis proxy of link `a -> b`. A connection
//! between two members then passes exactly one of the two proxies of their pair, so a fault
//! that cuts both directions of a pair (`partition-halves`, `isolate-one`, `isolate-leader`,
//! `bridge`, `leader-churn`, and `majorities-ring` from 4 nodes) separates them for real, and
//! `slow-links` / `throttle-links` slow every connection of the links they hit. A one-way cut
//! cannot be expressed: the proxy of `a -> b` carries `b`'s messages to `a` too. That is the
//! 3-node `majorities-ring`, refused by [`unsupported_faults`]. Requests without the header
//! (`GET /version`, the `/raft/probing` health probe) carry no Raft message and go straight
//! to the member.
//!
//! # Process and disk faults
//! Kill, pause and crash-restart act on the processes and work as for any system; the leader
//! is found through `/v3/maintenance/status`. Disk faults are refused: the harness has not
//! measured etcd on the fault-injecting filesystem.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riptide_nemesis::{FaultFamily, FaultKind, ProcessSpec};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Client, ClientOptions, Db, NodeSlot, NodeState, SystemError};

pub mod client;

pub use client::EtcdClient;

/// Where the etcd binary is looked for when `--server-bin` does not say.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// How reads are served.
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
pub enum EtcdReads {
    /// etcd's default: a range goes through the leader's read index (linearizable).
    #[default]
    Linearizable,
    /// `serializable: true`: the member answers from its own state, which may be stale
    /// (documented by etcd as not linearizable).
    Serializable,
}

/// The fault kinds etcd cannot be given here, each with why; empty when all can.
pub fn unsupported_faults(kinds: &[FaultKind], nodes: usize) -> Vec<(FaultKind, &'static str)> {
    let mut refused = Vec::new();
    for &kind in kinds {
        let why = match kind {
            FaultKind::DeafenLeader => Some(
                "it needs one-way cuts, and the traffic of an etcd member pair flows both ways \
                 over connections either member dials, so a one-way cut cannot be placed",
            ),
            FaultKind::MajoritiesRing if nodes <= 3 => Some(
                "with 3 nodes it needs one-way cuts, and the traffic of an etcd member pair \
                 flows both ways over connections either member dials, so a one-way cut \
                 cannot be placed",
            ),
            _ if kind.family() == FaultFamily::Membership => Some(
                "membership faults are not supported for etcd: the harness drives Riptide's \
                 membership API only",
            ),
            _ if kind.family() == FaultFamily::Disk => Some(
                "disk faults are not supported for etcd: the harness has not measured etcd \
                 on the fault-injecting filesystem",
            ),
            _ => None,
        };
        if let Some(why) = why {
            if !refused.iter().any(|(k, _)| *k == kind) {
                refused.push((kind, why));
            }
        }
    }
    refused
}

/// The families `--nemesis default` draws from for Riptide, without disk.
const DEFAULT_FAMILIES: [FaultFamily; 5] = [
    FaultFamily::Partition,
    FaultFamily::Kill,
    FaultFamily::Pause,
    FaultFamily::Crash,
    FaultFamily::Churn,
];

/// `--nemesis default` for etcd on `nodes` nodes: every kind of the default families that
/// etcd can be given (a fault list of kind names), and a note of what it leaves out.
pub fn default_nemesis(nodes: usize) -> (String, String) {
    let all: Vec<FaultKind> = DEFAULT_FAMILIES.iter().flat_map(|f| f.kinds()).collect();
    let refused = unsupported_faults(&all, nodes);
    let kept: Vec<&str> = all
        .iter()
        .filter(|k| !refused.iter().any(|(r, _)| r == *k))
        .map(|k| k.name())
        .collect();
    let left_out: Vec<&str> = refused.iter().map(|(k, _)| k.name()).collect();
    let mut note = "the default nemesis for etcd leaves out the disk faults, which the \
                    harness has not measured on etcd"
        .to_string();
    if !left_out.is_empty() {
        note.push_str(&format!(
            ", and {} (it cannot be placed on etcd's peer links)",
            left_out.join(", ")
        ));
    }
    (kept.join(","), note)
}

/// A local etcd cluster.
pub struct EtcdDb {
    /// The `etcd` binary.
    pub etcd_bin: PathBuf,
    /// Extra flags for every member (`--node-arg`), after the harness's own.
    pub node_args: Vec<String>,
    /// How reads are served.
    pub reads: EtcdReads,
    /// The fronts of the cluster being started (see the module docs).
    front: Mutex<Option<PeerFront>>,
}

impl EtcdDb {
    pub fn new(etcd_bin: PathBuf, node_args: Vec<String>, reads: EtcdReads) -> EtcdDb {
        EtcdDb {
            etcd_bin,
            node_args,
            reads,
            front: Mutex::new(None),
        }
    }

    /// The fronts of `cluster`, made when its first member's process is asked for (a cluster
    /// started again on fresh ports gets new ones).
    fn front_addrs(&self, cluster: &[NodeSlot]) -> Vec<SocketAddr> {
        let members: Vec<SocketAddr> = cluster.iter().map(|n| n.peer_addr).collect();
        let Ok(mut guard) = self.front.lock() else {
            return members;
        };
        if guard.as_ref().is_none_or(|f| f.members != members) {
            *guard = Some(PeerFront::start(members.clone()));
        }
        guard.as_ref().map(|f| f.fronts.clone()).unwrap_or(members)
    }

    fn set_routes(&self, from: usize, routes: Vec<(usize, SocketAddr)>) {
        if let Ok(guard) = self.front.lock() {
            if let Some(front) = guard.as_ref() {
                front.set_routes(from, routes);
            }
        }
    }
}

impl std::fmt::Debug for EtcdDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDb")
            .field("etcd_bin", &self.etcd_bin)
            .field("node_args", &self.node_args)
            .field("reads", &self.reads)
            .finish()
    }
}

/// What `POST /v3/maintenance/status` says (proto3 JSON: 64-bit numbers are strings).
#[derive(Debug, Deserialize)]
struct StatusResponse {
    header: StatusHeader,
    #[serde(default)]
    leader: Option<String>,
    #[serde(default, rename = "raftTerm")]
    raft_term: Option<String>,
    #[serde(default, rename = "raftIndex")]
    raft_index: Option<String>,
    #[serde(default, rename = "raftAppliedIndex")]
    raft_applied_index: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatusHeader {
    member_id: String,
}

fn number(field: &Option<String>) -> u64 {
    field.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A member's state from its status: it leads when the leader it names is itself. In etcd
/// 3.4 `raftIndex` is the committed index.
fn node_state(status: &StatusResponse) -> NodeState {
    let primary = status.leader.as_deref() == Some(status.header.member_id.as_str());
    NodeState {
        primary,
        role: if primary { "leader" } else { "follower" }.to_string(),
        // etcd names its leader by member id, not by our node number.
        leader: None,
        term: number(&status.raft_term),
        commit_index: number(&status.raft_index),
        applied_index: number(&status.raft_applied_index),
        last_index: None,
        applied_digest: None,
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[async_trait::async_trait]
impl Db for EtcdDb {
    fn name(&self) -> &str {
        "etcd"
    }

    fn process(
        &self,
        node: &NodeSlot,
        cluster: &[NodeSlot],
        peer_addr: &dyn Fn(usize) -> SocketAddr,
    ) -> ProcessSpec {
        let fronts = self.front_addrs(cluster);
        self.set_routes(
            node.index,
            cluster
                .iter()
                .filter(|p| p.index != node.index)
                .map(|p| (p.index, peer_addr(p.index)))
                .collect(),
        );
        let initial_cluster: Vec<String> = cluster
            .iter()
            .zip(&fronts)
            .map(|(n, front)| format!("n{}={}", n.id, url(*front)))
            .collect();
        // Unique per cluster start: a member of another cluster that happens to reach these
        // ports is refused rather than joined.
        let token = format!(
            "riptide-{}-{}",
            std::process::id(),
            cluster.first().map(|n| n.peer_addr.port()).unwrap_or(0)
        );
        let mut args: Vec<String> = vec![
            format!("--name=n{}", node.id),
            format!("--data-dir={}", node.data_dir.display()),
            format!("--listen-client-urls={}", node.client_url),
            format!("--advertise-client-urls={}", node.client_url),
            format!("--listen-peer-urls={}", url(node.peer_addr)),
            format!(
                "--initial-advertise-peer-urls={}",
                url(fronts.get(node.index).copied().unwrap_or(node.peer_addr))
            ),
            format!("--initial-cluster={}", initial_cluster.join(",")),
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={token}"),
            // JSON lines with a level, so a fatal error is recognisable (see is_crash_line).
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        args.extend(self.node_args.iter().cloned());
        ProcessSpec::new(&self.etcd_bin, &node.log).args(args)
    }

    async fn ready(&self, node: &NodeSlot, http: &reqwest::Client) -> bool {
        // `/health` answers `true` once the member serves a linearizable read (it has a
        // leader and has caught up to its read index).
        let url = format!("{}/health", node.client_url);
        let Ok(response) = http.get(&url).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        matches!(
            response.json::<serde_json::Value>().await,
            Ok(v) if v.get("health").and_then(|h| h.as_str()) == Some("true")
        )
    }

    async fn state(&self, node: &NodeSlot, http: &reqwest::Client) -> Option<NodeState> {
        let url = format!("{}/v3/maintenance/status", node.client_url);
        let response = http.post(&url).body("{}").send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let status: StatusResponse = response.json().await.ok()?;
        Some(node_state(&status))
    }

    fn is_crash_line(&self, line: &str) -> bool {
        // A Go panic or runtime fatal error, or etcd's own fatal log (zap JSON).
        let line = line.trim_start();
        line.starts_with("panic:")
            || line.starts_with("fatal error:")
            || line.contains(r#""level":"fatal""#)
            || line.contains(r#""level":"panic""#)
    }

    fn damaged_data_refusal(&self, _log_tail: &[String]) -> Option<String> {
        // No disk faults are given to etcd.
        None
    }

    fn is_port_taken(&self, log_tail: &str) -> bool {
        log_tail
            .to_ascii_lowercase()
            .contains("address already in use")
    }

    fn unsupported_faults(&self, kinds: &[FaultKind], nodes: usize) -> Vec<(FaultKind, String)> {
        unsupported_faults(kinds, nodes)
            .into_iter()
            .map(|(k, why)| (k, why.to_string()))
            .collect()
    }

    fn open_client(
        &self,
        nodes: &[NodeSlot],
        options: ClientOptions,
    ) -> Result<Arc<dyn Client>, SystemError> {
        let urls = nodes.iter().map(|n| n.client_url.clone()).collect();
        let client = EtcdClient::new(urls, options.timeouts, self.reads)?
            .with_routes(options.read_from, options.write_to);
        Ok(Arc::new(client))
    }
}

/// The most a peer request head may take before the front gives up on finding its sender.
const MAX_HEAD: usize = 64 * 1024;

/// How long a front waits for a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener per member, advertised as its peer URL, that forwards each connection through
/// the nemesis proxy of the link from its dialer (see the module docs). Dropping it stops the
/// listeners and every connection through them.
struct PeerFront {
    /// The members' real peer addresses (what the nemesis proxies forward to).
    members: Vec<SocketAddr>,
    /// The address each member advertises.
    fronts: Vec<SocketAddr>,
    /// `routes[(from, to)]`: the proxy of the link `from -> to`.
    routes: Arc<Mutex<HashMap<(usize, usize), SocketAddr>>>,
    tasks: tokio::task::JoinSet<()>,
}

impl PeerFront {
    /// Binds one front per member (listening on a port the OS picks) and serves them on the
    /// current tokio runtime. Without a runtime or a port
    /// the members advertise their real addresses: no proxy, and the run's network faults
    /// would have no effect, which the error log says.
    fn start(members: Vec<SocketAddr>) -> PeerFront {
        let routes = Arc::new(Mutex::new(HashMap::new()));
        let mut front = PeerFront {
            fronts: members.clone(),
            members,
            routes,
            tasks: tokio::task::JoinSet::new(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no tokio runtime: etcd peer traffic bypasses the nemesis");
            return front;
        };
        let mut listeners = Vec::new();
        for _ in 0..front.members.len() {
            // A front listens on the port it is given at once, so nothing can take it between
            // the choice and the use (no reservation needed, unlike a node's port).
            let bound = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| {
                listener.set_nonblocking(true)?;
                Ok((listener.local_addr()?, listener))
            });
            match bound {
                Ok(pair) => listeners.push(pair),
                Err(e) => {
                    tracing::error!("etcd peer front: {e}; peer traffic bypasses the nemesis");
                    return front;
                }
            }
        }
        let _enter = runtime.enter();
        let fronts: Arc<Vec<SocketAddr>> = Arc::new(listeners.iter().map(|(a, _)| *a).collect());
        for (to, (_, listener)) in listeners.into_iter().enumerate() {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("etcd peer front: {e}; peer traffic bypasses the nemesis");
                    front.tasks.abort_all();
                    return front;
                }
            };
            let route = Route {
                to,
                member: front.members[to],
                fronts: fronts.clone(),
                routes: front.routes.clone(),
            };
            front.tasks.spawn_on(serve_front(listener, route), &runtime);
        }
        front.fronts = fronts.to_vec();
        front
    }

    fn set_routes(&self, from: usize, links: Vec<(usize, SocketAddr)>) {
        if let Ok(mut routes) = self.routes.lock() {
            for (to, proxy) in links {
                routes.insert((from, to), proxy);
            }
        }
    }
}

/// What a front needs to route a connection to member `to`.
#[derive(Clone)]
struct Route {
    to: usize,
    /// The member's real peer address.
    member: SocketAddr,
    /// Every member's front, by index (how a sender is recognised).
    fronts: Arc<Vec<SocketAddr>>,
    routes: Arc<Mutex<HashMap<(usize, usize), SocketAddr>>>,
}

impl Route {
    /// Where a connection whose request head is `head` goes.
    fn target(&self, head: &[u8]) -> SocketAddr {
        let Some(from) = sender_of(head, &self.fronts) else {
            return self.member;
        };
        self.routes
            .lock()
            .ok()
            .and_then(|r| r.get(&(from, self.to)).copied())
            .unwrap_or(self.member)
    }
}

/// Accepts the connections to one member's front until the front is dropped.
async fn serve_front(listener: tokio::net::TcpListener, route: Route) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { continue };
                let route = route.clone();
                connections.spawn(async move {
                    if let Err(e) = forward(inbound, &route).await {
                        tracing::debug!(to = route.to, "etcd peer front connection: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The sender of a peer request, by the `X-PeerURLs` header of its head: the index of the
/// front it advertises.
pub fn sender_of(head: &[u8], fronts: &[SocketAddr]) -> Option<usize> {
    let text = String::from_utf8_lossy(head);
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-peerurls")
            .then(|| value.trim().to_string())
    })?;
    value.split(',').find_map(|u| {
        let authority = u.trim().strip_prefix("http://")?.trim_end_matches('/');
        let addr: SocketAddr = authority.parse().ok()?;
        fronts.iter().position(|f| *f == addr)
    })
}

/// Forwards one connection to its member: through the proxy of the link from its sender, or
/// straight to the member when the request names no sender (it carries no Raft message).
async fn forward(mut inbound: tokio::net::TcpStream, route: &Route) -> std::io::Result<()> {
    let _ = inbound.set_nodelay(true);
    let mut head = Vec::with_capacity(4096);
    let mut buf = [0u8; 8192];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = inbound.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a request head",
                ));
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(HEAD_TIMEOUT, read_head)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request head"))??;
    let mut outbound = tokio::net::TcpStream::connect(route.target(&head)).await?;
    let _ = outbound.set_nodelay(true);
    outbound.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_member_the_status_names_as_leader() {
        let status: StatusResponse = serde_json::from_str(
            r#"{"header":{"cluster_id":"1","member_id":"13510015062231200447","revision":"4","raft_term":"2"},
                "version":"3.4.23","leader":"13510015062231200447","raftIndex":"8","raftTerm":"2",
                "raftAppliedIndex":"7"}"#,
        )
        .unwrap();
        assert_eq!(
            node_state(&status),
            NodeState {
                primary: true,
                term: 2,
                commit_index: 8,
                applied_index: 7,
                last_index: None,
                applied_digest: None,
                role: "leader".into(),
                leader: None,
            }
        );
    }

    #[test]
    fn one_way_cuts_and_disk_faults_are_refused_with_a_reason() {
        let kinds = [
            FaultKind::MajoritiesRing,
            FaultKind::IsolateOne,
            FaultKind::LoseUnsynced,
            FaultKind::KillLeader,
        ];
        let refused = unsupported_faults(&kinds, 3);
        let names: Vec<&str> = refused.iter().map(|(k, _)| k.name()).collect();
        assert_eq!(names, ["majorities-ring", "lose-unsynced"]);
        assert!(refused[0].1.contains("one-way"));
        assert!(unsupported_faults(&[FaultKind::MajoritiesRing], 5).is_empty());
    }

    #[test]
    fn the_default_nemesis_is_every_kind_etcd_takes() {
        let (list, note) = default_nemesis(3);
        assert!(
            list.contains("isolate-leader") && list.contains("kill-leader"),
            "{list}"
        );
        assert!(!list.contains("majorities-ring"), "{list}");
        assert!(note.contains("majorities-ring"), "{note}");
        assert!(default_nemesis(5).0.contains("majorities-ring"));
    }

    #[test]
    fn a_peer_request_names_its_sender_in_x_peerurls() {
        let fronts: Vec<SocketAddr> = ["127.0.0.1:7001", "127.0.0.1:7002"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let head =
            b"GET /raft/stream/msgappv2/8e9e05c52164694d HTTP/1.1\r\nHost: 127.0.0.1:7001\r\n\
                     X-Server-From: 8e9e05c52164694d\r\nX-PeerURLs: http://127.0.0.1:7002\r\n\r\n";
        assert_eq!(sender_of(head, &fronts), Some(1));
        assert_eq!(sender_of(b"GET /version HTTP/1.1\r\n\r\n", &fronts), None);
    }

    #[test]
    fn fatal_logs_and_go_panics_are_crashes() {
        let db = EtcdDb::new("etcd".into(), Vec::new(), EtcdReads::Linearizable);
        assert!(db.is_crash_line("panic: runtime error: index out of range"));
        assert!(db.is_crash_line(r#"{"level":"fatal","ts":"x","msg":"failed to recover"}"#));
        assert!(!db.is_crash_line(r#"{"level":"warn","msg":"prober detected unhealthy status"}"#));
        assert!(db.is_port_taken("listen tcp 127.0.0.1:1: bind: address already in use"));
    }
}
