//! Helpers for tests that run real `riptide-server` processes on 127.0.0.1.
//!
//! Every process is owned by a [`Cluster`] and killed when it is dropped (also when a test
//! panics). Ports come from binding 127.0.0.1:0 and releasing. Conditions are polled with a
//! deadline, never waited for with a fixed sleep.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: two shared cores, debug builds, other test suites running at the same time.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node's addresses, data dir and (when running) process.
pub struct Node {
    pub id: u64,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

/// N nodes configured as one cluster, each started and stopped on demand.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Holds the data dirs and logs; removed at the end unless RIPTIDE_KEEP_TEST_DIRS is set.
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// A client that does not follow redirects, to see the 307s.
    pub http_no_redirect: reqwest::Client,
    /// Extra flags for every node started from now on.
    pub extra_args: Vec<String>,
}

impl Cluster {
    pub fn new(size: u64) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("riptide-test-")
            .tempdir()
            .expect("temp dir");
        let nodes = (1..=size)
            .map(|id| Node {
                id,
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("node{id}")),
                log_file: dir.path().join(format!("node{id}.log")),
                child: None,
            })
            .collect();
        let timeout = Duration::from_secs(10);
        Cluster {
            nodes,
            dir,
            http: reqwest::Client::builder().timeout(timeout).build().unwrap(),
            http_no_redirect: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            extra_args: Vec::new(),
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn url(&self, id: u64) -> String {
        self.node(id).url()
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    /// Starts node `id` (with its existing data dir, if any).
    pub fn start(&mut self, id: u64) {
        self.spawn(id, false);
    }

    /// Starts node `id` cut off from its peers, as if partitioned away: it listens for peers
    /// on a port no one knows and reaches its peers at ports where nothing listens. Restart
    /// it with [`Cluster::start`] (same data dir) to heal the partition.
    pub fn start_isolated(&mut self, id: u64) {
        self.spawn(id, true);
    }

    fn spawn(&mut self, id: u64, isolated: bool) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_riptide-server"));
        let node = self.node(id);
        let listen_peer = if isolated {
            free_port()
        } else {
            node.peer_port
        };
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--listen-client")
            .arg(format!("127.0.0.1:{}", node.client_port))
            .arg("--listen-peer")
            .arg(format!("127.0.0.1:{listen_peer}"))
            .arg("--log-level")
            .arg("info")
            .args(&self.extra_args);
        for peer in &self.nodes {
            if peer.id != id {
                let peer_port = if isolated {
                    free_port()
                } else {
                    peer.peer_port
                };
                command
                    .arg("--peer")
                    .arg(format!("{}=127.0.0.1:{peer_port}", peer.id))
                    .arg("--peer-client-url")
                    .arg(format!("{}={}", peer.id, peer.url()));
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_file)
            .expect("node log file");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command.spawn().expect("spawn riptide-server");
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    pub fn start_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.start(id);
        }
    }

    /// `kill -9` of node `id`, waiting until it is gone.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to node `id`, waiting (bounded) until it exits; SIGKILL if it does not.
    /// Returns the exit status when it exited by itself.
    pub fn stop(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let mut child = self.nodes[(id - 1) as usize].child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    /// The node's `/status`, or None when it does not answer.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/status", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Waits until one running node among `among` is leader and every running one of them
    /// agrees on it; returns its id.
    pub async fn wait_for_leader(&self, among: &[u64]) -> u64 {
        poll("a leader everyone agrees on", DEADLINE, || async {
            let mut leader = None;
            for &id in among {
                let status = self.status(id).await?;
                let says = status["leader"].as_u64()?;
                if leader.is_some_and(|l| l != says) {
                    return None;
                }
                leader = Some(says);
            }
            let leader = leader?;
            let status = self.status(leader).await?;
            (status["role"] == "leader").then_some(leader)
        })
        .await
    }

    /// A counter or gauge of the node's `/metrics`, or None when it does not answer.
    pub async fn metric(&self, id: u64, name: &str) -> Option<u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_for_applied(&self, id: u64, index: u64) {
        poll(
            &format!("node {id} to apply index {index}"),
            DEADLINE,
            || async {
                let status = self.status(id).await?;
                (status["applied_index"].as_u64()? >= index).then_some(())
            },
        )
        .await
    }

    /// Tail of a node's log, for failure messages.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(&self.node(id).log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "--- log of node {} ---\n{}",
                    node.id,
                    self.log_tail(node.id)
                );
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("RIPTIDE_KEEP_TEST_DIRS").is_some() {
            let path = self.dir.path().to_path_buf();
            eprintln!("keeping test dir {}", path.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("temp dir"),
            ));
        }
    }
}
