//! The `riptide-server` binary's command line: clear errors and exit codes, graceful stop.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Cluster};

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_riptide-server"))
}

/// Runs to completion (bounded) and returns (exit code, stderr).
fn run(command: &mut Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn riptide-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("riptide-server did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_taken_client_port_is_reported_and_the_node_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(server()
        .args(["--id", "1", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client", &format!("127.0.0.1:{port}")])
        .args(["--listen-peer", &format!("127.0.0.1:{}", free_port())]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("port taken"), "{stderr}");
}

#[test]
fn malformed_peer_flag_is_refused_by_the_parser() {
    let (code, stderr) =
        run(server().args(["--id", "1", "--data-dir", "/nonexistent", "--peer", "2"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--peer"), "{stderr}");
}

#[test]
fn own_id_among_the_peers_is_refused() {
    let (code, stderr) = run(server().args([
        "--id",
        "2",
        "--data-dir",
        "/nonexistent",
        "--peer",
        "2=127.0.0.1:1",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("own id"), "{stderr}");
}

#[test]
fn membership_flags_that_contradict_each_other_are_refused() {
    // The initial configuration must name this node; a node that is not in it joins.
    let (code, stderr) = run(server().args([
        "--id",
        "1",
        "--data-dir",
        "/nonexistent",
        "--initial-members",
        "2,3",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--initial-members") && stderr.contains("--join"),
        "{stderr}"
    );
    // A joining node starts with no initial configuration at all.
    let (code, stderr) = run(server().args([
        "--id",
        "4",
        "--data-dir",
        "/nonexistent",
        "--join",
        "http://127.0.0.1:1",
        "--initial-members",
        "1,4",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (code, stderr) = run(server().args([
        "--id",
        "4",
        "--data-dir",
        "/nonexistent",
        "--join-as-learner",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--join <URL>"), "{stderr}");
}

#[test]
fn an_unusable_data_dir_is_reported_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("data");
    let (code, stderr) = run(server()
        .args(["--id", "1", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen-client", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen-peer", &format!("127.0.0.1:{}", free_port())]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&data_dir.display().to_string()), "{stderr}");
}

/// A node whose `snapshot.bin` cannot give back its state refuses to start, and says which
/// file and what is wrong with it: a broken file (its checksum fails), or a sound file whose
/// state machine image does not decode or is of a format this build does not read.
#[test]
fn a_snapshot_that_cannot_be_restored_stops_the_node_naming_the_file_and_the_fault() {
    use riptide_server::kv::{KvStore, SNAPSHOT_FORMAT};
    use riptide_server::raft::{Snapshot, SnapshotMeta};
    use riptide_server::storage::{Storage, SNAPSHOT_FILE};
    let mut future_format = KvStore::new().snapshot();
    future_format[0] = SNAPSHOT_FORMAT + 1;
    let mut garbage = vec![SNAPSHOT_FORMAT];
    garbage.extend_from_slice(&[0xff; 12]);
    let cases: [(&str, Vec<u8>, bool); 3] = [
        ("checksum mismatch", KvStore::new().snapshot(), true),
        ("not a valid KV snapshot", garbage, false),
        ("is not supported", future_format, false),
    ];
    for (fault, data, flip_a_byte) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        let snapshot = Snapshot {
            meta: SnapshotMeta { index: 3, term: 1 },
            membership: None,
            data,
        };
        storage.save_snapshot(&snapshot).unwrap();
        drop(storage);
        let path = dir.path().join(SNAPSHOT_FILE);
        if flip_a_byte {
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x10;
            std::fs::write(&path, bytes).unwrap();
        }
        let (code, stderr) = run(server()
            .args(["--id", "1", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-client", &format!("127.0.0.1:{}", free_port())])
            .args(["--listen-peer", &format!("127.0.0.1:{}", free_port())]));
        assert_eq!(code, Some(1), "{fault}: {stderr}");
        let error = stderr
            .lines()
            .find(|line| line.starts_with("riptide-server: error:"))
            .unwrap_or_else(|| panic!("{fault}: no error line in {stderr}"));
        assert!(
            error.contains(&path.display().to_string()),
            "{fault}: the error does not name {}: {error}",
            path.display()
        );
        assert!(error.contains(fault), "{fault}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_it_restarts_with_its_data() {
    let mut cluster = Cluster::new(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let response = cluster
        .http
        .put(format!("{}/kv/k", cluster.url(1)))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = cluster.stop(1).expect("the node exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        cluster.log_tail(1)
    );
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let value = cluster
        .http
        .get(format!("{}/kv/k", cluster.url(1)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value, "kept");
}
