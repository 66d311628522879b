//! A real riptide-server with its data dir inside the mount: it serves writes, is killed with
//! SIGKILL, loses everything it had not fsynced, and restarts with every acknowledged write.
//! The node fsyncs before it acknowledges, so nothing acknowledged may be missing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Mounted;

const WRITES: usize = 200;
const DEADLINE: Duration = Duration::from_secs(30);

/// The server binary: `RIPTIDE_SERVER_BIN`, else `riptide-server` beside this crate's binary
/// (`cargo build --release -p riptide-server`, which `.ci/run`'s workspace build does).
fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RIPTIDE_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_faultfs-mount"));
    let server = ours.with_file_name("riptide-server");
    assert!(
        server.is_file(),
        "{} is missing: build it first (cargo build --release -p riptide-server) or set RIPTIDE_SERVER_BIN",
        server.display()
    );
    server
}

/// A port on 127.0.0.1 held (bound with SO_REUSEADDR, not listening) for the test's lifetime,
/// so nothing else takes it between the node's runs; the node binds it with SO_REUSEADDR too.
fn reserve_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("bound address").port();
    (socket, port)
}

/// A running node, killed (SIGKILL) on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data_dir: &Path, client_port: u16, peer_port: u16, log: &Path) -> Node {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(server_bin())
        .arg("--id=1")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(format!("--listen-client=127.0.0.1:{client_port}"))
        .arg(format!("--listen-peer=127.0.0.1:{peer_port}"))
        .arg("--log-level=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("spawn riptide-server");
    Node(child)
}

/// PUTs until one is acknowledged (the single node elects itself first).
async fn put_when_ready(http: &reqwest::Client, url: &str, key: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let sent = http
            .put(format!("{url}/kv/{key}"))
            .body(value.to_string())
            .send()
            .await;
        if matches!(&sent, Ok(r) if r.status() == reqwest::StatusCode::OK) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node never acknowledged a write: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_when_ready(http: &reqwest::Client, url: &str, key: &str) -> Option<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(r) = http.get(format!("{url}/kv/{key}")).send().await {
            match r.status() {
                reqwest::StatusCode::OK => return Some(r.text().await.expect("body")),
                reqwest::StatusCode::NOT_FOUND => return None,
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never answered a read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_mount_keeps_every_acknowledged_write_through_kill_9_and_lose_unsynced() {
    let m = Mounted::new();
    let data_dir = m.path("node1");
    let log = m.dir.path().join("node1.log");
    let (_client_hold, client_port) = reserve_port();
    let (_peer_hold, peer_port) = reserve_port();
    let url = format!("http://127.0.0.1:{client_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let node = start(&data_dir, client_port, peer_port, &log);
    put_when_ready(&http, &url, "k0", "v0").await;
    for i in 1..WRITES {
        let response = http
            .put(format!("{url}/kv/k{i}"))
            .body(format!("v{i}"))
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "PUT k{i}");
    }
    drop(node); // SIGKILL
    let lost = m.fs.lose_unsynced().expect("lose unsynced");
    eprintln!("after kill -9, the power cut dropped {lost:?}");
    assert!(
        std::fs::metadata(m.backing("node1/wal.log"))
            .expect("durable WAL")
            .len()
            > 0,
        "the acknowledged writes reached the backing directory"
    );

    let _node = start(&data_dir, client_port, peer_port, &log);
    for i in 0..WRITES {
        let value = get_when_ready(&http, &url, &format!("k{i}")).await;
        assert_eq!(
            value.as_deref(),
            Some(format!("v{i}").as_str()),
            "acknowledged k{i} after the power cut; node log {}",
            log.display()
        );
    }
}
