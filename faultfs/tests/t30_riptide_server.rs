//! A real riptide-server with its data dir inside the mount: it serves writes, is killed with
//! SIGKILL, loses everything it had not fsynced, and restarts with every acknowledged write.
//! The node fsyncs before it acknowledges, so nothing acknowledged may be missing.

mod common;

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

/// A port on 127.0.0.1 held for the test's lifetime, so nothing else takes it between the
/// node's runs (the node binds it with SO_REUSEADDR).
fn reserve() -> riptide_nemesis::ReservedPort {
    riptide_nemesis::ReservedPort::new().expect("reserving a loopback port")
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

/// One node's setup: the mount, reserved ports, its log (outside the mount) and a client.
struct Rig {
    mounted: Mounted,
    log: PathBuf,
    client_port: u16,
    peer_port: u16,
    _port_holds: [riptide_nemesis::ReservedPort; 2],
    url: String,
    http: reqwest::Client,
}

impl Rig {
    fn new() -> Rig {
        let mounted = Mounted::new();
        let log = mounted.dir.path().join("node1.log");
        let (client_hold, peer_hold) = (reserve(), reserve());
        let (client_port, peer_port) = (client_hold.port(), peer_hold.port());
        Rig {
            mounted,
            log,
            client_port,
            peer_port,
            _port_holds: [client_hold, peer_hold],
            url: format!("http://127.0.0.1:{client_port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    /// Starts the node with its data dir inside the mount.
    fn start(&self) -> Node {
        start(
            &self.mounted.path("node1"),
            self.client_port,
            self.peer_port,
            &self.log,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_mount_keeps_every_acknowledged_write_through_kill_9_and_lose_unsynced() {
    let rig = Rig::new();
    let (m, log, url, http) = (&rig.mounted, &rig.log, &rig.url, &rig.http);

    let node = rig.start();
    put_when_ready(http, url, "k0", "v0").await;
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

    let _node = rig.start();
    for i in 0..WRITES {
        let value = get_when_ready(http, url, &format!("k{i}")).await;
        assert_eq!(
            value.as_deref(),
            Some(format!("v{i}").as_str()),
            "acknowledged k{i} after the power cut; node log {}",
            log.display()
        );
    }
}

/// Runs `WRITERS` PUT loops until the WAL grew by `bytes`, then kills the node (SIGKILL) with
/// writes in flight; returns the keys that were acknowledged.
async fn write_then_kill(
    node: Node,
    http: &reqwest::Client,
    url: &str,
    wal: &Path,
    round: usize,
) -> Vec<String> {
    const WRITERS: usize = 8;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, url) = (http.clone(), url.to_string());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let key = format!("r{round}-w{w}-{i}");
                    match http
                        .put(format!("{url}/kv/{key}"))
                        .body(key.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == reqwest::StatusCode::OK => acked.push(key),
                        _ => break, // the node is gone: an unanswered write was never acknowledged
                    }
                }
                acked
            })
        })
        .collect();
    let grown = std::fs::metadata(wal).expect("WAL").len() + 20_000;
    common::wait_until("the WAL to grow under load", DEADLINE, || {
        std::fs::metadata(wal)
            .map(|md| md.len() > grown)
            .unwrap_or(false)
    });
    drop(node); // SIGKILL in the middle of the load
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_then_torn_keeps_every_acknowledged_write_round_after_round() {
    // Rounds go on until a kill found a write to tear (1 in 3 to 1 in 6 do here), at most this
    // many: the chance that none of them does is below 1e-4.
    const MAX_ROUNDS: usize = 60;
    let rig = Rig::new();
    let (m, log, url, http) = (&rig.mounted, &rig.log, &rig.url, &rig.http);
    let wal = m.path("node1/wal.log");

    let mut acked: Vec<String> = Vec::new();
    let mut tears = 0;
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if tears >= 1 {
            break;
        }
        rounds += 1;
        let node = rig.start();
        put_when_ready(http, url, "ready", "1").await;
        for key in &acked {
            let value = get_when_ready(http, url, key).await;
            assert_eq!(
                value.as_deref(),
                Some(key.as_str()),
                "acknowledged {key} lost by round {round}; node log {}",
                log.display()
            );
        }
        let new = write_then_kill(node, http, url, &wal, round).await;
        assert!(
            !new.is_empty(),
            "round {round}: writes were acknowledged before the kill"
        );
        acked.extend(new);
        let report = m.fs.tear_last_write(round as u64).expect("tear");
        tears += usize::from(report.torn.is_some());
        eprintln!(
            "round {round}: {} acknowledged in all; the power cut did {report:?}",
            acked.len()
        );
    }
    eprintln!("{tears} of {rounds} kills found an unsynced write to tear");
    assert!(
        tears >= 1,
        "no kill in {rounds} landed between a WAL write and its fsync"
    );
    let _node = rig.start();
    for key in &acked {
        let value = get_when_ready(http, url, key).await;
        assert_eq!(
            value.as_deref(),
            Some(key.as_str()),
            "acknowledged {key} lost at the end; node log {}",
            log.display()
        );
    }
}
