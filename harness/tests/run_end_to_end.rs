//! End to end: `riptide test` against a real 3-node cluster with partitions and kills, then
//! every artifact of the store checked, and the recorded history checked again on its own.
//!
//! One run (about 12 s of workload) is shared by the tests of this file: the first test to need
//! it starts it, the others wait for it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use riptide_checker::history::{Event, Process};
use riptide_checker::{check_builtin, read_history, BuiltinModel, CheckOptions};
use riptide_nemesis::{FaultFamily, Schedule};

const TIME_LIMIT_MS: u64 = 12_000;
const INTERVAL_MS: u64 = 2_000;

struct SharedRun {
    /// Keeps the store alive for the whole test binary.
    _store: tempfile::TempDir,
    store: PathBuf,
    run_dir: PathBuf,
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A seed whose schedule has both a partition and a kill, so the run exercises both.
fn seed_with_partition_and_kill() -> u64 {
    common::seed_playing(
        "partition,kill",
        INTERVAL_MS,
        None,
        Duration::from_millis(TIME_LIMIT_MS),
        &[FaultFamily::Partition, FaultFamily::Kill],
    )
}

fn shared_run() -> &'static SharedRun {
    static RUN: OnceLock<SharedRun> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    let _guard = START.lock().unwrap_or_else(|p| p.into_inner());
    RUN.get_or_init(|| {
        let server = common::server_bin();
        let store = tempfile::tempdir().unwrap();
        let seed = seed_with_partition_and_kill().to_string();
        let time_limit = format!("{TIME_LIMIT_MS}ms");
        let interval = format!("{INTERVAL_MS}ms");
        let out = common::run_riptide(
            &[
                "test",
                "--nodes",
                "3",
                "--time-limit",
                &time_limit,
                "--nemesis",
                "partition,kill",
                "--nemesis-interval",
                &interval,
                "--concurrency",
                "6",
                "--rate",
                "100",
                "--seed",
                &seed,
                "--store",
                store.path().to_str().unwrap(),
                "--server-bin",
                server.to_str().unwrap(),
                "--name",
                "e2e",
            ],
            &[],
            Duration::from_secs(240),
        );
        let latest = store.path().join("latest");
        let run_dir = std::fs::canonicalize(&latest).unwrap_or(latest);
        SharedRun {
            store: store.path().to_path_buf(),
            _store: store,
            run_dir,
            exit_code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_short_run_with_partitions_and_kills_is_linearizable() {
    let run = shared_run();
    assert_eq!(
        run.exit_code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stdout.trim(), "linearizable");
    assert!(run.stderr.contains("report:"), "{}", run.stderr);
    let results = read_json(&run.run_dir.join("results.json"));
    assert_eq!(results["verdict"], "linearizable");
    assert_eq!(results["exit_code"], 0);
    assert_eq!(results["check"]["verdict"], "linearizable");
    assert!(
        results["stats"]["ok"].as_u64().unwrap() > 100,
        "{}",
        results["stats"]
    );
}

#[test]
fn the_run_folder_follows_the_store_layout() {
    let run = shared_run();
    // histories/<test-name>/<YYYYmmddTHHMMSS>-<seed>/ and histories/latest pointing at it.
    let rel = run
        .run_dir
        .strip_prefix(std::fs::canonicalize(&run.store).unwrap())
        .unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts.len(), 2, "{rel:?}");
    assert_eq!(parts[0], "e2e");
    let (stamp, seed) = parts[1].split_once('-').unwrap();
    assert_eq!(stamp.len(), 15, "{stamp}");
    assert_eq!(&stamp[8..9], "T");
    assert_eq!(seed, seed_with_partition_and_kill().to_string());
    for file in [
        "history.jsonl",
        "config.json",
        "results.json",
        "report.html",
        "schedule.json",
    ] {
        assert!(run.run_dir.join(file).is_file(), "{file} missing");
    }
    for id in 1..=3 {
        let log = run.run_dir.join(format!("nodes/{id}.log"));
        assert!(
            std::fs::metadata(&log).unwrap().len() > 0,
            "{} empty",
            log.display()
        );
        // A passing run keeps no data directories.
        assert!(!run.run_dir.join(format!("nodes/{id}")).exists());
    }
}

#[test]
fn every_artifact_is_well_formed() {
    let run = shared_run();
    let config = read_json(&run.run_dir.join("config.json"));
    assert_eq!(config["nodes"], 3);
    assert_eq!(config["workload"], "kv");
    assert_eq!(config["nemesis"], "partition,kill");
    assert!(config["rerun"].as_str().unwrap().contains("--replay"));

    let schedule =
        Schedule::from_json(&std::fs::read_to_string(run.run_dir.join("schedule.json")).unwrap())
            .expect("schedule.json parses as a nemesis schedule");
    assert!(!schedule.faults.is_empty());

    let results = read_json(&run.run_dir.join("results.json"));
    let faults = results["faults"].as_array().unwrap();
    assert_eq!(
        faults.len(),
        schedule.faults.len(),
        "every planned fault ran"
    );
    let names: Vec<&str> = faults.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with("kill")), "{names:?}");
    for f in faults {
        assert!(f["end_ns"].as_u64().unwrap() > f["start_ns"].as_u64().unwrap());
    }

    // Every history line is an Event; indexes are dense, times never decrease, and each fault
    // has a start and a stop event.
    let text = std::fs::read_to_string(run.run_dir.join("history.jsonl")).unwrap();
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() > 200);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index, i as u64);
    }
    assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
    let nemesis: Vec<&Event> = events
        .iter()
        .filter(|e| e.process == Process::NEMESIS)
        .collect();
    assert_eq!(nemesis.len(), 2 * faults.len());
    assert!(nemesis
        .iter()
        .any(|e| e.f == "start-partition" || e.f == "start-kill"));

    let report = std::fs::read_to_string(run.run_dir.join("report.html")).unwrap();
    assert!(report.starts_with("<!DOCTYPE html>"));
    assert!(report.contains("linearizable"));
    assert!(
        report.matches("<svg").count() >= 3,
        "timeline, latency, throughput"
    );
    for name in &names {
        assert!(report.contains(name), "fault {name} not drawn");
    }
    // Self-contained: no scripts, styles or images from the network.
    assert!(!report.contains("src=\"http"));
    assert!(!report.contains("href=\"http"));
}

/// Jepsen's `:node`: every ok completion of a real run names the node that answered it (after
/// redirects) with its term, commit index and role then, from the node's `Raft-*` headers.
#[test]
fn every_ok_completion_names_the_node_that_answered_and_its_term() {
    let run = shared_run();
    let text = std::fs::read_to_string(run.run_dir.join("history.jsonl")).unwrap();
    let mut oks = 0;
    let mut by_leader = 0;
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["type"] != "ok" || e["process"] == "nemesis" {
            continue;
        }
        oks += 1;
        let node = e["node"]
            .as_str()
            .unwrap_or_else(|| panic!("no node: {line}"));
        assert!(["n1", "n2", "n3"].contains(&node), "{line}");
        assert!(e["term"].as_u64().is_some_and(|t| t >= 1), "{line}");
        assert!(e["commit_index"].as_u64().is_some(), "{line}");
        let role = e["role"]
            .as_str()
            .unwrap_or_else(|| panic!("no role: {line}"));
        assert!(
            ["leader", "follower", "candidate", "precandidate"].contains(&role),
            "{line}"
        );
        by_leader += usize::from(role == "leader");
    }
    assert!(oks > 100, "{oks} ok completions");
    assert!(by_leader > 0);
}

#[test]
fn the_recorded_history_parses_back_and_checks_the_same() {
    let run = shared_run();
    let history = read_history(&run.run_dir.join("history.jsonl"), None).expect("history parses");
    let results = read_json(&run.run_dir.join("results.json"));
    assert_eq!(
        history.operations.len() as u64,
        results["check"]["operations"].as_u64().unwrap()
    );
    assert_eq!(
        history.nemesis.len(),
        2 * results["faults"].as_array().unwrap().len()
    );
    let again = check_builtin(&history, BuiltinModel::Kv, &CheckOptions::default()).unwrap();
    assert_eq!(
        again.verdict.to_string(),
        results["check"]["verdict"]
            .as_str()
            .unwrap()
            .replace('-', " ")
    );
    assert_eq!(
        again.partitions.len(),
        results["check"]["partitions"].as_array().unwrap().len()
    );
}

/// `(f, key)` of the first `n` operations process 0 invoked.
/// The first `n` invocations of process 0: (f, key). A cas falls back to a write when no value
/// of its key is known yet, which depends on what other clients have seen by then (timing, not
/// the seed), so both count as `write`; the seed decides the rest exactly.
fn first_ops_of_process_zero(run_dir: &Path, n: usize) -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap())
        .filter(|e| {
            e.process == Process::Client(0) && e.kind == riptide_checker::history::EventType::Invoke
        })
        .take(n)
        .map(|e| {
            let f = if e.f == "cas" {
                "write".to_string()
            } else {
                e.f
            };
            (f, e.key)
        })
        .collect()
}

#[test]
fn replay_runs_the_same_faults_and_workload_again() {
    let run = shared_run();
    let server = common::server_bin();
    let out = common::run_riptide(
        &[
            "test",
            "--replay",
            run.run_dir.to_str().unwrap(),
            "--store",
            run.store.to_str().unwrap(),
            "--server-bin",
            server.to_str().unwrap(),
            "--quiet",
        ],
        &[],
        Duration::from_secs(240),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let replay_dir = std::fs::read_dir(run.store.join("e2e"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::canonicalize(p).unwrap() != run.run_dir)
        .expect("a second run folder");
    let original = std::fs::read_to_string(run.run_dir.join("schedule.json")).unwrap();
    let replayed = std::fs::read_to_string(replay_dir.join("schedule.json")).unwrap();
    assert_eq!(original, replayed, "the same fault schedule");
    let config = read_json(&replay_dir.join("config.json"));
    assert_eq!(
        config["seed"].to_string(),
        seed_with_partition_and_kill().to_string()
    );
    assert!(config["replay_of"].is_string());
    // The faults ran in the same order, and the workload drew the same operations.
    let kinds = |dir: &Path| -> Vec<String> {
        read_json(&dir.join("results.json"))["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&run.run_dir), kinds(&replay_dir));
    assert_eq!(
        first_ops_of_process_zero(&run.run_dir, 20),
        first_ops_of_process_zero(&replay_dir, 20)
    );
}

#[test]
fn riptide_report_draws_the_counterexample_of_a_corrupted_history() {
    // Make one read of the recorded run return a value nobody wrote, then check again: the
    // verdict flips and the report shows the read as the operation that cannot be linearized.
    let run = shared_run();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("run");
    std::fs::create_dir(&copy).unwrap();
    for file in [
        "config.json",
        "history.jsonl",
        "results.json",
        "schedule.json",
    ] {
        std::fs::copy(run.run_dir.join(file), copy.join(file)).unwrap();
    }
    let text = std::fs::read_to_string(copy.join("history.jsonl")).unwrap();
    let mut corrupted = None;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut e: Event = serde_json::from_str(l).unwrap();
            let is_ok_read = e.kind == riptide_checker::history::EventType::Ok && e.f == "read";
            if corrupted.is_none() && is_ok_read && e.value.is_string() {
                e.value = serde_json::json!("never-written");
                corrupted = Some(e.key.clone());
            }
            serde_json::to_string(&e).unwrap()
        })
        .collect();
    let key = corrupted
        .expect("the run has an ok read of a written value")
        .unwrap();
    std::fs::write(copy.join("history.jsonl"), lines.join("\n") + "\n").unwrap();

    let out = common::run_riptide(
        &["report", copy.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "not linearizable"
    );
    let results = read_json(&copy.join("results.json"));
    assert_eq!(results["verdict"], "not linearizable");
    assert_eq!(results["counterexample"]["key"], key.as_str());
    assert!(!results["counterexample"]["failing"]
        .as_array()
        .unwrap()
        .is_empty());
    // The faults recorded by the run survive the re-check.
    assert_eq!(
        results["faults"],
        read_json(&run.run_dir.join("results.json"))["faults"]
    );
    let report = std::fs::read_to_string(copy.join("report.html")).unwrap();
    assert!(report.contains("<h2>Counterexample</h2>"));
    assert!(report.contains("never-written"));
    assert!(report.contains("CANNOT BE LINEARIZED"));
}

#[test]
fn riptide_report_keeps_the_wall_time_of_the_run() {
    // A re-check rewrites results.json; the run's own duration must survive it, not be
    // replaced by the (much shorter) time the re-check took.
    let run = shared_run();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("run");
    std::fs::create_dir(&copy).unwrap();
    for file in [
        "config.json",
        "history.jsonl",
        "results.json",
        "schedule.json",
    ] {
        std::fs::copy(run.run_dir.join(file), copy.join(file)).unwrap();
    }
    let recorded = read_json(&run.run_dir.join("results.json"))["stats"]["total_ms"].clone();
    assert!(recorded.as_u64().is_some_and(|ms| ms > 1000), "{recorded}");
    let out = common::run_riptide(
        &["report", copy.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read_json(&copy.join("results.json"));
    assert_eq!(results["stats"]["total_ms"], recorded);
}
