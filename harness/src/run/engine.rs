//! Drives the cluster through a run and records what happened: the history (every client
//! operation and nemesis event) and the problems around it. It decides nothing: the
//! [`super::analysis`] does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use riptide_nemesis::Schedule;
use tokio::sync::{watch, Mutex};

use super::cluster::{crash_line, log_tail, Cluster, ClusterSpec};
use super::recorder::Recorder;
use super::workers::{self, WorkerContext};
use super::workload::{Generator, KnownValues};
use super::Recording;
use crate::cli::progress::Progress;
use crate::store::{NodeProblem, RunConfig, RunDir};
use crate::system::{ClientOptions, ClientTimeouts, Completion, Db, NodeSlot};

/// Runs the cluster part of the run, filling `collected`. An error is a run failure; what was
/// collected until then is still checked and reported.
pub async fn drive(
    config: &RunConfig,
    schedule: &Schedule,
    db: Arc<dyn Db>,
    run_dir: &RunDir,
    progress: &Progress,
    stop_rx: watch::Receiver<bool>,
    collected: &mut Recording,
) -> anyhow::Result<()> {
    progress.phase("starting cluster");
    collected.planned_faults = schedule
        .faults
        .iter()
        .map(|f| f.plan.kind().name().to_string())
        .collect();
    let spec = ClusterSpec {
        nodes: config.nodes,
        db: db.clone(),
        run_dir: run_dir.clone(),
        ready_timeout: Duration::from_secs(20),
    };
    // An empty history exists even when the cluster never starts.
    let recorder_path = run_dir.history();
    std::fs::write(&recorder_path, "").context("creating history.jsonl")?;
    let cluster = Cluster::start(&spec)
        .await
        .context("starting the cluster")?;
    let slots = cluster.nodes.clone();
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
        &slots,
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
        if let Some(line) = crash_line(db.as_ref(), log) {
            if !collected
                .node_problems
                .iter()
                .any(|p| p.node == i as u64 + 1)
            {
                collected.node_problems.push(NodeProblem {
                    node: i as u64 + 1,
                    what: format!("crashed: {line}"),
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
    collected: &mut Recording,
    cluster: &Arc<Mutex<Cluster>>,
    slots: &[NodeSlot],
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
    let timeouts = ClientTimeouts {
        attempt: Duration::from_millis(config.attempt_timeout_ms().max(1)),
        ..ClientTimeouts::default()
    };
    let db = cluster.lock().await.db.clone();
    let client = db
        .open_client(
            slots,
            ClientOptions {
                timeouts,
                read_from: config.read_from,
                write_to: config.write_to,
            },
        )
        .context("opening the client")?;
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
        closed_loop: config.closed_loop,
        rate: config.rate,
        op_timeout: Duration::from_millis(config.op_timeout_ms),
        end: t0 + Duration::from_millis(config.time_limit_ms),
    });
    // The workload and the nemesis stop at the time limit, or on Ctrl-C.
    let (phase_stop_tx, phase_stop_rx) = watch::channel(false);
    let nemesis = tokio::spawn(workers::nemesis(
        schedule.clone(),
        cluster.clone(),
        recorder.clone(),
        progress.counters.clone(),
        t0,
        phase_stop_rx.clone(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..config.concurrency {
        workers.spawn(workers::worker(ctx.clone(), w, phase_stop_rx.clone()));
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
    workers::sleep_until_or_stop(end, &mut stop_rx).await;
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
    collected.healed_ns = Some(recorder.now_ns());

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
        let finals = workers::final_reads(&ctx, max_process + 1, Duration::from_secs(10)).await;
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
