//! A local Riptide cluster under test: N `riptide-server` processes, every peer link through a
//! nemesis proxy, data directories and logs inside the run's folder.
//!
//! Node `i` (0-based, id `i + 1`) listens for clients on its own port and for peers on another;
//! it reaches peer `j` through the proxy of the directed link `i -> j`, so the nemesis can cut or
//! slow any link in either direction. Clients talk to the nodes directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use riptide_nemesis::{Network, ProcessSpec, ProcessState, Supervisor};
use serde::Deserialize;

/// Why the cluster could not be started or driven: each is a "run failed" (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nemesis: {0}")]
    Nemesis(#[from] riptide_nemesis::NemesisError),
    #[error("node n{node} did not start: {why}\n--- last lines of {log} ---\n{tail}")]
    NodeStart {
        node: u64,
        why: String,
        log: PathBuf,
        tail: String,
    },
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// One node's addresses and files.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// 1-based id, as `--id` and as in `n1`.
    pub id: u64,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub client_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// What `GET /status` says (the fields the harness uses).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeStatus {
    pub role: serde_json::Value,
    pub term: u64,
    #[serde(default)]
    pub commit_index: u64,
    #[serde(default)]
    pub applied_index: u64,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.role
            .as_str()
            .is_some_and(|r| r.eq_ignore_ascii_case("leader"))
    }
}

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub server_bin: PathBuf,
    /// Extra flags for every node (`--node-arg`).
    pub node_args: Vec<String>,
    /// The run folder, where `nodes/<id>.log` and `nodes/<id>/` go.
    pub run_dir: crate::store::RunDir,
    /// How long a node may take to answer `/status` after it is started.
    pub ready_timeout: Duration,
}

/// The running cluster.
pub struct Cluster {
    /// The node processes, index `i` is node id `i + 1`.
    pub supervisor: Supervisor,
    /// The proxies of every directed peer link.
    pub network: Network,
    pub nodes: Vec<NodeInfo>,
    http: reqwest::Client,
    ready_timeout: Duration,
}

/// Asks the OS for a free loopback port. The port is released before the node binds it, so
/// another process could take it in between; the node then fails with a clear "port taken"
/// error and the run fails with exit 3.
///
/// The listener is returned too: holding it until the nodes are about to start keeps the
/// proxies (which bind their own ephemeral ports meanwhile) from being handed the same port.
fn free_addr() -> Result<(SocketAddr, std::net::TcpListener), ClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ClusterError::Port)?;
    let addr = listener.local_addr().map_err(ClusterError::Port)?;
    Ok((addr, listener))
}

async fn fetch_status(http: &reqwest::Client, url: &str) -> Option<NodeStatus> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<NodeStatus>().await.ok()
}

/// The last `n` lines of a file (empty when it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// True when the node's log shows a Rust panic.
pub fn log_has_panic(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .find(|l| l.contains("panicked at"))
        .map(|l| l.to_string())
}

impl Cluster {
    /// Starts the proxies and the nodes and waits until every node answers `/status`. A port
    /// taken between choosing it and the node binding it (another process won the race) is
    /// retried with fresh ports, a few times.
    pub async fn start(spec: &ClusterSpec) -> Result<Cluster, ClusterError> {
        let mut attempt = 1;
        loop {
            match Cluster::start_once(spec).await {
                Err(ClusterError::NodeStart { tail, .. })
                    if attempt < 4 && tail.contains("Address already in use") =>
                {
                    tracing::warn!(
                        attempt,
                        "a port was taken while starting the cluster; retrying"
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(spec: &ClusterSpec) -> Result<Cluster, ClusterError> {
        let mut nodes = Vec::with_capacity(spec.nodes);
        let mut reserved = Vec::new();
        for i in 0..spec.nodes {
            let id = i as u64 + 1;
            let (client_addr, client_listener) = free_addr()?;
            let (peer_addr, peer_listener) = free_addr()?;
            reserved.push(client_listener);
            reserved.push(peer_listener);
            let data_dir = spec.run_dir.node_data(id);
            // A retried start begins from empty data, like the first attempt.
            let _ = std::fs::remove_dir_all(&data_dir);
            std::fs::create_dir_all(&data_dir).map_err(|source| ClusterError::Dir {
                path: data_dir.clone(),
                source,
            })?;
            nodes.push(NodeInfo {
                id,
                client_addr,
                peer_addr,
                client_url: format!("http://{client_addr}"),
                data_dir,
                log: spec.run_dir.node_log(id),
            });
        }
        let network = Network::start(nodes.iter().map(|n| n.peer_addr).collect()).await?;
        let mut supervisor = Supervisor::new();
        for (i, node) in nodes.iter().enumerate() {
            let mut args: Vec<String> = vec![
                "--id".into(),
                node.id.to_string(),
                "--data-dir".into(),
                node.data_dir.display().to_string(),
                "--listen-client".into(),
                node.client_addr.to_string(),
                "--listen-peer".into(),
                node.peer_addr.to_string(),
            ];
            for (j, peer) in nodes.iter().enumerate() {
                if i == j {
                    continue;
                }
                args.push("--peer".into());
                args.push(format!("{}={}", peer.id, network.proxy_addr(i, j)?));
                args.push("--peer-client-url".into());
                args.push(format!("{}={}", peer.id, peer.client_url));
            }
            // The harness's client gives up on one attempt after ~2 s; a node that answers 504
            // a bit before that lets the client retry elsewhere instead of timing out blind.
            if !spec
                .node_args
                .iter()
                .any(|a| a.starts_with("--request-timeout-ms"))
            {
                args.push("--request-timeout-ms".into());
                args.push("1500".into());
            }
            args.extend(spec.node_args.iter().cloned());
            let process = ProcessSpec::new(&spec.server_bin, &node.log)
                .args(args)
                .env("RUST_BACKTRACE", "1");
            supervisor.add(process);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(300))
            .build()?;
        let mut cluster = Cluster {
            supervisor,
            network,
            nodes,
            http,
            ready_timeout: spec.ready_timeout,
        };
        drop(reserved);
        for i in 0..spec.nodes {
            cluster.supervisor.start(i).await?;
        }
        for i in 0..spec.nodes {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// Waits until node `i` answers `/status`.
    pub async fn wait_ready(&self, i: usize) -> Result<(), ClusterError> {
        let url = format!("{}/status", self.nodes[i].client_url);
        let http = self.http.clone();
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let probe = || {
            let http = http.clone();
            let url = url.clone();
            async move { matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) }
        };
        self.supervisor
            .wait_ready(i, probe, deadline)
            .await
            .map_err(|e| ClusterError::NodeStart {
                node: self.nodes[i].id,
                why: e.to_string(),
                log: self.nodes[i].log.clone(),
                tail: log_tail(&self.nodes[i].log, 20).join("\n"),
            })
    }

    /// The statuses of every node that answers, by index, asked concurrently (a paused node
    /// would otherwise hold up the others for a whole timeout).
    pub async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let http = self.http.clone();
            let url = format!("{}/status", node.client_url);
            set.spawn(async move { (i, fetch_status(&http, &url).await) });
        }
        let mut out = vec![None; self.nodes.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok((i, status)) = joined {
                out[i] = status;
            }
        }
        out
    }

    /// The node that says it leads, with the highest term among those that do (0-based).
    pub async fn leader(&self) -> Option<usize> {
        self.statuses()
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(NodeStatus::is_leader).map(|s| (s.term, i)))
            .max()
            .map(|(_, i)| i)
    }

    /// Waits until some node leads; `None` when none did before `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a leader exists and every node has applied what the leader has committed
    /// (the cluster has recovered from the faults); returns whether it happened in time.
    pub async fn wait_converged(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.statuses().await;
            let leader = statuses
                .iter()
                .flatten()
                .filter(|s| s.is_leader())
                .max_by_key(|s| s.term);
            if let Some(leader) = leader {
                // A node that is not running (it died on its own; that is reported
                // separately) cannot catch up: only the live ones are waited for.
                let all_caught_up = statuses.iter().enumerate().all(|(i, s)| {
                    !self.supervisor.is_alive(i).unwrap_or(false)
                        || s.as_ref()
                            .is_some_and(|s| s.applied_index >= leader.commit_index)
                });
                if all_caught_up {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends every fault: heals every link, resumes paused nodes, starts nodes that the nemesis
    /// killed, and waits until each is ready. Errors are collected, not fatal.
    pub async fn heal_everything(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        self.network.heal_all();
        for i in 0..self.nodes.len() {
            match self.supervisor.state(i) {
                Ok(ProcessState::Paused { .. }) => {
                    if let Err(e) = self.supervisor.resume(i) {
                        problems.push(format!("cannot resume n{}: {e}", i + 1));
                    }
                }
                Ok(ProcessState::Exited(info)) if info.ended_by_supervisor() => {
                    if let Err(e) = self.supervisor.start(i).await {
                        problems.push(format!("cannot restart n{}: {e}", i + 1));
                    }
                }
                _ => {}
            }
        }
        for i in 0..self.nodes.len() {
            if matches!(self.supervisor.state(i), Ok(ProcessState::Running { .. })) {
                if let Err(e) = self.wait_ready(i).await {
                    problems.push(e.to_string());
                }
            }
        }
        problems
    }

    /// Nodes that exited on their own (not by a signal the supervisor sent): each is a problem
    /// that makes the run fail. Returns `(index, description)`.
    pub fn unexpected_exits(&self) -> Vec<(usize, String)> {
        (0..self.nodes.len())
            .filter_map(|i| match self.supervisor.state(i) {
                Ok(ProcessState::Exited(info)) if !info.ended_by_supervisor() => {
                    Some((i, format!("exited on its own: {}", info.describe())))
                }
                _ => None,
            })
            .collect()
    }

    /// Stops every node (SIGTERM, then SIGKILL after a grace period).
    pub async fn stop(&mut self) {
        self.supervisor.shutdown(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines_and_finds_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(
            &path,
            format!("{text}thread 'main' panicked at src/x.rs:1:1\n"),
        )
        .unwrap();
        let tail = log_tail(&path, 3);
        assert_eq!(
            tail,
            [
                "line 48",
                "line 49",
                "thread 'main' panicked at src/x.rs:1:1"
            ]
        );
        assert!(log_has_panic(&path).is_some());
        assert!(log_tail(&dir.path().join("missing"), 3).is_empty());
    }

    #[test]
    fn status_role_is_recognised_in_any_case() {
        let s: NodeStatus = serde_json::from_value(serde_json::json!({
            "id": 1, "role": "Leader", "term": 3, "leader": 1,
            "commit_index": 5, "applied_index": 5, "last_index": 5, "peers": []
        }))
        .unwrap();
        assert!(s.is_leader());
    }
}
