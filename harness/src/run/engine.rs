//! Drives the cluster through a run and records what happened: the history (every client
//! operation and nemesis event) and the problems around it. It decides nothing: the
//! [`super::analysis`] does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use riptide_nemesis::Schedule;
use riptide_nemesis::{NoticeKind, Targets};
use tokio::sync::watch;

use super::cluster::{crash_line, log_tail, Cluster, ClusterSpec};
use super::recorder::Recorder;
use super::replicas::DigestBook;
use super::workers::{self, WorkerContext};
use super::workload::{Generator, KnownValues};
use super::Recording;
use crate::cli::progress::Counters;
use crate::cli::progress::Progress;
use crate::store::FaultInterval;
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
        disks: super::disk::schedule_needs_disks(schedule),
        spares: if has_membership_faults(schedule) {
            super::membership::DEFAULT_SPARES
        } else {
            0
        },
    };
    // An empty history exists even when the cluster never starts.
    let recorder_path = run_dir.history();
    std::fs::write(&recorder_path, "").context("creating history.jsonl")?;
    let cluster = Cluster::start(&spec)
        .await
        .context("starting the cluster")?;
    let slots = cluster.nodes.clone();
    let node_logs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.log.clone()).collect();
    let cluster = Arc::new(cluster);
    let result = drive_cluster(
        config,
        schedule,
        &recorder_path,
        &run_dir.cluster_samples(),
        progress,
        stop_rx,
        collected,
        &cluster,
        &slots,
    )
    .await;

    // Whatever happened, look for misbehaving nodes, then stop every node.
    progress.phase("stopping cluster");
    // A node that refuses to start on data a `corrupt` fault damaged, naming what is damaged,
    // does what it must; any other exit of its own is a problem.
    let corrupted: Vec<usize> = schedule
        .faults
        .iter()
        .flat_map(|f| match f.plan {
            riptide_nemesis::FaultPlan::Corrupt { node, .. } => vec![node],
            riptide_nemesis::FaultPlan::CorruptAll { .. } => (0..config.nodes).collect(),
            _ => Vec::new(),
        })
        .collect();
    for (i, what) in cluster.unexpected_exits().await {
        let tail = log_tail(&node_logs[i], 40);
        match db.damaged_data_refusal(&tail) {
            Some(line) if corrupted.contains(&i) => collected.reasons.push(format!(
                "node n{} refused to start on its corrupted data, as it must: {line}",
                i + 1
            )),
            _ => collected.node_problems.push(NodeProblem {
                node: i as u64 + 1,
                what,
                last_log_lines: tail,
            }),
        }
    }
    cluster.stop().await;
    if let Some(disks) = &cluster.disks {
        for problem in disks.unmount_all() {
            collected.reasons.push(problem);
            collected.run_problem = true;
        }
    }
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
    samples_path: &Path,
    progress: &Progress,
    stop_rx: watch::Receiver<bool>,
    collected: &mut Recording,
    cluster: &Arc<Cluster>,
    slots: &[NodeSlot],
) -> anyhow::Result<()> {
    progress.phase("waiting for leader");
    let mut interrupt = stop_rx.clone();
    let leader = tokio::select! {
        leader = cluster.wait_for_leader(Duration::from_secs(30)) => leader,
        _ = interrupt.wait_for(|s| *s) => anyhow::bail!("interrupted while waiting for a leader"),
    };
    if leader.is_none() {
        anyhow::bail!("no leader was ever elected (30 s after every node answered /status)");
    }

    progress.phase("running");
    let t0 = Instant::now();
    collected.origin_utc =
        Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let recorder = Recorder::create(recorder_path, t0).context("opening history.jsonl")?;
    let timeouts = ClientTimeouts {
        attempt: Duration::from_millis(config.attempt_timeout_ms().max(1)),
        ..ClientTimeouts::default()
    };
    let db = cluster.db.clone();
    let client = db
        .open_client(
            slots,
            ClientOptions {
                timeouts,
                read_from: config.read_from,
                write_to: config.write_to,
                targets: Some(cluster.client_targets.clone()),
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
    let nemesis = tokio::spawn(play_nemesis(
        schedule.clone(),
        cluster.clone(),
        recorder.clone(),
        progress.counters.clone(),
        t0,
        phase_stop_rx.clone(),
    ));
    let digests = Arc::new(std::sync::Mutex::new(DigestBook::default()));
    let sampler = super::sampler::start(
        cluster.clone(),
        recorder.clone(),
        samples_path,
        digests.clone(),
    );
    let mut sampler = match sampler {
        Ok(tasks) => Some(tasks),
        Err(e) => {
            tracing::warn!("cannot write cluster.jsonl: {e}; the run goes on without it");
            None
        }
    };
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
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let mut reported = std::collections::HashSet::new();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let exits = cluster.unexpected_exits().await;
                for (i, what) in exits {
                    if repair_refused_disk(&cluster, &recorder, i).await {
                        continue;
                    }
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
    if let Some(tasks) = sampler.as_mut() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    progress.counters.set_active(Vec::new());
    let heal_problems = cluster.heal_everything().await;
    if !heal_problems.is_empty() {
        collected.run_problem = true;
        collected.reasons.extend(heal_problems);
    }
    if has_membership_faults(schedule) && !*stop_rx.borrow() {
        progress.phase("healing membership");
        let (done, healed) = cluster.heal_membership().await;
        let mut value = if done.is_empty() {
            "membership as it began: nothing to heal".to_string()
        } else {
            done.join("; ")
        };
        if !healed {
            value.push_str(" (the configuration is not back to the initial voters)");
            collected
                .reasons
                .push(format!("membership heal incomplete: {value}"));
        }
        workers::record_nemesis(&recorder, "heal-membership".into(), value);
    }
    collected.healed_ns = Some(recorder.now_ns());

    if !*stop_rx.borrow() {
        progress.phase("recovering");
        let recovered = cluster
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
        progress.phase("comparing replicas");
        let met = cluster
            .compare_replicas(&digests, || recorder.now_ns(), Duration::from_secs(10))
            .await;
        let book = digests.lock().unwrap_or_else(|e| e.into_inner());
        if !met && !book.is_empty() {
            collected.reasons.push(
                "the members did not come to the same applied index within 10 s after the final reads, so their last digests were not compared".into(),
            );
        }
    }
    {
        let book = digests.lock().unwrap_or_else(|e| e.into_inner());
        collected.divergence = book.first_divergence();
        if let Some(divergence) = &collected.divergence {
            collected.reasons.push(divergence.to_string());
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
    collected.served = recorder.served_snapshot();
    Ok(())
}

/// When node `i` refused to start on data a `corrupt` fault damaged (its log names what is
/// damaged), undoes the corruption, as an operator restores a disk from its mirror, and
/// starts the node again: the refusal was the check, and the run goes on with every node.
/// Both are recorded as a nemesis event. Returns whether it repaired the node.
async fn repair_refused_disk(cluster: &Cluster, recorder: &Recorder, i: usize) -> bool {
    let Some(disks) = &cluster.disks else {
        return false;
    };
    let Some(refusal) = cluster
        .db
        .damaged_data_refusal(&log_tail(&cluster.nodes[i].log, 20))
    else {
        return false;
    };
    let restored = match disks.restore(i) {
        Ok(Some(what)) => what,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!("n{}: {e}", i + 1);
            return false;
        }
    };
    workers::record_nemesis(
        recorder,
        "repair-disk".into(),
        format!(
            "n{} refused its corrupted data ({refusal}); {restored}",
            i + 1
        ),
    );
    cluster.supervisor.lock().await.start(i).await.is_ok()
}

/// What the nemesis did, as the run records it.
#[derive(Debug, Default)]
pub struct NemesisReport {
    pub faults: Vec<FaultInterval>,
    /// Faults that could not be applied or healed (not fatal: the run goes on).
    pub errors: Vec<String>,
}

/// Plays `schedule` with the nemesis crate's driver: every start and stop goes into the
/// history the moment it happens, the live display shows the fault in effect, and the
/// driver's intervals become the run's (times since `t0`, the history's origin).
async fn play_nemesis(
    schedule: Schedule,
    cluster: Arc<Cluster>,
    recorder: Recorder,
    counters: Arc<Counters>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> NemesisReport {
    let targets = Targets {
        supervisor: &cluster.supervisor,
        network: &cluster.network,
        primary: &*cluster,
        disk: cluster
            .disks
            .as_ref()
            .map(|d| d as &dyn riptide_nemesis::DiskControl),
        membership: has_membership_faults(&schedule)
            .then_some(&*cluster as &dyn riptide_nemesis::MembershipControl),
    };
    let mut observer = |notice: &riptide_nemesis::Notice| match &notice.what {
        NoticeKind::Started(event) => {
            workers::record_nemesis(&recorder, event.f.clone(), event.value.clone());
            counters
                .faults
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            counters.set_active(vec![event.value.clone()]);
        }
        NoticeKind::Step(step) => counters.set_active(vec![step.clone()]),
        NoticeKind::Stopped(event) => {
            workers::record_nemesis(&recorder, event.f.clone(), event.value.clone());
            counters.set_active(Vec::new());
        }
        NoticeKind::Failed(_) => {}
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let started = tokio::time::Instant::from_std(t0);
    match riptide_nemesis::run_schedule(&schedule, started, &targets, &mut observer, stopped).await
    {
        Ok(report) => NemesisReport {
            faults: report
                .faults
                .iter()
                .map(|f| FaultInterval {
                    name: f.kind.name().to_string(),
                    description: f.description.clone(),
                    start_ns: duration_ns(f.start),
                    end_ns: Some(duration_ns(f.end)),
                    steps: f.steps.clone(),
                })
                .collect(),
            errors: report
                .errors
                .iter()
                .map(|e| format!("nemesis: {}: {}", e.description, e.error))
                .collect(),
        },
        Err(e) => NemesisReport {
            faults: Vec::new(),
            errors: vec![format!("nemesis: {e}")],
        },
    }
}

/// Whether the schedule draws membership faults (the cluster then gets spare slots).
pub fn has_membership_faults(schedule: &Schedule) -> bool {
    schedule
        .kinds()
        .iter()
        .any(|k| k.family() == riptide_nemesis::FaultFamily::Membership)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
