//! The engine of a run: a [`RunPlan`] in (configuration, fault schedule, the system under
//! test), the run folder and its results out.
//!
//! Phases: start the cluster (every peer link through a nemesis proxy) -> wait for a primary
//! -> workload and nemesis for the time limit -> heal everything (links, paused and killed
//! nodes) -> recovery -> final reads of every key -> stop the cluster -> check the history ->
//! write the results and the report. [`engine`] drives the cluster and records a
//! [`Recording`]; [`analysis`] turns that into results (check, counterexample, statistics,
//! verdict) without touching the cluster.
//!
//! No false green: a node that exited without the nemesis killing it, a crash in a node's log,
//! a checker that did not finish or a run that was interrupted never yields `linearizable`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use riptide_nemesis::Schedule;
use tokio::sync::watch;

use crate::cli::progress::Progress;
use crate::store::{FaultInterval, NodeProblem, RunConfig, RunDir, RunResults};
use crate::system::Db;

pub mod analysis;
pub mod cluster;
pub mod disk;
pub mod engine;
pub mod membership;
pub mod minimal;
pub mod ops;
pub mod recorder;
pub mod replicas;
pub mod sampler;
pub mod schedule;
pub mod workers;
pub mod workload;

/// Everything one run needs, built by `riptide test` from its flags and by a campaign for
/// each of its entries.
pub struct RunPlan {
    /// What `config.json` will hold.
    pub config: RunConfig,
    /// The exact fault schedule (`schedule.json`).
    pub schedule: Schedule,
    /// The system under test.
    pub db: Arc<dyn Db>,
    /// The store the run folder goes into.
    pub store: PathBuf,
    /// No live progress display.
    pub quiet: bool,
}

/// What one run produced: where it is and what it found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub results: RunResults,
}

/// The read-only record of what a run did: its history and what happened around it. The
/// analysis ([`analysis::analyse`]) turns it into results.
#[derive(Default)]
pub struct Recording {
    pub events: Vec<riptide_checker::history::Event>,
    /// Who answered each completion (Jepsen's `:node`), by event index; empty for histories
    /// recorded before it was.
    pub served: std::collections::HashMap<u64, crate::system::Served>,
    /// The wall-clock time (RFC 3339) of the history's time 0, which places the nodes' log
    /// lines on the history's time line; `None` for runs recorded before it was kept.
    pub origin_utc: Option<String>,
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
    /// When (ns since the workload started) every fault had been healed; `None` when the run
    /// never got that far.
    pub healed_ns: Option<u64>,
    /// The first time two replicas showed different digests at the same applied index
    /// ([`replicas`]): a violation whatever the history says.
    pub divergence: Option<replicas::Divergence>,
    /// The names of the fault kinds the schedule planned, in order.
    pub planned_faults: Vec<String>,
    /// The wall time of the whole run when it was recorded earlier (`riptide report` checks a
    /// stored run again: its results keep the run's time, not the re-check's).
    pub recorded_total_ms: Option<u64>,
}

/// Runs one test with a ready configuration and schedule (as `riptide test` does, and as a
/// campaign does for each of its runs): writes the run folder and returns what it found. An
/// error means the store itself could not be written.
pub async fn execute(plan: RunPlan) -> anyhow::Result<RunOutcome> {
    let RunPlan {
        mut config,
        schedule,
        db,
        store,
        quiet,
    } = plan;
    let store = store.as_path();
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
    let mut collected = Recording::default();
    let check_and_report = engine::drive(
        &config,
        &schedule,
        db,
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
    let results = analysis::finish(&config, &mut collected, &run_dir, total_start).await?;
    progress.finish();
    print_summary(&results);
    Ok(RunOutcome {
        run_dir: run_dir.path.clone(),
        results,
    })
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
