//! The new faults against the real node: a power cut finds a node that acknowledges without
//! fsync; a correct node passes a run with every new fault (crash, churn, disk); a corrupted
//! data file is refused by the node, repaired and the run goes on; and the FUSE mounts of a
//! run are gone after the run, after Ctrl-C and after `kill -9` of the harness.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_riptide, server_bin};

/// Disk faults need FUSE; CI installs fuse3 (.ci/run). Without it these tests cannot run at
/// all, and saying so loudly beats passing.
fn require_fuse() {
    if let Err(e) = riptide_faultfs::check_available() {
        panic!("disk-fault tests need FUSE here: {e}");
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|m| m.starts_with(&*dir.to_string_lossy()))
        })
        .map(str::to_string)
        .collect()
}

/// Polls until no mount is left under `dir` (bounded). Mounts left are detached before the
/// test fails, so that they do not outlive it.
fn assert_no_mounts_left(dir: &Path, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = mounts_under(dir);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for line in &left {
                if let Some(mountpoint) = line.split_whitespace().nth(1) {
                    let _ = riptide_faultfs::detach(Path::new(mountpoint));
                }
            }
            panic!("mounts left {after}: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn test_args<'a>(store: &'a str, server: &'a str, nemesis: &'a str, seed: &'a str) -> Vec<&'a str> {
    let faults = [
        "--nemesis",
        nemesis,
        "--nemesis-interval",
        "1s",
        "--nemesis-quiet",
        "500ms",
        "--time-limit",
        "8s",
    ];
    common::quiet_test_args(store, server, &faults, seed)
}

#[test]
fn a_power_cut_finds_a_node_that_acknowledges_without_fsync() {
    require_fuse();
    let found = common::not_linearizable_within_seeds(
        "no-fsync under power-cut,kill-leader",
        &[
            "--nemesis",
            "power-cut,kill-leader",
            "--nemesis-interval",
            "1s",
            "--nemesis-quiet",
            "500ms",
            "--time-limit",
            "8s",
            "--node-arg=--unsafe",
            "--node-arg=--bug=no-fsync",
        ],
        &["1", "2", "3"],
        Duration::from_secs(180),
        &|store| assert_no_mounts_left(store, "after a run"),
    );
    // The kind of failure: acknowledged writes gone, a read that cannot be placed.
    assert!(
        found.stderr.contains("is not linearizable"),
        "{}",
        found.stderr
    );
}

/// A seed whose 12 s schedule of 1 s faults with 500 ms quiet plays each of the three new
/// families at least once.
fn seed_with_every_family() -> u64 {
    use riptide_nemesis::FaultFamily;
    common::seed_playing(
        "crash,churn,disk",
        1000,
        Some(500),
        Duration::from_secs(12),
        &[FaultFamily::Crash, FaultFamily::Churn, FaultFamily::Disk],
    )
}

#[test]
fn a_correct_node_passes_every_new_fault() {
    require_fuse();
    let server = server_bin();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let seed = seed_with_every_family().to_string();
    let mut args = test_args(s, server.to_str().unwrap(), "crash,churn,disk", &seed);
    args[8] = "12s";
    let out = run_riptide(&args, &[], Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "linearizable");
    assert_no_mounts_left(store.path(), "after a run");
    let history = std::fs::read_to_string(store.path().join("latest/history.jsonl")).unwrap();
    for family in ["crash", "churn", "disk"] {
        assert!(
            history.contains(&format!("\"f\":\"start-{family}\"")),
            "no {family} fault ran"
        );
    }
}

#[test]
fn a_node_refuses_its_corrupted_data_and_is_repaired() {
    require_fuse();
    let server = server_bin();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let args = test_args(s, server.to_str().unwrap(), "corrupt", "3");
    let out = run_riptide(&args, &[], Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let history = std::fs::read_to_string(store.path().join("latest/history.jsonl")).unwrap();
    // Every corruption either went unnoticed by a read-free region (the node started) or was
    // refused naming the file, then repaired; at least one refusal in 5 corruptions.
    assert!(
        history.contains("\"f\":\"repair-disk\"") && history.contains("storage failed"),
        "no node refused a corrupted data file:\n{stderr}"
    );
}

/// Starts `riptide test` with disk faults, waits until its nodes' mounts exist, then ends it
/// with `signal`; no mount may outlive it.
fn mounts_go_with_the_harness(signal: nix::sys::signal::Signal) {
    require_fuse();
    let server = server_bin();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let mut args = test_args(s, server.to_str().unwrap(), "disk", "7");
    args[8] = "60s";
    let mut child = Command::new(common::riptide_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mounts_under(store.path()).len() < 3 {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the run never mounted its three nodes' disks");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Into the run proper: the first disk fault has been played (poll the history).
    let history = store.path().join("latest/history.jsonl");
    while !std::fs::read_to_string(&history)
        .unwrap_or_default()
        .contains("\"f\":\"stop-disk\"")
    {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the run never played a disk fault");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    // Ctrl-C heals, stops and checks, which takes a moment; kill -9 ends at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("riptide did not end after {signal}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_mounts_left(store.path(), &format!("after {signal} of the harness"));
}

#[test]
fn no_mount_outlives_ctrl_c_of_the_harness() {
    mounts_go_with_the_harness(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn no_mount_outlives_kill_9_of_the_harness() {
    mounts_go_with_the_harness(nix::sys::signal::Signal::SIGKILL);
}
