//! Helpers shared by the harness's integration tests: finding (or building) the real
//! `riptide-server` binary, and running `riptide` with a time bound.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `riptide` binary under test.
pub fn riptide_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_riptide"))
}

/// The real node binary: `RIPTIDE_SERVER_BIN` when set, else `riptide-server` next to
/// `riptide` in the same target profile folder, built with `cargo build -p riptide-server`
/// (same profile, same target folder) when it is not there yet, as under
/// `cargo test -p riptide-harness`.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RIPTIDE_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let riptide = riptide_bin();
    let profile_dir = riptide.parent().expect("riptide has a parent folder");
    let server = profile_dir.join("riptide-server");
    if server.is_file() {
        return server;
    }
    let target_dir = profile_dir.parent().expect("profile folder has a parent");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "riptide-server", "--bin", "riptide-server"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("running cargo build -p riptide-server");
    assert!(status.success(), "cargo build -p riptide-server failed");
    assert!(
        server.is_file(),
        "{} missing after the build",
        server.display()
    );
    server
}

/// Runs `riptide` with `args`, killing it after `limit`.
pub fn run_riptide(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    run_bin(&riptide_bin(), args, env, limit)
}

/// Runs `bin` with `args`, killing it after `limit` (the test then fails on its output).
pub fn run_bin(bin: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning riptide");
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for riptide") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_thread.join().unwrap_or_default();
            panic!(
                "riptide did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// The first seed below 1,000 whose schedule (`faults` on 3 nodes, `interval_ms` faults with
/// `quiet_ms` of quiet, over `run`) plays every family in `families`, so a short test run
/// exercises each of them.
pub fn seed_playing(
    faults: &str,
    interval_ms: u64,
    quiet_ms: Option<u64>,
    run: Duration,
    families: &[riptide_nemesis::FaultFamily],
) -> u64 {
    use riptide_nemesis::{parse_fault_list, Schedule, ScheduleSpec};
    let faults = parse_fault_list(faults).expect("a valid fault list");
    (0..1000)
        .find(|&seed| {
            let spec = ScheduleSpec {
                seed,
                faults: faults.clone(),
                nodes: 3,
                interval_ms,
                quiet_ms,
                options: Default::default(),
            };
            let s = Schedule::generate(spec, run).expect("a schedule");
            families
                .iter()
                .all(|f| s.faults.iter().any(|x| x.plan.kind().family() == *f))
        })
        .unwrap_or_else(|| panic!("no seed below 1000 plays every one of {families:?}"))
}

/// Runs `riptide test` with `args` plus `--seed seed`, the store `store`, the node binary of
/// this build and `--quiet` (stdout is then the verdict alone).
pub fn run_test_quietly(store: &Path, args: &[&str], seed: &str, limit: Duration) -> Output {
    let server = server_bin();
    let server = server.to_str().expect("a UTF-8 path");
    let store = store.to_str().expect("a UTF-8 path");
    run_riptide(&quiet_test_args(store, server, args, seed), &[], limit)
}

/// The arguments of [`run_test_quietly`]: `test`, then `args`, then the seed, the store, the
/// node binary `server` and `--quiet`.
pub fn quiet_test_args<'a>(
    store: &'a str,
    server: &'a str,
    args: &[&'a str],
    seed: &'a str,
) -> Vec<&'a str> {
    let mut full: Vec<&str> = vec!["test"];
    full.extend_from_slice(args);
    full.extend([
        "--seed",
        seed,
        "--store",
        store,
        "--server-bin",
        server,
        "--quiet",
    ]);
    full
}

/// One `riptide test` run of [`run_test_quietly`] in a fresh temporary store.
struct SeedRun {
    store: tempfile::TempDir,
    code: Option<i32>,
    /// The verdict line, trimmed.
    stdout: String,
    stderr: String,
}

fn run_seed(args: &[&str], seed: &str, limit: Duration) -> SeedRun {
    let store = tempfile::tempdir().expect("a temporary store");
    let out = run_test_quietly(store.path(), args, seed, limit);
    SeedRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        store,
    }
}

/// The `results.json` of the latest run in `store`.
fn latest_results(store: &Path) -> serde_json::Value {
    let results = std::fs::read_to_string(store.join("latest/results.json"))
        .expect("results.json of the run");
    serde_json::from_str(&results).expect("results.json is JSON")
}

/// Runs `riptide test` as [`run_test_quietly`] does in a fresh temporary store, asserts that it
/// ended `linearizable` (exit 0), and returns the store.
pub fn linearizable_run(
    what: &str,
    args: &[&str],
    seed: &str,
    limit: Duration,
) -> tempfile::TempDir {
    let run = run_seed(args, seed, limit);
    assert_eq!(
        run.code,
        Some(0),
        "{what}, seed {seed}: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stdout, "linearizable", "{what}, seed {seed}");
    run.store
}

/// A run that ended `not linearizable`, kept until dropped.
pub struct NotLinearizableRun {
    pub store: tempfile::TempDir,
    /// What `riptide` printed on stderr (the violation's summary).
    pub stderr: String,
    /// Its `results.json`, with a counterexample.
    pub results: serde_json::Value,
}

/// Runs `riptide test` with `args` (the store, node binary, seed and `--quiet` are added) for
/// each seed in turn until one run ends `not linearizable`, and returns that run's store (a
/// temporary folder) with its stderr. A run that ends `linearizable` is bad luck and the next
/// seed is tried, and so is one that ends `replicas diverged` (the bug found, but not the kind
/// of failure this test is about); anything else (unknown, a failed run) fails the test at
/// once, and so does no
/// seed finding the bug: a harness that stopped seeing it passes every run. `after_each` sees
/// every run's store (e.g. to check that no mount is left). The run found must have a
/// `results.json` with the verdict and a counterexample, and a `minimal.jsonl` (see
/// [`assert_minimal_history`]).
pub fn not_linearizable_within_seeds(
    what: &str,
    args: &[&str],
    seeds: &[&str],
    limit: Duration,
    after_each: &dyn Fn(&Path),
) -> NotLinearizableRun {
    let mut verdicts = Vec::new();
    for seed in seeds {
        let SeedRun {
            store,
            code,
            stdout,
            stderr,
        } = run_seed(args, seed, limit);
        after_each(store.path());
        if code == Some(1) && stdout == "replicas diverged" {
            verdicts.push(format!("seed {seed}: {stdout}"));
            continue;
        }
        if code == Some(1) {
            assert_eq!(stdout, "not linearizable", "{what}, seed {seed}: {stderr}");
            // The run folder holds the evidence: a results.json naming the violation.
            let results = latest_results(store.path());
            assert_eq!(results["verdict"], "not linearizable");
            assert!(results["counterexample"].is_object(), "{results}");
            assert_minimal_history(&store.path().join("latest"), what);
            return NotLinearizableRun {
                store,
                stderr,
                results,
            };
        }
        assert_eq!(code, Some(0), "{what}, seed {seed}: {stdout}\n{stderr}");
        verdicts.push(format!("seed {seed}: {stdout}"));
    }
    panic!("{what}: not found in {} runs: {verdicts:?}", seeds.len());
}

/// As [`not_linearizable_within_seeds`] for a run that must end `replicas diverged` (exit 1):
/// its `results.json` names the divergence (two nodes' digests at one applied index). A run
/// that ends `linearizable` or `not linearizable` is tried again with the next seed.
pub fn diverged_within_seeds(
    what: &str,
    args: &[&str],
    seeds: &[&str],
    limit: Duration,
) -> serde_json::Value {
    let mut verdicts = Vec::new();
    for seed in seeds {
        let run = run_seed(args, seed, limit);
        let (stdout, stderr) = (&run.stdout, &run.stderr);
        assert!(
            matches!(run.code, Some(0) | Some(1)),
            "{what}, seed {seed}: {stdout}\n{stderr}"
        );
        if stdout == "replicas diverged" {
            assert_eq!(run.code, Some(1), "{what}, seed {seed}: {stderr}");
            let results = latest_results(run.store.path());
            assert_eq!(results["verdict"], "replicas diverged");
            assert!(
                results["divergence"]["applied_index"].as_u64() > Some(0),
                "{results}"
            );
            assert!(
                stderr.contains("replicas diverged at applied index"),
                "{what}, seed {seed}: {stderr}"
            );
            return results;
        }
        verdicts.push(format!("seed {seed}: {stdout}"));
    }
    panic!(
        "{what}: no divergence in {} runs: {verdicts:?}",
        seeds.len()
    );
}

/// A failing run's `minimal.jsonl` (written by the run itself, within its shrink budget): it
/// exists, holds a few operations where the history has thousands (at most 30, and at most a
/// twentieth), and `riptide check` finds it not linearizable on its own.
pub fn assert_minimal_history(run: &Path, what: &str) {
    let invokes = |text: &str| text.matches(r#""type":"invoke""#).count();
    let history = std::fs::read_to_string(run.join("history.jsonl")).expect("history.jsonl");
    let minimal = std::fs::read_to_string(run.join("minimal.jsonl"))
        .unwrap_or_else(|e| panic!("{what}: no minimal.jsonl in the failing run: {e}"));
    let (small, all) = (invokes(&minimal), invokes(&history));
    assert!(
        (1..=30).contains(&small) && small * 20 <= all,
        "{what}: minimal.jsonl has {small} operations, the history {all}"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("config.json")).expect("config.json"),
    )
    .expect("config.json is JSON");
    let model = match config["workload"].as_str() {
        Some("append") => "append",
        Some("set") => "set",
        _ => "kv",
    };
    let path = run.join("minimal.jsonl");
    let out = run_riptide(
        &[
            "check",
            path.to_str().expect("a UTF-8 path"),
            "--model",
            model,
        ],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: minimal.jsonl re-checked: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short run that finds `stale-follower-reads` within seconds: reads spread over every node
/// and a follower cut off (`isolate-one`) keeps answering values the majority has overwritten.
const STALE_FOLLOWER_READS_RUN: &[&str] = &[
    "--workload",
    "kv",
    "--keys",
    "3",
    "--nemesis",
    "isolate-one",
    "--nemesis-interval",
    "1s",
    "--time-limit",
    "6s",
    "--read-from",
    "any",
    "--node-arg=--unsafe",
    "--node-arg=--bug=stale-follower-reads",
];

/// A failing run of `stale-follower-reads` ([`STALE_FOLLOWER_READS_RUN`], up to three seeds).
pub fn stale_follower_read_run() -> NotLinearizableRun {
    not_linearizable_within_seeds(
        "stale-follower-reads under isolate-one",
        STALE_FOLLOWER_READS_RUN,
        &["11", "12", "13"],
        Duration::from_secs(120),
        &|_| {},
    )
}
