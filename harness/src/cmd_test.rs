//! `riptide test`: one Jepsen-style run end to end.
//!
//! Phases: start the cluster (every peer link through a nemesis proxy) -> wait for a leader ->
//! workload and nemesis for the time limit -> heal everything (links, paused and killed nodes)
//! -> recovery -> final reads of every key -> stop the cluster -> check the history -> write
//! the results and the report. Every phase is shown live (see [`crate::progress`]).
//!
//! No false green: a node that exited without the nemesis killing it, a panic in a node's log,
//! a checker that did not finish or a run that was interrupted never yields `linearizable`.
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown, 3 the run itself failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use riptide_checker::{BuiltinModel, CheckOptions, CheckResult, History, Verdict};
use riptide_nemesis::{parse_fault_list, Schedule, ScheduleSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use crate::client::{ClientTimeouts, ClusterClient, Completion, ReadFrom};
use crate::cluster::{log_has_panic, log_tail, Cluster, ClusterSpec};
use crate::console::outln;
use crate::progress::Progress;
use crate::recorder::Recorder;
use crate::report::{CounterexampleView, FaultInterval, NodeProblem, ReportInput};
use crate::runner::{self, WorkerContext};
use crate::store::RunDir;
use crate::workload::{Generator, KnownValues, Workload};

/// Arguments of `riptide test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Number of nodes in the cluster (3 or 5 are the useful sizes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// How long the workload and the nemesis run (e.g. 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub time_limit: Duration,
    /// Number of concurrent client processes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub concurrency: u64,
    /// Target operations per second over all clients (0: as fast as they can).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = Workload::Kv)]
    pub workload: Workload,
    /// Number of keys for the kv and append workloads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub keys: u64,
    /// Faults: a comma-separated list of fault names (partition-halves, isolate-one,
    /// isolate-leader, majorities-ring, bridge, slow-links, throttle-links, kill-one,
    /// kill-minority, kill-leader, pause-one, pause-leader), families (partition, link, kill,
    /// pause), `all` or `none`.
    #[arg(long, default_value = "partition,kill,pause")]
    pub nemesis: String,
    /// Length of each fault and of the quiet period between two faults.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// Length of the quiet period before each fault, when it should differ from
    /// --nemesis-interval (e.g. long pauses with short recoveries, so more faults fit in a run).
    #[arg(long, value_parser = parse_duration)]
    pub nemesis_quiet: Option<Duration>,
    /// Seed of every random choice (workload and faults); random when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Folder of the store of results.
    #[arg(long, default_value = "histories")]
    pub store: PathBuf,
    /// The node binary (default: riptide-server next to this executable, else on PATH).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// An extra flag for every node, e.g. --node-arg=--election-ms=300 (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Re-run a stored run: same parameters, seed and fault schedule (a run folder).
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Name of the test in the store (default: <workload>-<nemesis>).
    #[arg(long)]
    pub name: Option<String>,
    /// Where clients send reads first: `leader`, or `any` node round-robin (a correct
    /// follower redirects; this exposes nodes that answer reads they should not).
    #[arg(long, value_enum, default_value_t = ReadFrom::Leader)]
    pub read_from: ReadFrom,
    /// How long one operation may take, retries included, before it is `info`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// How long one HTTP attempt may wait for an answer before the client tries again
    /// (another node, same Request-Id). Short: clients leave a cut-off leader quickly, and
    /// meet the new one while the old one may still answer.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    pub attempt_timeout: Duration,
    /// How long the healed cluster gets to elect a leader and catch up before the final reads.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// How long the checker may search before the verdict is `unknown`.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// No live progress display.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {text:?} (examples: 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "bad duration unit {other:?} in {text:?} (ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Everything needed to re-run a run: written as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub test_name: String,
    /// Wall-clock start, RFC 3339.
    pub started: String,
    pub seed: u64,
    pub nodes: usize,
    pub time_limit_ms: u64,
    pub concurrency: usize,
    pub rate: f64,
    pub workload: Workload,
    pub keys: usize,
    /// The fault list as given (`--nemesis`).
    pub nemesis: String,
    pub nemesis_interval_ms: u64,
    /// The quiet period before each fault when it differs from the interval (`--nemesis-quiet`).
    #[serde(default)]
    pub nemesis_quiet_ms: Option<u64>,
    pub op_timeout_ms: u64,
    /// One HTTP attempt's timeout (`--attempt-timeout`); absent in runs made before the flag,
    /// which used the client's default.
    #[serde(default)]
    pub attempt_timeout_ms: Option<u64>,
    pub recovery_timeout_ms: u64,
    pub check_timeout_ms: u64,
    pub server_bin: PathBuf,
    pub node_args: Vec<String>,
    /// Where clients send reads first (`--read-from`).
    #[serde(default)]
    pub read_from: ReadFrom,
    /// The run this one replays, if any.
    #[serde(default)]
    pub replay_of: Option<PathBuf>,
    /// The harness version that ran it.
    pub riptide_version: String,
    /// A command that runs it again.
    pub rerun: String,
}

/// How the run ended, as written to `results.json` and as the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunVerdict {
    #[serde(rename = "linearizable")]
    Linearizable,
    #[serde(rename = "not linearizable")]
    NotLinearizable,
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "run failed")]
    RunFailed,
}

impl RunVerdict {
    pub fn exit_code(self) -> u8 {
        match self {
            RunVerdict::Linearizable => 0,
            RunVerdict::NotLinearizable => 1,
            RunVerdict::Unknown => 2,
            RunVerdict::RunFailed => 3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RunVerdict::Linearizable => "linearizable",
            RunVerdict::NotLinearizable => "not linearizable",
            RunVerdict::Unknown => "unknown",
            RunVerdict::RunFailed => "run failed",
        }
    }
}

/// Decides the run's verdict from the checker's and from what went wrong around it: a
/// violation the checker found always stands; anything that makes the run untrustworthy turns
/// `linearizable` or `unknown` into `run failed`.
pub fn combine_verdict(check: Option<Verdict>, run_problems: bool) -> RunVerdict {
    match (check, run_problems) {
        (Some(Verdict::NotLinearizable), _) => RunVerdict::NotLinearizable,
        (_, true) => RunVerdict::RunFailed,
        (Some(Verdict::Linearizable), false) => RunVerdict::Linearizable,
        (Some(Verdict::Unknown), false) => RunVerdict::Unknown,
        (None, false) => RunVerdict::Unknown,
    }
}

/// Counts written to `results.json` and shown at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    pub invocations: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Completed operations per second over the workload phase.
    pub ops_per_sec: f64,
    pub faults_injected: usize,
    pub workload_ms: u64,
    pub check_ms: Option<f64>,
    pub latency_ok_p50_ms: Option<f64>,
    pub latency_ok_p99_ms: Option<f64>,
    pub total_ms: u64,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub verdict: RunVerdict,
    pub exit_code: u8,
    /// Why the verdict is what it is (run failures, node problems, interruptions, the
    /// checker's findings).
    pub reasons: Vec<String>,
    /// The reasons that come from the run itself, not from the checker (kept when the
    /// history is checked again by `riptide report`).
    #[serde(default)]
    pub run_reasons: Vec<String>,
    /// Whether something went wrong around the history (a node died, the run was
    /// interrupted, ...): the verdict can then never be `linearizable`.
    #[serde(default)]
    pub run_problem: bool,
    pub stats: RunStats,
    pub faults: Vec<FaultInterval>,
    pub node_problems: Vec<NodeProblem>,
    /// The checker's full result (per-partition verdicts and counterexamples).
    pub check: Option<CheckResult>,
    /// The counterexample as the report draws it.
    pub counterexample: Option<CounterexampleView>,
}

/// Finds the node binary: the flag, else next to this executable, else on PATH.
pub fn resolve_server_bin(flag: Option<&Path>) -> Result<PathBuf, String> {
    const NAME: &str = "riptide-server";
    let on_path = |name: &Path| -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    if let Some(given) = flag {
        if given.is_file() {
            return Ok(given.to_path_buf());
        }
        if given.components().count() == 1 {
            if let Some(p) = on_path(given) {
                return Ok(p);
            }
        }
        return Err(format!(
            "the server binary {} does not exist (build it with `cargo build --release -p riptide-server`)",
            given.display()
        ));
    }
    let exe = std::env::current_exe().ok();
    if let Some(dir) = exe.as_ref().and_then(|e| e.parent()) {
        // Next to `riptide` (target/release or target/debug), or one up from a test's deps/.
        for candidate in [dir.join(NAME), dir.join("..").join(NAME)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(p) = on_path(Path::new(NAME)) {
        return Ok(p);
    }
    Err(format!(
        "cannot find the server binary {NAME} next to {} or on PATH; build it with \
         `cargo build --release -p riptide-server` or pass --server-bin PATH",
        exe.map(|e| e.display().to_string())
            .unwrap_or_else(|| "this executable".into())
    ))
}

/// Builds the run's configuration from the flags (or from the run being replayed).
pub fn make_config(
    args: &TestArgs,
    server_bin: PathBuf,
) -> anyhow::Result<(RunConfig, Option<Schedule>)> {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(dir) = &args.replay {
        let text = std::fs::read_to_string(dir.join(crate::store::CONFIG_FILE))
            .with_context(|| format!("reading the run to replay in {}", dir.display()))?;
        let mut config: RunConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}/config.json", dir.display()))?;
        let schedule_text = std::fs::read_to_string(dir.join(crate::store::SCHEDULE_FILE))
            .with_context(|| format!("reading {}/schedule.json", dir.display()))?;
        let schedule = Schedule::from_json(&schedule_text)
            .with_context(|| format!("parsing {}/schedule.json", dir.display()))?;
        config.started = started;
        config.server_bin = server_bin;
        config.replay_of = Some(dir.clone());
        config.riptide_version = env!("CARGO_PKG_VERSION").to_string();
        return Ok((config, Some(schedule)));
    }
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Short seeds are easier to read and type.
        (nanos ^ u64::from(std::process::id())) % 1_000_000
    });
    let test_name = args.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            args.workload.name(),
            args.nemesis.replace(',', "+").replace(' ', "")
        )
    });
    let config = RunConfig {
        test_name,
        started,
        seed,
        nodes: args.nodes as usize,
        time_limit_ms: args.time_limit.as_millis() as u64,
        concurrency: args.concurrency as usize,
        rate: args.rate.max(0.0),
        workload: args.workload,
        keys: args.keys as usize,
        nemesis: args.nemesis.clone(),
        nemesis_interval_ms: args.nemesis_interval.as_millis() as u64,
        nemesis_quiet_ms: args.nemesis_quiet.map(|q| q.as_millis() as u64),
        op_timeout_ms: args.op_timeout.as_millis() as u64,
        attempt_timeout_ms: Some(args.attempt_timeout.as_millis() as u64),
        recovery_timeout_ms: args.recovery_timeout.as_millis() as u64,
        check_timeout_ms: args.check_timeout.as_millis() as u64,
        server_bin,
        node_args: args.node_args.clone(),
        read_from: args.read_from,
        replay_of: None,
        riptide_version: env!("CARGO_PKG_VERSION").to_string(),
        rerun: String::new(),
    };
    Ok((config, None))
}

/// Runs `riptide test`; returns the exit code.
pub fn run(args: TestArgs) -> anyhow::Result<u8> {
    let server_bin = match resolve_server_bin(args.server_bin.as_deref()) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("run failed: {msg}");
            return Ok(RunVerdict::RunFailed.exit_code());
        }
    };
    let (config, replayed) = match make_config(&args, server_bin) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("run failed: {e:#}");
            return Ok(RunVerdict::RunFailed.exit_code());
        }
    };
    let schedule = match make_schedule(&config, replayed) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("run failed: {msg}");
            return Ok(RunVerdict::RunFailed.exit_code());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let outcome = runtime.block_on(execute(config, schedule, &args.store, args.quiet))?;
    // The verdict alone on stdout, for scripts; everything else went to stderr.
    outln!("{}", outcome.results.verdict.name());
    eprintln!(
        "report: {}",
        outcome.run_dir.join(crate::store::REPORT_FILE).display()
    );
    Ok(outcome.results.exit_code)
}

/// What one run produced: where it is and what it found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub results: RunResults,
}

/// The fault schedule: replayed, or generated from the seed.
pub fn make_schedule(config: &RunConfig, replayed: Option<Schedule>) -> Result<Schedule, String> {
    if let Some(s) = replayed {
        return Ok(s);
    }
    let faults = parse_fault_list(&config.nemesis).map_err(|e| {
        format!(
            "--nemesis {}: {e} (known: {})",
            config.nemesis,
            riptide_nemesis::fault::known_names()
        )
    })?;
    let spec = ScheduleSpec {
        seed: config.seed,
        faults,
        nodes: config.nodes,
        interval_ms: config.nemesis_interval_ms.max(1),
        options: Default::default(),
    };
    match config.nemesis_quiet_ms {
        None => Schedule::generate(spec, Duration::from_millis(config.time_limit_ms)),
        Some(quiet_ms) => with_quiet_periods(spec, quiet_ms, config.time_limit_ms),
    }
    .map_err(|e| format!("--nemesis {}: {e}", config.nemesis))
}

/// The schedule of `spec` with a quiet period of `quiet_ms` (instead of one interval) before
/// each fault: the same faults in the same order, each still lasting `spec.interval_ms`, as
/// many as end within `run_ms`.
///
/// The nemesis draws fault `k` after faults `0..k` whatever their timing, so generating the
/// regular schedule long enough to hold that many faults and re-timing it keeps the choices
/// (which fault, which node) of the seed.
pub fn with_quiet_periods(
    spec: ScheduleSpec,
    quiet_ms: u64,
    run_ms: u64,
) -> Result<Schedule, riptide_nemesis::NemesisError> {
    let fault_ms = spec.interval_ms.max(1);
    let period_ms = fault_ms.saturating_add(quiet_ms);
    let count = run_ms
        .checked_sub(period_ms)
        .map_or(0, |rest| rest / period_ms + 1);
    // The regular schedule has fault k in [(2k+1)i, (2k+2)i]: `count` faults need 2*count*i.
    let regular_ms = count.saturating_mul(2).saturating_mul(fault_ms);
    let mut schedule = Schedule::generate(spec, Duration::from_millis(regular_ms))?;
    for (k, fault) in schedule.faults.iter_mut().enumerate() {
        fault.start_ms = quiet_ms + k as u64 * period_ms;
        fault.end_ms = fault.start_ms + fault_ms;
    }
    Ok(schedule)
}

/// What the run collected, for results and report.
#[derive(Default)]
pub struct Collected {
    pub events: Vec<riptide_checker::history::Event>,
    pub faults: Vec<FaultInterval>,
    pub node_problems: Vec<NodeProblem>,
    /// Why the run is not trustworthy, or what went wrong around it (not the checker's
    /// findings, which `finish` adds).
    pub reasons: Vec<String>,
    /// Problems that make the run untrustworthy (forces `run failed` unless a violation).
    pub run_problem: bool,
    /// How long the workload ran: the width of the report's plots.
    pub workload_ms: u64,
    pub interrupted: bool,
    /// The wall time of the whole run when it was recorded earlier (`riptide report` checks a
    /// stored run again: its results keep the run's time, not the re-check's).
    pub recorded_total_ms: Option<u64>,
}

/// Runs one test with a ready configuration and schedule (as `riptide test` does, and as a
/// campaign does for each of its runs): writes the run folder and returns what it found. An
/// error means the store itself could not be written.
pub async fn execute(
    mut config: RunConfig,
    schedule: Schedule,
    store: &Path,
    quiet: bool,
) -> anyhow::Result<RunOutcome> {
    let total_start = Instant::now();
    let started_utc = chrono::Utc::now();
    let run_dir = RunDir::create(store, &config.test_name, started_utc, config.seed)
        .with_context(|| format!("creating the run folder in {}", store.display()))?;
    config.rerun = format!(
        "riptide test --replay {} --store {}",
        run_dir.path.display(),
        store.display()
    );
    std::fs::write(run_dir.config(), serde_json::to_string_pretty(&config)?)
        .context("writing config.json")?;
    std::fs::write(run_dir.schedule(), schedule.to_json()).context("writing schedule.json")?;
    if let Err(e) = run_dir.mark_latest(store) {
        tracing::warn!("{e}");
    }
    eprintln!(
        "riptide test: {} nodes, workload {}, nemesis {}, {} faults planned, seed {}, {:.0}s",
        config.nodes,
        config.workload.name(),
        config.nemesis,
        schedule.faults.len(),
        config.seed,
        config.time_limit_ms as f64 / 1000.0
    );
    eprintln!("run folder: {}", run_dir.path.display());

    // Ctrl-C: stop the workload and the nemesis, then heal, stop and write what we have.
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ctrl_c_listener = {
        let stop_tx = stop_tx.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping the cluster and writing what the run has (Ctrl-C again to abort at once)");
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = stop_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    // The supervisor's children die with us (parent-death signal).
                    std::process::exit(130);
                }
            }
        })
    };

    let mut progress = Progress::start(quiet);
    let mut collected = Collected::default();
    let check_and_report = drive(
        &config,
        &schedule,
        &run_dir,
        &progress,
        stop_rx,
        &mut collected,
    )
    .await;
    collected.interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    // The rest (checking, writing) is quick; a campaign's next run installs its own listener.
    ctrl_c_listener.abort();
    if let Err(e) = check_and_report {
        collected.reasons.push(format!("run failed: {e:#}"));
        collected.run_problem = true;
    }
    if collected.interrupted {
        collected
            .reasons
            .push("interrupted by Ctrl-C: the history is incomplete".into());
        collected.run_problem = true;
    }

    progress.phase("checking");
    let results = finish(&config, &mut collected, &run_dir, total_start).await?;
    progress.finish();
    print_summary(&results);
    Ok(RunOutcome {
        run_dir: run_dir.path.clone(),
        results,
    })
}

/// Checks the collected history, then writes `results.json` and `report.html` into the run
/// folder (and drops the nodes' data after a passing run).
pub async fn finish(
    config: &RunConfig,
    collected: &mut Collected,
    run_dir: &RunDir,
    total_start: Instant,
) -> anyhow::Result<RunResults> {
    let run_reasons = collected.reasons.clone();
    let model = match config.workload.model() {
        "append" => BuiltinModel::Append,
        "set" => BuiltinModel::Set,
        _ => BuiltinModel::Kv,
    };
    let check_timeout = Duration::from_millis(config.check_timeout_ms);
    let check_started = Instant::now();
    let check = check_events(&collected.events, model, check_timeout).await;
    let check_ms = check_started.elapsed().as_secs_f64() * 1000.0;
    let (check_result, counterexample) = match check {
        Ok(result) => {
            if result.verdict == Verdict::Unknown {
                for p in result
                    .partitions
                    .iter()
                    .filter(|p| p.verdict == Verdict::Unknown)
                {
                    collected.reasons.push(format!(
                        "checker: key {:?} unknown: {}",
                        p.partition,
                        p.reason.clone().unwrap_or_default()
                    ));
                }
            }
            let cx = counterexample_view(&result, &collected.events);
            if let Some(cx) = &cx {
                collected.reasons.push(format!(
                    "key {} is not linearizable: {}",
                    cx.key.as_deref().unwrap_or("(register)"),
                    cx.explanation.lines().next().unwrap_or_default()
                ));
            }
            (Some(result), cx)
        }
        Err(e) => {
            collected
                .reasons
                .push(format!("checker did not finish: {e}"));
            (None, None)
        }
    };
    // A linearizable partition's full linearization is large and says nothing a person reads;
    // results.json keeps it only for partitions that are not linearizable (the prefix).
    let check_result = check_result.map(|mut r| {
        for p in &mut r.partitions {
            if p.verdict == Verdict::Linearizable {
                p.linearization.clear();
            }
        }
        r
    });
    let verdict = combine_verdict(
        check_result.as_ref().map(|r| r.verdict),
        collected.run_problem,
    );
    let stats = compute_stats(
        collected,
        check_result.as_ref().map(|_| check_ms),
        total_start,
    );
    let results = RunResults {
        verdict,
        exit_code: verdict.exit_code(),
        reasons: collected.reasons.clone(),
        run_reasons,
        run_problem: collected.run_problem,
        stats: stats.clone(),
        faults: collected.faults.clone(),
        node_problems: collected.node_problems.clone(),
        check: check_result,
        counterexample: counterexample.clone(),
    };
    std::fs::write(run_dir.results(), serde_json::to_string_pretty(&results)?)
        .context("writing results.json")?;
    let input = ReportInput {
        title: format!(
            "{} - seed {} - {}",
            config.test_name, config.seed, config.started
        ),
        verdict: verdict.name().to_string(),
        reasons: collected.reasons.clone(),
        parameters: parameters(config, &stats),
        events: &collected.events,
        faults: &collected.faults,
        counterexample: counterexample.as_ref(),
        node_problems: &collected.node_problems,
        partitions: results
            .check
            .iter()
            .flat_map(|c| c.partitions.iter())
            .map(|p| {
                (
                    p.partition.clone(),
                    p.verdict.to_string(),
                    p.operations,
                    p.elapsed_ms,
                )
            })
            .collect(),
        duration_ns: collected.workload_ms * 1_000_000,
    };
    // A bug in drawing must not cost the run its report: fall back to a plain page.
    let html = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::report::render(&input)
    }))
    .unwrap_or_else(|_| {
        format!(
            "<!DOCTYPE html><html><body><h1>{}</h1><p>The report could not be drawn (a bug in \
             riptide); see results.json and history.jsonl.</p></body></html>",
            verdict.name()
        )
    });
    std::fs::write(run_dir.report(), html).context("writing report.html")?;
    // Keep the nodes' data only when someone will want to look at it.
    if verdict == RunVerdict::Linearizable {
        for id in 1..=config.nodes as u64 {
            let _ = std::fs::remove_dir_all(run_dir.node_data(id));
        }
    }

    Ok(results)
}

/// Prints the one-paragraph summary of a run on stderr.
pub fn print_summary(results: &RunResults) {
    let stats = &results.stats;
    eprintln!(
        "{} operations ({} ok, {} fail, {} info), {:.1} ops/s, {} faults, checked in {}",
        stats.invocations,
        stats.ok,
        stats.fail,
        stats.info,
        stats.ops_per_sec,
        stats.faults_injected,
        stats
            .check_ms
            .map(|ms| format!("{:.2}s", ms / 1000.0))
            .unwrap_or_else(|| "-".into())
    );
    for r in &results.reasons {
        eprintln!("  {r}");
    }
}

/// Runs the cluster part of the run, filling `collected`. An error is a run failure; what was
/// collected until then is still checked and reported.
async fn drive(
    config: &RunConfig,
    schedule: &Schedule,
    run_dir: &RunDir,
    progress: &Progress,
    stop_rx: watch::Receiver<bool>,
    collected: &mut Collected,
) -> anyhow::Result<()> {
    progress.phase("starting cluster");
    let spec = ClusterSpec {
        nodes: config.nodes,
        server_bin: config.server_bin.clone(),
        node_args: config.node_args.clone(),
        run_dir: run_dir.clone(),
        ready_timeout: Duration::from_secs(20),
    };
    // An empty history exists even when the cluster never starts.
    let recorder_path = run_dir.history();
    std::fs::write(&recorder_path, "").context("creating history.jsonl")?;
    let cluster = Cluster::start(&spec)
        .await
        .context("starting the cluster")?;
    let client_urls: Vec<String> = cluster.nodes.iter().map(|n| n.client_url.clone()).collect();
    let node_logs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.log.clone()).collect();
    let cluster = Arc::new(Mutex::new(cluster));
    let result = drive_cluster(
        config,
        schedule,
        &recorder_path,
        progress,
        stop_rx,
        collected,
        &cluster,
        client_urls,
    )
    .await;

    // Whatever happened, look for misbehaving nodes, then stop every node.
    progress.phase("stopping cluster");
    let mut guard = cluster.lock().await;
    for (i, what) in guard.unexpected_exits() {
        collected.node_problems.push(NodeProblem {
            node: i as u64 + 1,
            what,
            last_log_lines: log_tail(&node_logs[i], 40),
        });
    }
    guard.stop().await;
    drop(guard);
    for (i, log) in node_logs.iter().enumerate() {
        if let Some(line) = log_has_panic(log) {
            if !collected
                .node_problems
                .iter()
                .any(|p| p.node == i as u64 + 1)
            {
                collected.node_problems.push(NodeProblem {
                    node: i as u64 + 1,
                    what: format!("panicked: {line}"),
                    last_log_lines: log_tail(log, 40),
                });
            }
        }
    }
    for p in &collected.node_problems {
        collected
            .reasons
            .push(format!("node n{} {}", p.node, p.what));
        collected.run_problem = true;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive_cluster(
    config: &RunConfig,
    schedule: &Schedule,
    recorder_path: &Path,
    progress: &Progress,
    stop_rx: watch::Receiver<bool>,
    collected: &mut Collected,
    cluster: &Arc<Mutex<Cluster>>,
    client_urls: Vec<String>,
) -> anyhow::Result<()> {
    progress.phase("waiting for leader");
    let mut interrupt = stop_rx.clone();
    let leader = tokio::select! {
        leader = async { cluster.lock().await.wait_for_leader(Duration::from_secs(30)).await } => leader,
        _ = interrupt.wait_for(|s| *s) => anyhow::bail!("interrupted while waiting for a leader"),
    };
    if leader.is_none() {
        anyhow::bail!("no leader was ever elected (30 s after every node answered /status)");
    }

    progress.phase("running");
    let t0 = Instant::now();
    let recorder = Recorder::create(recorder_path, t0).context("opening history.jsonl")?;
    let mut timeouts = ClientTimeouts::default();
    if let Some(ms) = config.attempt_timeout_ms {
        timeouts.attempt = Duration::from_millis(ms.max(1));
    }
    let client = ClusterClient::new(client_urls, timeouts)
        .context("building the HTTP client")?
        .with_read_from(config.read_from);
    let ctx = Arc::new(WorkerContext {
        client,
        recorder: recorder.clone(),
        generator: Generator {
            workload: config.workload,
            keys: config.keys,
        },
        known: KnownValues::default(),
        counters: progress.counters.clone(),
        seed: config.seed,
        concurrency: config.concurrency,
        rate: config.rate,
        op_timeout: Duration::from_millis(config.op_timeout_ms),
        end: t0 + Duration::from_millis(config.time_limit_ms),
    });
    // The workload and the nemesis stop at the time limit, or on Ctrl-C.
    let (phase_stop_tx, phase_stop_rx) = watch::channel(false);
    let nemesis = tokio::spawn(runner::nemesis(
        schedule.clone(),
        cluster.clone(),
        recorder.clone(),
        progress.counters.clone(),
        t0,
        phase_stop_rx.clone(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..config.concurrency {
        workers.spawn(runner::worker(ctx.clone(), w, phase_stop_rx.clone()));
    }
    // Flush the history every second so an abrupt end loses little.
    let flusher = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                recorder.flush();
            }
        })
    };
    let monitor = {
        let cluster = cluster.clone();
        let counters = progress.counters.clone();
        tokio::spawn(async move {
            let mut reported = std::collections::HashSet::new();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let exits = cluster.lock().await.unexpected_exits();
                for (i, what) in exits {
                    if reported.insert(i) {
                        if let Ok(mut a) = counters.active.lock() {
                            a.push(format!("n{} DIED: {what}", i + 1));
                        }
                    }
                }
            }
        })
    };
    let mut stop_rx = stop_rx;
    let end = t0 + Duration::from_millis(config.time_limit_ms);
    runner::sleep_until_or_stop(end, &mut stop_rx).await;
    let _ = phase_stop_tx.send(true);
    let mut max_process = config.concurrency as u64;
    // Workers finish the operation they are in (bounded by the op timeout).
    let drain = Duration::from_millis(config.op_timeout_ms) + Duration::from_secs(2);
    let _ = tokio::time::timeout(drain, async {
        while let Some(joined) = workers.join_next().await {
            if let Ok(p) = joined {
                max_process = max_process.max(p + 1);
            }
        }
    })
    .await;
    workers.abort_all();
    collected.workload_ms = t0.elapsed().as_millis() as u64;
    progress.phase("healing");
    match nemesis.await {
        Ok(report) => {
            collected.faults = report.faults;
            collected.reasons.extend(report.errors);
        }
        Err(e) => collected.reasons.push(format!("nemesis task failed: {e}")),
    }
    monitor.abort();
    progress.counters.set_active(Vec::new());
    let heal_problems = cluster.lock().await.heal_everything().await;
    if !heal_problems.is_empty() {
        collected.run_problem = true;
        collected.reasons.extend(heal_problems);
    }

    if !*stop_rx.borrow() {
        progress.phase("recovering");
        let recovered = cluster
            .lock()
            .await
            .wait_converged(Duration::from_millis(config.recovery_timeout_ms))
            .await;
        if !recovered {
            collected.reasons.push(format!(
                "the healed cluster did not converge (leader elected, every node caught up) within {} ms",
                config.recovery_timeout_ms
            ));
        }
        progress.phase("final reads");
        let finals = runner::final_reads(&ctx, max_process + 1, Duration::from_secs(10)).await;
        let failed: Vec<String> = finals
            .iter()
            .filter(|(_, c)| !matches!(c, Completion::Ok(_)))
            .map(|(k, c)| format!("{k}: {c:?}"))
            .collect();
        if !failed.is_empty() {
            collected.reasons.push(format!(
                "final reads failed after healing (the cluster did not recover): {}",
                failed.join(", ")
            ));
            collected.run_problem = true;
        }
    }
    flusher.abort();
    if let Some(e) = recorder.finish() {
        collected
            .reasons
            .push(format!("could not write history.jsonl: {e}"));
        collected.run_problem = true;
    }
    collected.events = recorder.snapshot();
    Ok(())
}

/// Checks the events on a blocking thread with a time limit, plus a watchdog in case the
/// checker overruns its own limit.
async fn check_events(
    events: &[riptide_checker::history::Event],
    model: BuiltinModel,
    timeout: Duration,
) -> Result<CheckResult, String> {
    let numbered: Vec<(usize, riptide_checker::history::Event)> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i + 1, e))
        .collect();
    let task = tokio::task::spawn_blocking(move || {
        let history = History::from_events(numbered).map_err(|e| format!("history: {e}"))?;
        let options = CheckOptions {
            time_limit: Some(timeout),
            memory_budget: Some(2 << 30),
            // A verdict for every key, not only up to the first failing one.
            all_partitions: true,
        };
        riptide_checker::check_builtin(&history, model, &options).map_err(|e| e.to_string())
    });
    match tokio::time::timeout(timeout + Duration::from_secs(30), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(format!("the checker crashed: {join}")),
        Err(_) => Err(format!(
            "the checker overran its {} s limit",
            timeout.as_secs()
        )),
    }
}

/// Reduces the checker's first failing partition to what the report draws.
pub fn counterexample_view(
    result: &CheckResult,
    events: &[riptide_checker::history::Event],
) -> Option<CounterexampleView> {
    let failing = result.failures().next()?;
    let cx = failing.counterexample.as_ref()?;
    // Operation ids -> invoke event indices: the history's line numbers are 1-based event
    // positions, and the harness writes one event per line with index = position.
    let history =
        History::from_events(events.iter().cloned().enumerate().map(|(i, e)| (i + 1, e))).ok()?;
    let invoke_index = |id: usize| {
        history
            .operations
            .get(id)
            .map(|op| op.invoke_line as u64 - 1)
    };
    let mut failing_ops: Vec<u64> = Vec::new();
    if let Some(b) = &cx.blocked_by {
        failing_ops.extend(invoke_index(b.id));
    }
    for c in &cx.candidates {
        if let Some(i) = invoke_index(c.op.id) {
            if !failing_ops.contains(&i) {
                failing_ops.push(i);
            }
        }
    }
    let mut explanation = String::new();
    if let Some(b) = &cx.blocked_by {
        explanation.push_str(&format!(
            "p{} {} (line {}) had completed but cannot be linearized after the longest prefix\n",
            b.process, b.description, b.invoke_line
        ));
    } else {
        explanation.push_str("no operation can be linearized after the longest prefix\n");
    }
    for c in &cx.candidates {
        explanation.push_str(&format!(
            "  candidate p{} {} (line {}): model {}\n",
            c.op.process,
            c.op.description,
            c.op.invoke_line,
            if c.model_accepts {
                "accepts it, but every continuation fails"
            } else {
                "refuses it in this state"
            }
        ));
    }
    explanation.push_str(&format!(
        "state after the prefix: {}\n",
        cx.states.join(" | ")
    ));
    Some(CounterexampleView {
        key: (!failing.partition.is_empty()).then(|| failing.partition.clone()),
        prefix: cx
            .prefix
            .iter()
            .filter_map(|id| invoke_index(*id))
            .collect(),
        failing: failing_ops,
        state: cx.states.join("\n"),
        explanation,
    })
}

fn compute_stats(collected: &Collected, check_ms: Option<f64>, total_start: Instant) -> RunStats {
    let ops = crate::report::pair_ops(&collected.events);
    let mut stats = RunStats {
        invocations: ops.len() as u64,
        faults_injected: collected.faults.len(),
        workload_ms: collected.workload_ms,
        check_ms,
        total_ms: collected
            .recorded_total_ms
            .unwrap_or_else(|| total_start.elapsed().as_millis() as u64),
        ..Default::default()
    };
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).ok();
    let workload_ns = collected.workload_ms * 1_000_000;
    let mut completed_in_workload = 0u64;
    for op in &ops {
        match op.outcome {
            riptide_checker::history::EventType::Ok => stats.ok += 1,
            riptide_checker::history::EventType::Fail => stats.fail += 1,
            _ => stats.info += 1,
        }
        if let Some(end) = op.end_ns {
            if end <= workload_ns {
                completed_in_workload += 1;
            }
            if op.outcome == riptide_checker::history::EventType::Ok {
                if let Some(h) = hist.as_mut() {
                    let _ = h.record((end.saturating_sub(op.start_ns) / 1000).max(1));
                }
            }
        }
    }
    if collected.workload_ms > 0 {
        stats.ops_per_sec = completed_in_workload as f64 * 1000.0 / collected.workload_ms as f64;
    }
    if let Some(h) = hist.filter(|h| !h.is_empty()) {
        stats.latency_ok_p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
        stats.latency_ok_p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
    }
    stats
}

fn parameters(config: &RunConfig, stats: &RunStats) -> Vec<(String, String)> {
    let ms = |v: u64| format!("{:.1} s", v as f64 / 1000.0);
    let opt_ms = |v: Option<f64>| {
        v.map(|x| format!("{x:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    vec![
        ("test".into(), config.test_name.clone()),
        ("started".into(), config.started.clone()),
        ("seed".into(), config.seed.to_string()),
        ("nodes".into(), config.nodes.to_string()),
        (
            "workload".into(),
            format!("{} ({} keys)", config.workload.name(), config.keys),
        ),
        ("time limit".into(), ms(config.time_limit_ms)),
        ("concurrency".into(), config.concurrency.to_string()),
        ("rate".into(), format!("{} ops/s target", config.rate)),
        ("nemesis".into(), config.nemesis.clone()),
        ("nemesis interval".into(), ms(config.nemesis_interval_ms)),
        (
            "quiet before each fault".into(),
            ms(config
                .nemesis_quiet_ms
                .unwrap_or(config.nemesis_interval_ms)),
        ),
        ("op timeout".into(), ms(config.op_timeout_ms)),
        (
            "attempt timeout".into(),
            ms(config
                .attempt_timeout_ms
                .unwrap_or(ClientTimeouts::default().attempt.as_millis() as u64)),
        ),
        (
            "server binary".into(),
            config.server_bin.display().to_string(),
        ),
        ("node args".into(), config.node_args.join(" ")),
        (
            "reads sent to".into(),
            match config.read_from {
                ReadFrom::Leader => "the leader".into(),
                ReadFrom::Any => "any node (round-robin)".into(),
            },
        ),
        (
            "sustained".into(),
            format!("{:.1} ops/s", stats.ops_per_sec),
        ),
        (
            "ok latency p50 / p99".into(),
            format!(
                "{} / {}",
                opt_ms(stats.latency_ok_p50_ms),
                opt_ms(stats.latency_ok_p99_ms)
            ),
        ),
        ("checking time".into(), opt_ms(stats.check_ms)),
        ("re-run".into(), config.rerun.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_checker::history::{Event, EventType, Process};

    #[test]
    fn durations_accept_the_usual_units() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn quiet_periods_retime_the_same_faults_within_the_run() {
        let spec = ScheduleSpec {
            seed: 4,
            faults: parse_fault_list("pause-leader,kill-one,isolate-one").unwrap(),
            nodes: 3,
            interval_ms: 3000,
            options: Default::default(),
        };
        let regular = Schedule::generate(spec.clone(), Duration::from_secs(120)).unwrap();
        let quick = with_quiet_periods(spec, 500, 30_000).unwrap();
        // 500 ms quiet + 3 s fault, eight times, ends at 28 s; a ninth would end at 31.5 s.
        assert_eq!(quick.faults.len(), 8);
        for (k, fault) in quick.faults.iter().enumerate() {
            assert_eq!(fault.start_ms, 500 + 3500 * k as u64);
            assert_eq!(fault.end_ms, fault.start_ms + 3000);
            assert_eq!(fault.plan, regular.faults[k].plan, "fault {k}");
        }
        let none = with_quiet_periods(quick.spec.clone(), 500, 3000).unwrap();
        assert!(none.faults.is_empty());
    }

    #[test]
    fn a_violation_always_stands_and_problems_never_give_green() {
        assert_eq!(
            combine_verdict(Some(Verdict::Linearizable), false),
            RunVerdict::Linearizable
        );
        assert_eq!(
            combine_verdict(Some(Verdict::Linearizable), true),
            RunVerdict::RunFailed
        );
        assert_eq!(
            combine_verdict(Some(Verdict::Unknown), true),
            RunVerdict::RunFailed
        );
        assert_eq!(
            combine_verdict(Some(Verdict::NotLinearizable), true),
            RunVerdict::NotLinearizable
        );
        assert_eq!(combine_verdict(None, false), RunVerdict::Unknown);
        assert_eq!(RunVerdict::RunFailed.exit_code(), 3);
    }

    #[test]
    fn a_missing_server_binary_is_named_in_the_error() {
        let err = resolve_server_bin(Some(Path::new("/nonexistent/riptide-server"))).unwrap_err();
        assert!(err.contains("/nonexistent/riptide-server"), "{err}");
    }

    fn event(
        index: u64,
        process: u64,
        kind: EventType,
        f: &str,
        value: serde_json::Value,
    ) -> Event {
        Event {
            index,
            time: index * 1000,
            process: Process::Client(process),
            kind,
            f: f.into(),
            key: Some("k1".into()),
            value,
            error: None,
        }
    }

    #[test]
    fn the_counterexample_names_the_read_that_saw_a_value_never_written() {
        use serde_json::json;
        let events = vec![
            event(0, 0, EventType::Invoke, "write", json!("p0-1")),
            event(1, 0, EventType::Ok, "write", json!("p0-1")),
            event(2, 1, EventType::Invoke, "read", json!(null)),
            event(3, 1, EventType::Ok, "read", json!("p9-9")),
        ];
        let numbered = events.iter().cloned().enumerate().map(|(i, e)| (i + 1, e));
        let history = History::from_events(numbered).unwrap();
        let result =
            riptide_checker::check_builtin(&history, BuiltinModel::Kv, &CheckOptions::default())
                .unwrap();
        assert_eq!(result.verdict, Verdict::NotLinearizable);
        let cx = counterexample_view(&result, &events).expect("a counterexample");
        assert_eq!(cx.key.as_deref(), Some("k1"));
        // The write linearizes; the read (invoked at event 2) cannot follow it.
        assert_eq!(cx.prefix, vec![0]);
        assert!(cx.failing.contains(&2), "{cx:?}");
        assert!(cx.state.contains("p0-1"), "{cx:?}");
    }

    #[test]
    fn verdicts_serialize_as_the_store_lists_them() {
        assert_eq!(
            serde_json::to_string(&RunVerdict::NotLinearizable).unwrap(),
            "\"not linearizable\""
        );
        assert_eq!(
            serde_json::to_string(&RunVerdict::RunFailed).unwrap(),
            "\"run failed\""
        );
    }
}
