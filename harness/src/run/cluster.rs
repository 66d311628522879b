//! A local cluster under test: N node processes of some [`Db`], every peer link through a
//! nemesis proxy, data directories and logs inside the run's folder.
//!
//! Node `i` (0-based, id `i + 1`) listens for clients on its own port and for peers on another;
//! it reaches peer `j` through the proxy of the directed link `i -> j`, so the nemesis can cut or
//! slow any link in either direction. Clients talk to the nodes directly.
//!
//! With membership faults the cluster also has spare slots (ids `N+1..`): ports, data
//! directories and proxies for every link to and from them ready, every node given their
//! addresses, but no process until a fault starts one that joins the running cluster (see
//! [`super::membership`]). The [`SlotBook`] keeps which slot stands for which initial node and
//! which slots are out of the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use riptide_nemesis::{Network, ProcessState, ReservedPort, Supervisor};
use tokio::sync::Mutex;

use super::disk::NodeDisks;
use crate::system::{ClientTargets, Db, NodeSlot, NodeState};

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
    #[error("disk faults: {0}")]
    Disk(#[from] riptide_faultfs::FaultFsError),
}

/// How to start the cluster.
#[derive(Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    /// The system the nodes run.
    pub db: Arc<dyn Db>,
    /// The run folder, where `nodes/<id>.log` and `nodes/<id>/` go.
    pub run_dir: crate::store::RunDir,
    /// How long a node may take to answer after it is started.
    pub ready_timeout: Duration,
    /// Put every node's data directory on the fault-injecting filesystem (the schedule has
    /// disk faults).
    pub disks: bool,
    /// Spare slots beyond the `nodes` (the schedule has membership faults), not started.
    pub spares: usize,
}

/// Which slot plays which part, as membership faults change it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotBook {
    /// By initial node: the slot that stands for it now (itself until it is replaced).
    pub stand_in: Vec<usize>,
    /// Spare slots never used, taken from the front.
    pub free_spares: std::collections::VecDeque<usize>,
    /// Slots stopped for good: never started again, not waited for.
    pub retired: std::collections::BTreeSet<usize>,
    /// Slots out of the configuration (removed, or spares not joined yet): running or not,
    /// they are not waited for to catch up.
    pub outside: std::collections::BTreeSet<usize>,
}

impl SlotBook {
    /// `nodes` initial slots, each standing for itself, and `spares` spares after them.
    pub fn new(nodes: usize, spares: usize) -> SlotBook {
        SlotBook {
            stand_in: (0..nodes).collect(),
            free_spares: (nodes..nodes + spares).collect(),
            retired: Default::default(),
            outside: (nodes..nodes + spares).collect(),
        }
    }

    /// Whether the cluster waits for `slot` to catch up.
    pub fn counts(&self, slot: usize) -> bool {
        !self.retired.contains(&slot) && !self.outside.contains(&slot)
    }
}

/// The running cluster.
pub struct Cluster {
    /// The node processes, index `i` is node id `i + 1`. Behind a mutex so the nemesis and
    /// the harness share it; nobody holds it across a wait.
    pub supervisor: Mutex<Supervisor>,
    /// The proxies of every directed peer link.
    pub network: Network,
    pub nodes: Vec<NodeSlot>,
    pub db: Arc<dyn Db>,
    /// The nodes' fault-injecting filesystems, when the run has disk faults.
    pub disks: Option<NodeDisks>,
    /// How many of `nodes` are the initial ones (the rest are spares).
    pub initial: usize,
    /// Who stands for whom, what is retired and what is outside the configuration.
    pub book: std::sync::Mutex<SlotBook>,
    /// The slots clients pick on their own: membership faults open a spare when they start
    /// its node and close a slot they stop for good.
    pub client_targets: Arc<ClientTargets>,
    pub(super) http: reqwest::Client,
    ready_timeout: Duration,
    /// The nodes' client and peer ports, held until the cluster is dropped.
    _ports: Vec<ReservedPort>,
}

/// A loopback port for a node, reserved for the cluster's lifetime (also while the node is
/// killed and before it is started again), so no proxy, client connection or other run is
/// handed it meanwhile. A node that still finds it taken fails with a clear "port taken" error
/// and [`Cluster::start`] tries again on fresh ports.
fn free_addr() -> Result<(SocketAddr, ReservedPort), ClusterError> {
    let port = ReservedPort::new().map_err(ClusterError::Port)?;
    Ok((port.addr(), port))
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

/// The first line of a node's log that its system calls a crash.
pub fn crash_line(db: &dyn Db, path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .find(|l| db.is_crash_line(l))
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
                    if attempt < 4 && spec.db.is_port_taken(&tail) =>
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
        let slots = spec.nodes + spec.spares;
        let mut nodes = Vec::with_capacity(slots);
        let mut reserved = Vec::new();
        for i in 0..slots {
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
            nodes.push(NodeSlot {
                index: i,
                id,
                client_addr,
                peer_addr,
                client_url: format!("http://{client_addr}"),
                data_dir,
                log: spec.run_dir.node_log(id),
                spare: i >= spec.nodes,
            });
        }
        // With disk faults a node writes through its mount; its durable data stays in the
        // run folder's `nodes/<id>/`.
        let disks = if spec.disks {
            let (disks, points) =
                NodeDisks::mount(nodes.iter().map(|n| n.data_dir.clone()).collect())?;
            for (node, point) in nodes.iter_mut().zip(points) {
                node.data_dir = point;
            }
            Some(disks)
        } else {
            None
        };
        let network = Network::start(nodes.iter().map(|n| n.peer_addr).collect()).await?;
        let mut supervisor = Supervisor::new();
        for node in &nodes {
            let mut proxies = Vec::with_capacity(nodes.len());
            for j in 0..nodes.len() {
                proxies.push(if j == node.index {
                    node.peer_addr
                } else {
                    network.proxy_addr(node.index, j)?
                });
            }
            supervisor.add(spec.db.process(node, &nodes, &|j| proxies[j]));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(300))
            .build()?;
        let client_targets = Arc::new(ClientTargets::new(&nodes));
        let mut cluster = Cluster {
            supervisor: Mutex::new(supervisor),
            network,
            nodes,
            db: spec.db.clone(),
            disks,
            initial: spec.nodes,
            book: std::sync::Mutex::new(SlotBook::new(spec.nodes, spec.spares)),
            client_targets,
            http,
            ready_timeout: spec.ready_timeout,
            _ports: reserved,
        };
        for i in 0..spec.nodes {
            cluster.supervisor.get_mut().start(i).await?;
        }
        for i in 0..spec.nodes {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// Waits until node `i` is ready (its system says so), or fails when its process exits
    /// first or the ready timeout passes.
    pub async fn wait_ready(&self, i: usize) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let node = &self.nodes[i];
        let failed = |why: String| ClusterError::NodeStart {
            node: node.id,
            why,
            log: node.log.clone(),
            tail: log_tail(&node.log, 20).join("\n"),
        };
        loop {
            let state = self.supervisor.lock().await.state(i);
            match state {
                Ok(ProcessState::Exited(info)) => {
                    return Err(failed(format!(
                        "exited before it was ready: {}",
                        info.describe()
                    )))
                }
                Err(e) => return Err(failed(e.to_string())),
                Ok(_) => {}
            }
            if matches!(
                tokio::time::timeout_at(deadline, self.db.ready(node, &self.http)).await,
                Ok(true)
            ) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(format!(
                    "not ready within {} ms",
                    self.ready_timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What node `i` says of itself; `None` when it does not answer.
    pub async fn state_of(&self, i: usize) -> Option<NodeState> {
        let node = self.nodes.get(i)?;
        self.db.state(node, &self.http).await
    }

    /// The slot book (a poisoned lock still holds a usable book).
    pub fn book(&self) -> std::sync::MutexGuard<'_, SlotBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What every node that answers says of itself, by index, asked concurrently (a paused
    /// node would otherwise hold up the others for a whole timeout).
    pub async fn states(&self) -> Vec<Option<NodeState>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let (db, http, node) = (self.db.clone(), self.http.clone(), node.clone());
            set.spawn(async move { (i, db.state(&node, &http).await) });
        }
        let mut out = vec![None; self.nodes.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok((i, state)) = joined {
                out[i] = state;
            }
        }
        out
    }

    /// The node that says it leads, with the highest term among those that do (0-based).
    pub async fn leader(&self) -> Option<usize> {
        self.states()
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|s| s.primary).map(|s| (s.term, i)))
            .max()
            .map(|(_, i)| i)
    }

    /// What node `i` says of its term and leader, for the faults timed on an election.
    pub async fn view_of(&self, i: usize) -> Option<riptide_nemesis::NodeView> {
        let state = self.state_of(i).await?;
        Some(riptide_nemesis::NodeView {
            term: state.term,
            follower: state.role == "follower",
            knows_leader: state.leader.is_some(),
        })
    }

    /// What node `i` says of its log, for `figure-8`; `None` when it does not answer or does
    /// not say where its log ends.
    pub async fn log_view_of(&self, i: usize) -> Option<riptide_nemesis::LogView> {
        let state = self.state_of(i).await?;
        Some(riptide_nemesis::LogView {
            term: state.term,
            leader: state.primary,
            last_index: state.last_index?,
            commit_index: state.commit_index,
        })
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

    /// Asks every running member until all stand at the same applied index (or `timeout`
    /// passes), recording each answer's digest in `book` (see [`super::replicas`]); returns
    /// whether they met.
    pub async fn compare_replicas(
        &self,
        book: &std::sync::Mutex<super::replicas::DigestBook>,
        now_ns: impl Fn() -> u64,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.states().await;
            let time = now_ns();
            let members = self.live_members().await;
            let mut indexes = std::collections::BTreeSet::new();
            for (i, state) in statuses.iter().enumerate().filter(|(i, _)| members[*i]) {
                let Some(state) = state else {
                    indexes.insert(None);
                    continue;
                };
                indexes.insert(Some(state.applied_index));
                super::replicas::DigestBook::record_state(book, i, state, time);
            }
            if indexes.len() == 1 && !indexes.contains(&None) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Per node: running, and in the configuration (the nodes a caught-up cluster is made of).
    async fn live_members(&self) -> Vec<bool> {
        let supervisor = self.supervisor.lock().await;
        let book = self.book();
        (0..self.nodes.len())
            .map(|i| supervisor.is_alive(i).unwrap_or(false) && book.counts(i))
            .collect()
    }

    /// Waits until a leader exists and every node has applied what the leader has committed
    /// (the cluster has recovered from the faults); returns whether it happened in time.
    pub async fn wait_converged(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.states().await;
            let leader = statuses
                .iter()
                .flatten()
                .filter(|s| s.primary)
                .max_by_key(|s| s.term);
            if let Some(leader) = leader {
                // A node that is not running (it died on its own; that is reported
                // separately) cannot catch up: only the live ones are waited for.
                // Nor are nodes out of the configuration, which nobody replicates to.
                let alive = self.live_members().await;
                let all_caught_up = statuses.iter().enumerate().all(|(i, s)| {
                    !alive[i]
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
    pub async fn heal_everything(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.network.heal_all();
        let retired = self.book().retired.clone();
        let mut supervisor = self.supervisor.lock().await;
        for i in (0..self.nodes.len()).filter(|i| !retired.contains(i)) {
            match supervisor.state(i) {
                Ok(ProcessState::Paused { .. }) => {
                    if let Err(e) = supervisor.resume(i) {
                        problems.push(format!("cannot resume n{}: {e}", i + 1));
                    }
                }
                Ok(ProcessState::Exited(info)) if info.ended_by_supervisor() => {
                    if let Err(e) = supervisor.start(i).await {
                        problems.push(format!("cannot restart n{}: {e}", i + 1));
                    }
                }
                _ => {}
            }
        }
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| matches!(supervisor.state(i), Ok(ProcessState::Running { .. })))
            .collect();
        drop(supervisor);
        for i in running {
            if let Err(e) = self.wait_ready(i).await {
                problems.push(e.to_string());
            }
        }
        problems
    }

    /// Nodes that exited on their own (not by a signal the supervisor sent): each is a problem
    /// that makes the run fail. Returns `(index, description)`.
    pub async fn unexpected_exits(&self) -> Vec<(usize, String)> {
        let supervisor = self.supervisor.lock().await;
        (0..self.nodes.len())
            .filter_map(|i| match supervisor.state(i) {
                Ok(ProcessState::Exited(info)) if !info.ended_by_supervisor() => {
                    Some((i, format!("exited on its own: {}", info.describe())))
                }
                _ => None,
            })
            .collect()
    }

    /// Stops every node (SIGTERM, then SIGKILL after a grace period).
    pub async fn stop(&self) {
        self.supervisor
            .lock()
            .await
            .shutdown(Duration::from_secs(5))
            .await;
    }
}

/// The nemesis asks the cluster who leads and where each node stands.
impl riptide_nemesis::Primary for Cluster {
    fn primary(&self) -> impl std::future::Future<Output = Option<usize>> + Send {
        self.leader()
    }

    fn view(
        &self,
        node: usize,
    ) -> impl std::future::Future<Output = Option<riptide_nemesis::NodeView>> + Send {
        self.view_of(node)
    }

    fn log_view(
        &self,
        node: usize,
    ) -> impl std::future::Future<Output = Option<riptide_nemesis::LogView>> + Send {
        self.log_view_of(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines_and_the_system_names_crashes() {
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
        let db = crate::system::riptide::RiptideDb {
            server_bin: "riptide-server".into(),
            node_args: Vec::new(),
        };
        assert!(crash_line(&db, &path).is_some());
        assert!(log_tail(&dir.path().join("missing"), 3).is_empty());
    }
}
