//! `riptide test --system etcd`: the harness testing a store it was not written for, a local
//! 3-node etcd cluster (Debian's etcd-server, which CI installs). With etcd's default
//! linearizable reads a run under every kind of fault ends `linearizable`; with its documented
//! serializable reads the harness finds the stale reads; a fault etcd's peer links cannot
//! carry is refused before anything starts.

mod common;

use std::path::Path;
use std::time::Duration;

use riptide_nemesis::FaultFamily;

/// The etcd binary the harness uses by default.
const ETCD: &str = "/usr/bin/etcd";

/// Whether etcd is installed; says why the test does nothing when it is not.
fn etcd_installed(test: &str) -> bool {
    if Path::new(ETCD).is_file() {
        return true;
    }
    eprintln!("{test}: skipped: {ETCD} is absent (apt-get install etcd-server)");
    false
}

/// A short etcd run; returns (exit code, stdout, stderr).
fn etcd_run(store: &Path, seed: u64, extra: &[&str]) -> (Option<i32>, String, String) {
    let seed = seed.to_string();
    let mut args = vec![
        "test",
        "--system",
        "etcd",
        "--time-limit",
        "12s",
        "--nemesis-interval",
        "1500ms",
        "--nemesis-quiet",
        "500ms",
        "--seed",
        &seed,
        "--quiet",
        "--store",
        store.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = common::run_riptide(&args, &[], Duration::from_secs(240));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn etcd_with_linearizable_reads_under_partitions_kills_pauses_and_crashes_is_linearizable() {
    if !etcd_installed("etcd_linearizable") {
        return;
    }
    let faults = "isolate-leader,partition-halves,kill-leader,pause-leader,pause-one,\
                  crash-restart-leader,crash-restart-one";
    let seed = common::seed_playing(
        faults,
        1500,
        Some(500),
        Duration::from_secs(12),
        &[
            FaultFamily::Partition,
            FaultFamily::Kill,
            FaultFamily::Pause,
            FaultFamily::Crash,
        ],
    );
    let store = tempfile::tempdir().unwrap();
    let (code, verdict, stderr) = etcd_run(store.path(), seed, &["--nemesis", faults]);
    assert_eq!(verdict, "linearizable", "seed {seed}; stderr:\n{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    // The run is stored like any other, and says which system it tested.
    let stored =
        |file: &str| std::fs::read_to_string(store.path().join("latest").join(file)).unwrap();
    let config = stored(riptide_harness::store::CONFIG_FILE);
    assert!(config.contains(r#""system": "etcd""#), "{config}");
    // Every ok completion names the member that answered it and the term of its header.
    let history = stored(riptide_harness::store::HISTORY_FILE);
    let oks: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "ok" && e["process"] != "nemesis")
        .collect();
    assert!(!oks.is_empty());
    for e in &oks {
        assert!(
            e["node"].as_str().is_some_and(|n| n.starts_with('n')),
            "{e}"
        );
        assert!(e["term"].as_u64().is_some_and(|t| t >= 1), "{e}");
    }
}

#[test]
fn etcd_with_serializable_reads_is_not_linearizable_within_three_seeds() {
    if !etcd_installed("etcd_serializable") {
        return;
    }
    // An isolated member keeps answering serializable reads from its own, older state.
    let store = tempfile::tempdir().unwrap();
    let mut verdicts = Vec::new();
    for seed in 1..=3 {
        let (code, verdict, stderr) = etcd_run(
            store.path(),
            seed,
            &["--etcd-reads", "serializable", "--nemesis", "isolate-one"],
        );
        if verdict == "not linearizable" {
            assert_eq!(code, Some(1), "{stderr}");
            return;
        }
        verdicts.push(format!("seed {seed}: {verdict}"));
    }
    panic!("serializable reads were never caught: {verdicts:?}");
}

/// A `riptide test` that must be refused while planning: (exit code, stderr).
fn refused_run(extra: &[&str]) -> (Option<i32>, String) {
    let store = tempfile::tempdir().unwrap();
    let mut args = vec!["test", "--time-limit", "2s", "--store"];
    args.push(store.path().to_str().unwrap());
    args.extend_from_slice(extra);
    let out = common::run_riptide(&args, &[], Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_one_way_cut_and_disk_faults_are_refused_for_etcd_with_exit_3() {
    // Refused while planning, before etcd would start: any existing file stands in for it.
    let stand_in = common::riptide_bin();
    for (nemesis, reason) in [
        ("majorities-ring", "one-way"),
        ("kill-one,lose-unsynced", "disk faults"),
    ] {
        let (code, stderr) = refused_run(&[
            "--system",
            "etcd",
            "--etcd-bin",
            stand_in.to_str().unwrap(),
            "--nemesis",
            nemesis,
        ]);
        assert_eq!(code, Some(3), "{nemesis}: {stderr}");
        assert!(stderr.contains("--system etcd cannot apply"), "{stderr}");
        assert!(stderr.contains(reason), "{nemesis}: {stderr}");
    }
}

#[test]
fn etcd_flags_without_system_etcd_are_a_usage_error() {
    let (code, stderr) = refused_run(&["--etcd-reads", "serializable"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("need --system etcd"), "{stderr}");
}
