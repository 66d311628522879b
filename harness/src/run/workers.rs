//! The concurrent parts of a run: the client processes that drive the workload, the nemesis
//! that plays the fault schedule, and the final reads once the cluster has healed.
//!
//! Jepsen's process semantics: a worker runs one operation at a time under a process number;
//! an `invoke` is recorded before the request and exactly one `ok`/`fail`/`info` after it.
//! After an `info` the process number is retired and the worker continues under a new one
//! (`process + concurrency`), so no process ever has two open operations.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use riptide_checker::history::{EventType, Process};
use tokio::sync::watch;

use super::recorder::{EventBody, Recorder};
use super::workload::{Generator, KnownValues, Op};
use crate::cli::progress::Counters;
use crate::system::{Answer, Client, Completion, Request};

/// What every worker shares.
pub struct WorkerContext {
    pub client: std::sync::Arc<dyn Client>,
    pub recorder: Recorder,
    pub generator: Generator,
    pub known: KnownValues,
    pub counters: Arc<Counters>,
    pub seed: u64,
    pub concurrency: usize,
    /// Workers `0..closed_loop` ignore the rate: each starts its next operation as soon as
    /// the last one completed.
    pub closed_loop: usize,
    /// Operations per second over all workers; 0 means as fast as they can.
    pub rate: f64,
    /// How long one operation may take, retries included.
    pub op_timeout: Duration,
    /// When the workload stops issuing new operations.
    pub end: Instant,
}

/// Sleeps until `when`; returns `false` when `stop` fired first.
pub async fn sleep_until_or_stop(when: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(when));
    let stopped = tokio::select! {
        () = sleep => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// Records an operation's invoke, runs it, records its completion. Returns the completion.
pub async fn run_op(ctx: &WorkerContext, process: u64, seq: u64, op: &Op) -> Completion {
    run_op_within(ctx, process, seq, op, ctx.op_timeout).await
}

/// [`run_op`] with its own deadline.
pub async fn run_op_within(
    ctx: &WorkerContext,
    process: u64,
    seq: u64,
    op: &Op,
    timeout: Duration,
) -> Completion {
    ctx.recorder.record(EventBody {
        process: Process::Client(process),
        kind: EventType::Invoke,
        f: op.f.to_string(),
        key: op.key.clone(),
        value: op.value.clone(),
        error: None,
    });
    let request_id = format!("{process}:{seq}");
    let Answer { completion, served } = ctx
        .client
        .invoke(&op.request, &request_id, Instant::now() + timeout)
        .await;
    let (kind, value, error) = match &completion {
        Completion::Ok(result) => {
            remember(&ctx.known, &op.request, result.as_deref());
            ctx.counters.ok.fetch_add(1, Ordering::Relaxed);
            (EventType::Ok, op.ok_value(result.clone()), None)
        }
        Completion::Fail(e) => {
            ctx.counters.fail.fetch_add(1, Ordering::Relaxed);
            (EventType::Fail, op.value.clone(), Some(e.clone()))
        }
        Completion::Info(e) => {
            ctx.counters.info.fetch_add(1, Ordering::Relaxed);
            (EventType::Info, op.value.clone(), Some(e.clone()))
        }
    };
    ctx.recorder.record_served(
        EventBody {
            process: Process::Client(process),
            kind,
            f: op.f.to_string(),
            key: op.key.clone(),
            value,
            error,
        },
        served,
    );
    completion
}

/// Remembers the value a key is known to have had, so later cas operations can name it.
fn remember(known: &KnownValues, request: &Request, read: Option<&str>) {
    match request {
        Request::Read { key } => {
            if let Some(v) = read {
                known.observe(key, v);
            }
        }
        Request::Write { key, value } => known.observe(key, value),
        Request::Cas { key, to, .. } => known.observe(key, to),
        Request::Delete { .. } | Request::Append { .. } => {}
    }
}

/// One client worker: operations until the end time or `stop`. Returns the highest process
/// number it used.
pub async fn worker(ctx: Arc<WorkerContext>, index: usize, mut stop: watch::Receiver<bool>) -> u64 {
    let mut process = index as u64;
    let mut seq = 0u64;
    // Every worker has its own stream of choices, derived from the run's seed.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        ctx.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    // The rate is shared by the workers that keep to it. `--rate` is validated; a
    // hand-edited config.json replayed with an absurd rate runs unthrottled rather than
    // overflowing.
    let paced = ctx.concurrency.saturating_sub(ctx.closed_loop).max(1);
    let interval = (ctx.rate > 0.0 && index >= ctx.closed_loop)
        .then(|| Duration::try_from_secs_f64(paced as f64 / ctx.rate).ok())
        .flatten();
    // Stagger the workers' first operations over one interval.
    let mut next_at =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(rng.gen::<f64>()));
    loop {
        if interval.is_some() && !sleep_until_or_stop(next_at.min(ctx.end), &mut stop).await {
            break;
        }
        if *stop.borrow() || Instant::now() >= ctx.end {
            break;
        }
        if let Some(i) = interval {
            next_at += i.mul_f64(rng.gen_range(0.5..1.5));
            next_at = next_at.max(Instant::now());
        }
        seq += 1;
        let op = ctx
            .generator
            .next_op(&mut rng, format!("p{process}-{seq}"), &ctx.known);
        if let Completion::Info(_) = run_op(&ctx, process, seq, &op).await {
            process += ctx.concurrency as u64;
            seq = 0;
        }
    }
    process
}

/// Reads every key once more after the cluster has healed, one after the other under a fresh
/// process, so the history ends with what the cluster finally holds. (Reads are never `info`,
/// so one process suffices.)
pub async fn final_reads(
    ctx: &WorkerContext,
    process: u64,
    timeout: Duration,
) -> Vec<(String, Completion)> {
    let mut out = Vec::new();
    for (i, key) in ctx.generator.node_keys().iter().enumerate() {
        let op = ctx.generator.final_read(key);
        let completion = run_op_within(ctx, process, i as u64 + 1, &op, timeout).await;
        out.push((key.clone(), completion));
    }
    out
}

/// Writes a nemesis event into the history; returns its time.
pub fn record_nemesis(recorder: &Recorder, f: String, value: String) -> u64 {
    recorder
        .record(EventBody {
            process: Process::NEMESIS,
            kind: EventType::Info,
            f,
            key: None,
            value: serde_json::Value::String(value),
            error: None,
        })
        .time
}
