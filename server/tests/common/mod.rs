//! Helpers for tests that run real `riptide-server` processes on 127.0.0.1.
//!
//! Every process is owned by a [`Cluster`] and killed when it is dropped (also when a test
//! panics). Ports come from binding 127.0.0.1:0 and stay reserved (see [`free_port`]).
//! Conditions are polled with a deadline, never waited for with a fixed sleep. A failed test
//! prints every node's `/status`, `/metrics` and log tail, and keeps its directory (data dirs
//! and whole logs).

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: two shared cores, debug builds, other test suites running at the same time.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The `riptide-server` to run: `RIPTIDE_SERVER_BIN` when set (a private copy, so a stress
/// loop is not disturbed by rebuilds of the shared target dir), else the one cargo built.
pub fn server_binary() -> PathBuf {
    std::env::var_os("RIPTIDE_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_riptide-server")))
}

/// A free port on 127.0.0.1, reserved for this test process until it exits (the project's one
/// port helper, [`riptide_nemesis::free_port`]: a port merely released after the OS picked it
/// was taken now and then by a parallel test's node or an outgoing connection, and the node
/// then could not start).
pub use riptide_nemesis::free_port;

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
    /// `--join URL` and its extra flags, for a node started by [`Cluster::start_joining`]
    /// (kept for its restarts).
    join: Option<Vec<String>>,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

/// Election timeout base of every test cluster, in milliseconds.
pub const TEST_ELECTION_MS: u64 = 500;

/// N nodes configured as one cluster, each started and stopped on demand.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Holds the data dirs and logs; removed at the end unless the test failed or
    /// RIPTIDE_KEEP_TEST_DIRS is set.
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// A client that does not follow redirects, to see the 307s.
    pub http_no_redirect: reqwest::Client,
    /// Extra flags for every node started from now on.
    pub extra_args: Vec<String>,
    /// The initial configuration's voters (`--initial-members`), when not every node is one.
    initial_members: Option<String>,
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
                join: None,
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
            initial_members: None,
        }
    }

    /// `members + spares` nodes of which only the first `members` form the initial
    /// configuration; the spares are known to everyone by `--peer` and can join later
    /// ([`Cluster::start_joining`]).
    pub fn with_spares(members: u64, spares: u64) -> Cluster {
        let mut cluster = Cluster::new(members + spares);
        let initial: Vec<String> = (1..=members).map(|id| id.to_string()).collect();
        cluster.initial_members = Some(initial.join(","));
        cluster
    }

    /// Starts node `id` with `--join` through node `via` (and `extra` flags), and again so
    /// on its restarts.
    pub fn start_joining(&mut self, id: u64, via: u64, extra: &[&str]) {
        let mut join = vec!["--join".to_string(), self.url(via)];
        join.extend(extra.iter().map(|flag| flag.to_string()));
        self.nodes[(id - 1) as usize].join = Some(join);
        self.spawn(id, false);
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
        let mut command = Command::new(server_binary());
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
            // The tests' timing reasoning (and their stable-leader assertions) assume a 500 ms
            // election timeout: on a loaded 2-core CI machine, stalls near the default 150 ms
            // would add elections the tests did not cause. A test's own flag comes later and
            // wins (the server lets a repeated flag override the earlier one).
            .arg(format!("--election-ms={TEST_ELECTION_MS}"))
            .args(&self.extra_args);
        match (&node.join, &self.initial_members) {
            (Some(join), _) => {
                command.args(join);
            }
            (None, Some(initial)) => {
                command.arg("--initial-members").arg(initial);
            }
            (None, None) => {}
        }
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

    /// Waits (bounded by [`DEADLINE`]) until node `id` exits by itself; its exit status.
    pub fn wait_for_exit(&mut self, id: u64) -> std::process::ExitStatus {
        let child = self.nodes[(id - 1) as usize]
            .child
            .as_mut()
            .expect("node was started");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[(id - 1) as usize].child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "node {id} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// `PUT /kv/{key}` on node `id`, redirects followed: the status and the JSON answer
    /// (`Null` when the answer is not JSON).
    pub async fn put(&self, id: u64, key: &str, value: &str) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .put(format!("{}/kv/{key}", self.url(id)))
            .body(value.to_string())
            .send()
            .await
            .expect("PUT");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /{path}` on node `id` (redirects followed): the status and the body.
    pub async fn get_text(&self, id: u64, path: &str) -> (reqwest::StatusCode, String) {
        let response = self
            .http
            .get(format!("{}/{path}", self.url(id)))
            .send()
            .await
            .expect("GET");
        (response.status(), response.text().await.unwrap_or_default())
    }

    /// A PUT that must succeed: its JSON answer.
    pub async fn put_ok(&self, id: u64, key: &str, value: &str) -> Value {
        let (status, body) = self.put(id, key, value).await;
        assert_eq!(status, reqwest::StatusCode::OK, "PUT {key}: {body}");
        body
    }

    /// Waits until node `id` has taken (or installed) a snapshot past `index`.
    pub async fn wait_for_snapshot_past(&self, id: u64, index: u64) {
        poll(
            &format!("node {id} to snapshot past index {index}"),
            DEADLINE,
            || async {
                let snapshot_index = self.status(id).await?["snapshot_index"].as_u64()?;
                (snapshot_index > index).then_some(())
            },
        )
        .await
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

    /// Waits until node `id`'s commit index is `more` past what it is now.
    pub async fn wait_for_more_commits(&self, id: u64, more: u64) {
        let now = self.status(id).await.expect("status")["commit_index"]
            .as_u64()
            .expect("commit_index");
        poll(
            &format!("node {id} to commit {more} more entries"),
            DEADLINE,
            || async {
                let status = self.status(id).await?;
                (status["commit_index"].as_u64()? > now + more).then_some(())
            },
        )
        .await
    }

    /// Asserts that every key of `keys` reads back as itself (a [`writer`]'s keys) through
    /// a linearizable read on node `id`.
    pub async fn assert_keys_hold_themselves(&self, id: u64, keys: &[String]) {
        for key in keys {
            let response = self
                .http
                .get(format!("{}/kv/{key}", self.url(id)))
                .send()
                .await
                .expect("GET");
            assert_eq!(
                response.status(),
                reqwest::StatusCode::OK,
                "acknowledged {key} lost"
            );
            assert_eq!(response.text().await.expect("body"), *key);
        }
    }

    /// Tail of a node's log, for failure messages.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(&self.node(id).log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// What a failed test prints about every node: whether it runs, its `/status` and
    /// `/metrics` as they are now, and the tail of its log. Synchronous, so it also works
    /// from `Drop` while a panic unwinds inside the tokio runtime.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let running = if node.child.is_some() {
                "running"
            } else {
                "stopped"
            };
            out.push_str(&format!("=== node {} ({running}) ===\n", node.id));
            if node.child.is_some() {
                for path in ["/status", "/metrics"] {
                    // Without the metrics' # HELP and # TYPE lines.
                    let answer = match blocking_get(node.client_port, path) {
                        Ok(body) => body
                            .lines()
                            .filter(|line| !line.starts_with('#'))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        Err(e) => format!("(no answer: {e})"),
                    };
                    out.push_str(&format!("--- GET {path} ---\n{answer}\n"));
                }
            }
            out.push_str(&format!(
                "--- last {LOG_TAIL_LINES} lines of {} ---\n{}\n",
                node.log_file.display(),
                self.log_tail(node.id)
            ));
        }
        out
    }
}

/// Writes unique keys (value = key) to whichever node answers 200, moving on to the next node
/// on any other answer, until `stop` is set; returns the acknowledged keys.
pub async fn writer(
    http: reqwest::Client,
    urls: Vec<String>,
    worker: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    let mut node = worker % urls.len();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = format!("w{worker}-{n}");
        n += 1;
        let response = http
            .put(format!("{}/kv/{key}", urls[node]))
            .body(key.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::OK => acknowledged.push(key),
            // Any other answer or a dead node: try the next node after a short pause.
            _ => {
                node = (node + 1) % urls.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acknowledged
}

/// Stops the [`writer`]s and returns every key they had acknowledged; asserts there are more
/// than `at_least`.
pub async fn stop_writers(
    stop: &std::sync::atomic::AtomicBool,
    writers: Vec<tokio::task::JoinHandle<Vec<String>>>,
    at_least: usize,
) -> Vec<String> {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("a writer panicked"));
    }
    assert!(
        acknowledged.len() > at_least,
        "too few writes: {}",
        acknowledged.len()
    );
    acknowledged
}

/// Lines of each node's log a failed test prints (the whole log stays in the kept test dir).
const LOG_TAIL_LINES: usize = 60;

/// A plain HTTP/1.1 GET of `path` on 127.0.0.1:`port` with short timeouts; the body.
fn blocking_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(match response.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => response,
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("{}", self.diagnostics());
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // A failed test keeps its data dirs and whole logs for a post-mortem.
        if failed || std::env::var_os("RIPTIDE_KEEP_TEST_DIRS").is_some() {
            let path = self.dir.path().to_path_buf();
            eprintln!("keeping test dir {}", path.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("temp dir"),
            ));
        }
    }
}
