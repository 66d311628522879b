//! Riptide as a system under test: how `riptide-server` nodes are started, watched and
//! talked to. Everything the harness knows of Riptide is here: its flags, `/status`, the
//! `/kv/` API, `Request-Id`, what `307`, `503` and `504` mean, and that "panicked at" in a
//! log is a crash.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use riptide_nemesis::ProcessSpec;
use serde::Deserialize;

use super::{
    Client, ClientOptions, Db, MemberAnswer, MemberRequest, NodeSlot, NodeState, SystemError,
};

pub mod client;
pub mod members;

pub use client::RiptideClient;

/// The request timeout given to every node unless `--node-arg` sets one: a node that answers
/// `504` a little before the client's default attempt timeout (1.5 s) lets the client retry
/// elsewhere instead of timing out blind.
const NODE_REQUEST_TIMEOUT_MS: &str = "1500";

/// `riptide-server` nodes.
#[derive(Debug, Clone)]
pub struct RiptideDb {
    /// The node binary.
    pub server_bin: PathBuf,
    /// Extra flags for every node (`--node-arg`), after the harness's own, so they win.
    pub node_args: Vec<String>,
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
    #[serde(default)]
    pub last_index: Option<u64>,
    #[serde(default)]
    pub applied_digest: Option<String>,
    #[serde(default)]
    pub leader: Option<u64>,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.role
            .as_str()
            .is_some_and(|r| r.eq_ignore_ascii_case("leader"))
    }
}

async fn fetch_status(http: &reqwest::Client, url: &str) -> Option<NodeStatus> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<NodeStatus>().await.ok()
}

#[async_trait::async_trait]
impl Db for RiptideDb {
    fn name(&self) -> &str {
        "riptide"
    }

    fn process(
        &self,
        node: &NodeSlot,
        cluster: &[NodeSlot],
        peer_addr: &dyn Fn(usize) -> SocketAddr,
    ) -> ProcessSpec {
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
        for peer in cluster.iter().filter(|p| p.index != node.index) {
            args.push("--peer".into());
            args.push(format!("{}={}", peer.id, peer_addr(peer.index)));
            args.push("--peer-client-url".into());
            args.push(format!("{}={}", peer.id, peer.client_url));
        }
        // With spare slots among the peers, the initial voters are said explicitly: a spare
        // is reachable (through its proxies) but not a member until it joins.
        if !node.spare && cluster.iter().any(|p| p.spare) {
            let initial: Vec<String> = cluster
                .iter()
                .filter(|p| !p.spare)
                .map(|p| p.id.to_string())
                .collect();
            args.push("--initial-members".into());
            args.push(initial.join(","));
        }
        if !self
            .node_args
            .iter()
            .any(|a| a.starts_with("--request-timeout-ms"))
        {
            args.push("--request-timeout-ms".into());
            args.push(NODE_REQUEST_TIMEOUT_MS.into());
        }
        args.extend(self.node_args.iter().cloned());
        ProcessSpec::new(&self.server_bin, &node.log)
            .args(args)
            .env("RUST_BACKTRACE", "1")
    }

    fn join_process(
        &self,
        node: &NodeSlot,
        cluster: &[NodeSlot],
        peer_addr: &dyn Fn(usize) -> SocketAddr,
        join_url: &str,
        learner_only: bool,
    ) -> Option<ProcessSpec> {
        let mut join = vec![
            "--join".to_string(),
            join_url.to_string(),
            "--advertise-peer".into(),
            node.peer_addr.to_string(),
        ];
        if learner_only {
            join.push("--join-as-learner".into());
        }
        // Before the `--node-arg`s, which come last so they win.
        let mut spec = self.process(node, cluster, peer_addr);
        let at = spec.args.len().saturating_sub(self.node_args.len());
        spec.args
            .splice(at..at, join.into_iter().map(std::ffi::OsString::from));
        Some(spec)
    }

    async fn member_request(
        &self,
        url: &str,
        http: &reqwest::Client,
        request: &MemberRequest,
    ) -> MemberAnswer {
        members::request(url, http, request).await
    }

    async fn ready(&self, node: &NodeSlot, http: &reqwest::Client) -> bool {
        let url = format!("{}/status", node.client_url);
        matches!(http.get(&url).send().await, Ok(r) if r.status().is_success())
    }

    async fn state(&self, node: &NodeSlot, http: &reqwest::Client) -> Option<NodeState> {
        let status = fetch_status(http, &format!("{}/status", node.client_url)).await?;
        Some(NodeState {
            primary: status.is_leader(),
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_index: status.last_index,
            applied_digest: status.applied_digest,
            role: status.role.as_str().unwrap_or("unknown").to_string(),
            leader: status.leader,
        })
    }

    fn is_crash_line(&self, line: &str) -> bool {
        line.contains("panicked at")
    }

    fn damaged_data_refusal(&self, log_tail: &[String]) -> Option<String> {
        // `riptide-server: error: node 2 (data dir ...): storage failed: corrupt ... at byte
        // offset 25: ...`: the node names the file and the offset and exits non-zero.
        log_tail
            .iter()
            .rev()
            .find(|l| l.contains("riptide-server: error:") && l.contains("storage failed"))
            .cloned()
    }

    fn is_port_taken(&self, log_tail: &str) -> bool {
        log_tail.contains("Address already in use")
    }

    fn open_client(
        &self,
        nodes: &[NodeSlot],
        options: ClientOptions,
    ) -> Result<Arc<dyn Client>, SystemError> {
        let urls = nodes.iter().map(|n| n.client_url.clone()).collect();
        let client = RiptideClient::new(urls, options.timeouts)?
            .with_read_from(options.read_from)
            .with_write_to(options.write_to)
            .with_targets(options.targets);
        Ok(Arc::new(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_role_is_recognised_in_any_case() {
        let s: NodeStatus = serde_json::from_value(serde_json::json!({
            "id": 1, "role": "Leader", "term": 3, "leader": 1,
            "commit_index": 5, "applied_index": 5, "last_index": 5, "peers": []
        }))
        .unwrap();
        assert!(s.is_leader());
    }

    /// Slot `index` of a test cluster of 3 nodes and their spares (from index 3).
    fn slot(index: usize) -> NodeSlot {
        NodeSlot {
            index,
            id: index as u64 + 1,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 8001 + index as u16)),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 7001 + index as u16)),
            client_url: format!("http://127.0.0.1:{}", 8001 + index),
            data_dir: PathBuf::from(format!("d{index}")),
            log: PathBuf::from(format!("{index}.log")),
            spare: index >= 3,
        }
    }

    fn db() -> RiptideDb {
        RiptideDb {
            server_bin: "riptide-server".into(),
            node_args: vec!["--election-ms=300".into()],
        }
    }

    /// The proxy through which a node reaches peer `j`.
    fn proxy(j: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000 + j as u16))
    }

    #[test]
    fn every_peer_is_reached_through_its_proxy_and_node_args_come_last() {
        let cluster: Vec<NodeSlot> = (0..3).map(slot).collect();
        let (db, proxy) = (db(), proxy);
        let spec = db.process(&cluster[0], &cluster, &proxy);
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--peer", "2=127.0.0.1:9001"]));
        assert!(args.windows(2).any(|w| w == ["--peer", "3=127.0.0.1:9002"]));
        assert!(!args.iter().any(|a| a.starts_with("1=")), "{args:?}");
        assert_eq!(args.last().map(String::as_str), Some("--election-ms=300"));
        assert!(!args.iter().any(|a| a == "--initial-members"), "{args:?}");
    }

    #[test]
    fn with_spare_slots_initial_nodes_name_their_voters_and_spares_join_through_proxies() {
        let cluster: Vec<NodeSlot> = (0..5).map(slot).collect();
        let (db, proxy) = (db(), proxy);
        let strings = |spec: ProcessSpec| -> Vec<String> {
            spec.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let first = strings(db.process(&cluster[0], &cluster, &proxy));
        assert!(first
            .windows(2)
            .any(|w| w == ["--peer", "5=127.0.0.1:9004"]));
        assert!(first
            .windows(2)
            .any(|w| w == ["--initial-members", "1,2,3"]));
        let spare = strings(
            db.join_process(&cluster[3], &cluster, &proxy, "http://127.0.0.1:8001", true)
                .unwrap(),
        );
        assert!(spare
            .windows(2)
            .any(|w| w == ["--peer", "1=127.0.0.1:9000"]));
        assert!(spare
            .windows(2)
            .any(|w| w == ["--join", "http://127.0.0.1:8001"]));
        assert!(spare
            .windows(2)
            .any(|w| w == ["--advertise-peer", "127.0.0.1:7004"]));
        assert!(spare.iter().any(|a| a == "--join-as-learner"));
        assert!(!spare.iter().any(|a| a == "--initial-members"), "{spare:?}");
        assert_eq!(spare.last().map(String::as_str), Some("--election-ms=300"));
        let replacing = strings(
            db.join_process(
                &cluster[4],
                &cluster,
                &proxy,
                "http://127.0.0.1:8001",
                false,
            )
            .unwrap(),
        );
        assert!(!replacing.iter().any(|a| a == "--join-as-learner"));
    }
}
