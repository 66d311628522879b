//! From a run's [`Recording`] to its results: check the history, reduce a counterexample to
//! what the report draws, compute the statistics, decide the verdict; then write
//! `results.json` and `report.html`. Nothing here touches the cluster, so `riptide report`
//! runs the same analysis on a stored run.

use std::time::{Duration, Instant};

use anyhow::Context;
use riptide_checker::{BuiltinModel, CheckOptions, CheckResult, History, Verdict};

use super::minimal::{self, MinimalHistory};
use super::ops::RunHistory;
use super::Recording;
use crate::store::{CounterexampleView, RunConfig, RunDir, RunResults, RunStats, RunVerdict};
use crate::system::Route;

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

/// Replicas that applied different entries are a violation however the run went otherwise
/// (its reason is already among the run's); a history that is not linearizable stays the
/// verdict, the first thing to look at.
pub fn with_divergence(verdict: RunVerdict, diverged: bool) -> RunVerdict {
    if diverged && verdict != RunVerdict::NotLinearizable {
        RunVerdict::Diverged
    } else {
        verdict
    }
}

/// Checks the collected history, then writes `results.json` and `report.html` into the run
/// folder (and drops the nodes' data after a passing run).
pub async fn finish(
    config: &RunConfig,
    collected: &mut Recording,
    run_dir: &RunDir,
    total_start: Instant,
) -> anyhow::Result<RunResults> {
    let run_reasons = collected.reasons.clone();
    let model = model_of(config);
    let check_timeout = Duration::from_millis(config.check_timeout_ms);
    // The history is paired into operations once; everything below uses this.
    let history =
        RunHistory::new(std::mem::take(&mut collected.events)).with_served(&collected.served);
    let check_started = Instant::now();
    let check = check_events(&history, model, check_timeout).await;
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
            let cx = counterexample_view(&result, &history);
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
    let mut verdict = combine_verdict(
        check_result.as_ref().map(|r| r.verdict),
        collected.run_problem,
    );
    if verdict == RunVerdict::Linearizable {
        let vacuous = vacuous_pass_reasons(collected, &history);
        if !vacuous.is_empty() {
            verdict = RunVerdict::Unknown;
            collected.reasons.extend(vacuous);
        }
    }
    let verdict = with_divergence(verdict, collected.divergence.is_some());
    let minimal = minimal_history(config, model, &history, check_result.as_ref(), run_dir).await;
    let stats = compute_stats(
        collected,
        &history,
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
        planned_faults: collected.planned_faults.clone(),
        healed_ns: collected.healed_ns,
        node_problems: collected.node_problems.clone(),
        divergence: collected.divergence.clone(),
        check: check_result,
        counterexample: counterexample.clone(),
        origin_utc: collected.origin_utc.clone(),
    };
    std::fs::write(run_dir.results(), serde_json::to_string_pretty(&results)?)
        .context("writing results.json")?;
    let cluster = crate::report::read_samples(&run_dir.cluster_samples());
    let window_logs = match counterexample.as_ref() {
        Some(cx) => {
            let (lo, hi) = crate::report::counterexample_window(
                cx,
                &history.ops,
                collected.workload_ms * 1_000_000,
            );
            crate::report::window_lines(
                &run_dir.nodes_dir(),
                collected.origin_utc.as_deref(),
                lo,
                hi,
            )
        }
        None => Vec::new(),
    };
    let input = crate::report::ReportInput {
        title: format!(
            "{} - seed {} - {}",
            config.test_name, config.seed, config.started
        ),
        verdict: verdict.name().to_string(),
        reasons: collected.reasons.clone(),
        parameters: parameters(config, &stats),
        events: &history.events,
        ops: &history.ops,
        faults: &collected.faults,
        counterexample: counterexample.as_ref(),
        node_problems: &collected.node_problems,
        cluster: &cluster,
        window_logs: &window_logs,
        minimal: minimal.as_ref(),
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
        // Spare slots (membership faults) follow the nodes with consecutive ids.
        for id in 1.. {
            let dir = run_dir.node_data(id);
            if id > config.nodes as u64 && !dir.exists() {
                break;
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    Ok(results)
}

/// The checker's model for a run's workload.
pub fn model_of(config: &RunConfig) -> BuiltinModel {
    match config.workload.model() {
        "append" => BuiltinModel::Append,
        "set" => BuiltinModel::Set,
        _ => BuiltinModel::Kv,
    }
}

/// `minimal.jsonl` of a failing run: shrunk within the run's budget and written, or (budget 0)
/// the one already in the run folder. A run that does not fail loses a stale one.
async fn minimal_history(
    config: &RunConfig,
    model: BuiltinModel,
    history: &RunHistory,
    result: Option<&CheckResult>,
    run_dir: &RunDir,
) -> Option<MinimalHistory> {
    let path = run_dir.minimal();
    let Some(partition) = result
        .and_then(|r| r.failures().next())
        .map(|p| p.partition.clone())
    else {
        let _ = std::fs::remove_file(&path);
        return None;
    };
    if config.shrink_budget_ms == 0 {
        return minimal::load(&path, model);
    }
    let budget = Duration::from_millis(config.shrink_budget_ms);
    let events = history.events.clone();
    let task = tokio::task::spawn_blocking(move || {
        minimal::shrink_run(&RunHistory::new(events), model, Some(&partition), budget)
    });
    match task.await {
        Ok(Ok(found)) => match std::fs::write(&path, found.to_jsonl()) {
            Ok(()) => {
                eprintln!("minimal history: {}: {}", found.summary(), path.display());
                Some(found)
            }
            Err(e) => {
                tracing::warn!("cannot write {}: {e}", path.display());
                Some(found)
            }
        },
        Ok(Err(e)) => {
            tracing::warn!("shrinking the failing history: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("shrinking the failing history crashed: {e}");
            None
        }
    }
}

/// Why a linearizable history proves nothing (Jepsen's `stats` checker, and more): an
/// operation type that never once succeeded, nothing that succeeded after the final heal, or a
/// fault family that was planned but never took effect (no fault of it ran, or no client
/// operation was in flight while one did). Empty when the pass means something.
pub fn vacuous_pass_reasons(recording: &Recording, history: &RunHistory) -> Vec<String> {
    use riptide_checker::history::EventType;
    let mut reasons = Vec::new();
    // A refused cas completed: it observed a value, which is what a check needs.
    let succeeded = |op: &super::ops::PairedOp| {
        op.outcome == EventType::Ok
            || (op.outcome == EventType::Fail && op.error.as_deref() == Some("precondition-failed"))
    };
    let mut kinds: Vec<&str> = Vec::new();
    for op in &history.ops {
        if !kinds.contains(&op.f.as_str()) {
            kinds.push(&op.f);
        }
    }
    for f in kinds {
        if !history.ops.iter().any(|op| op.f == f && succeeded(op)) {
            reasons.push(format!(
                "vacuous: no {f} ever succeeded, so the history says nothing about them"
            ));
        }
    }
    if let Some(healed) = recording.healed_ns {
        let after_heal = history
            .ops
            .iter()
            .any(|op| op.start_ns >= healed && op.outcome == EventType::Ok);
        if !history.ops.is_empty() && !after_heal {
            reasons.push(
                "vacuous: nothing succeeded after the final heal (did the cluster recover?)".into(),
            );
        }
    }
    let family_of = |name: &str| {
        name.parse::<riptide_nemesis::FaultKind>()
            .ok()
            .map(|k| k.family())
    };
    let mut families = Vec::new();
    for name in &recording.planned_faults {
        if let Some(family) = family_of(name) {
            if !families.contains(&family) {
                families.push(family);
            }
        }
    }
    for family in families {
        let ran: Vec<&crate::store::FaultInterval> = recording
            .faults
            .iter()
            .filter(|f| family_of(&f.name) == Some(family))
            .collect();
        if ran.is_empty() {
            reasons.push(format!(
                "vacuous: no {} fault took effect though the schedule planned some",
                family.name()
            ));
            continue;
        }
        let exercised = ran.iter().any(|f| {
            let end = f.end_ns.unwrap_or(u64::MAX);
            history
                .ops
                .iter()
                .any(|op| op.start_ns <= end && op.end_ns.is_none_or(|e| e >= f.start_ns))
        });
        if !exercised {
            reasons.push(format!(
                "vacuous: no client operation was in flight during any {} fault",
                family.name()
            ));
        }
    }
    reasons
}

/// Checks the events on a blocking thread with a time limit, plus a watchdog in case the
/// checker overruns its own limit.
async fn check_events(
    history: &RunHistory,
    model: BuiltinModel,
    timeout: Duration,
) -> Result<CheckResult, String> {
    let history: History = history.checkable.clone()?;
    let task = tokio::task::spawn_blocking(move || {
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
    history: &RunHistory,
) -> Option<CounterexampleView> {
    let failing = result.failures().next()?;
    let cx = failing.counterexample.as_ref()?;
    let invoke_index = |id: usize| history.invoke_index(id);
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
        state: cx.states.join("\n"),
        first_violation_ns: failing_ops
            .first()
            .and_then(|&index| history.event_time_ns(index)),
        failing: failing_ops,
        explanation,
    })
}

fn compute_stats(
    collected: &Recording,
    history: &RunHistory,
    check_ms: Option<f64>,
    total_start: Instant,
) -> RunStats {
    let ops = &history.ops;
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
    for op in ops {
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

fn route_name(route: Route) -> &'static str {
    match route {
        Route::Leader => "the leader",
        Route::Any => "any node (round-robin), following redirects",
    }
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
        ("attempt timeout".into(), ms(config.attempt_timeout_ms())),
        (
            "server binary".into(),
            config.server_bin.display().to_string(),
        ),
        ("node args".into(), config.node_args.join(" ")),
        ("reads sent to".into(), route_name(config.read_from).into()),
        ("writes sent to".into(), route_name(config.write_to).into()),
        ("closed-loop clients".into(), config.closed_loop.to_string()),
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
        for verdict in [
            RunVerdict::Linearizable,
            RunVerdict::Unknown,
            RunVerdict::RunFailed,
        ] {
            assert_eq!(with_divergence(verdict, true), RunVerdict::Diverged);
            assert_eq!(with_divergence(verdict, false), verdict);
        }
        assert_eq!(
            with_divergence(RunVerdict::NotLinearizable, true),
            RunVerdict::NotLinearizable
        );
        assert_eq!(RunVerdict::Diverged.exit_code(), 1);
        assert_eq!(RunVerdict::RunFailed.exit_code(), 3);
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
        let cx = counterexample_view(&result, &RunHistory::new(events)).expect("a counterexample");
        assert_eq!(cx.key.as_deref(), Some("k1"));
        // The write linearizes; the read (invoked at event 2) cannot follow it.
        assert_eq!(cx.prefix, vec![0]);
        assert!(cx.failing.contains(&2), "{cx:?}");
        assert!(cx.state.contains("p0-1"), "{cx:?}");
        // The read was invoked at event 2, 2 µs into the run: when the violation first showed.
        assert_eq!(cx.first_violation_ns, Some(2000));
    }

    fn op_events(ops: &[(u64, &str, EventType, u64, u64)]) -> Vec<Event> {
        // (process, f, outcome, start ms, end ms) -> invoke + completion, in time order.
        let mut raw: Vec<(u64, Event)> = Vec::new();
        for (p, f, outcome, start, end) in ops {
            let value = if *f == "read" {
                json!(null)
            } else {
                json!(format!("p{p}-{start}"))
            };
            let mut inv = event(0, *p, EventType::Invoke, f, value.clone());
            inv.time = start * 1_000_000;
            // Every test history starts with p0's write at 1 ms; reads see it.
            let seen = if *f == "read" { json!("p0-1") } else { value };
            let mut done = event(0, *p, *outcome, f, seen);
            done.time = end * 1_000_000;
            raw.push((inv.time, inv));
            raw.push((done.time, done));
        }
        raw.sort_by_key(|(t, _)| *t);
        raw.into_iter()
            .enumerate()
            .map(|(i, (_, mut e))| {
                e.index = i as u64;
                e
            })
            .collect()
    }

    fn recording(events: Vec<Event>, planned: &[&str], faults: &[(&str, u64, u64)]) -> Recording {
        Recording {
            events,
            planned_faults: planned.iter().map(|s| s.to_string()).collect(),
            faults: faults
                .iter()
                .map(|(name, s, e)| crate::store::FaultInterval {
                    name: name.to_string(),
                    description: name.to_string(),
                    start_ns: s * 1_000_000,
                    end_ns: Some(e * 1_000_000),
                    steps: Vec::new(),
                })
                .collect(),
            healed_ns: Some(100 * 1_000_000),
            workload_ms: 120,
            ..Recording::default()
        }
    }

    async fn verdict_of(mut rec: Recording) -> (RunVerdict, Vec<String>) {
        let store = tempfile::tempdir().unwrap();
        let run_dir = RunDir::create(store.path(), "t", chrono::Utc::now(), 1).unwrap();
        let config = crate::cli::test::make_config(
            &<crate::cli::test::TestArgs as clap::FromArgMatches>::from_arg_matches(
                &<crate::cli::test::TestArgs as clap::Args>::augment_args(clap::Command::new("t"))
                    .get_matches_from(["t"]),
            )
            .unwrap(),
            "riptide-server".into(),
        )
        .unwrap()
        .0;
        let results = finish(&config, &mut rec, &run_dir, Instant::now())
            .await
            .unwrap();
        (results.verdict, results.reasons)
    }

    use serde_json::json;
    use EventType::{Fail, Ok as Done};

    #[tokio::test]
    async fn a_pass_where_reads_never_succeeded_is_unknown() {
        let events = op_events(&[
            (0, "write", Done, 1, 2),
            (1, "read", Fail, 3, 4),
            (0, "write", Done, 101, 102),
        ]);
        let (verdict, reasons) = verdict_of(recording(events, &[], &[])).await;
        assert_eq!(verdict, RunVerdict::Unknown, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("no read ever succeeded")),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn a_pass_with_nothing_after_the_final_heal_is_unknown() {
        let events = op_events(&[(0, "write", Done, 1, 2), (1, "read", Done, 3, 4)]);
        let (verdict, reasons) = verdict_of(recording(events, &[], &[])).await;
        assert_eq!(verdict, RunVerdict::Unknown, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("after the final heal")),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn a_pass_whose_fault_family_never_took_effect_is_unknown() {
        let ops = [
            (0, "write", Done, 1, 2),
            (1, "read", Done, 3, 4),
            (0, "write", Done, 101, 102),
        ];
        // Planned kills, none ran.
        let (verdict, reasons) = verdict_of(recording(op_events(&ops), &["kill-one"], &[])).await;
        assert_eq!(verdict, RunVerdict::Unknown, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("no kill fault took effect")),
            "{reasons:?}"
        );
        // A kill ran, but while no client operation was in flight.
        let (verdict, reasons) = verdict_of(recording(
            op_events(&ops),
            &["kill-one"],
            &[("kill-one", 10, 20)],
        ))
        .await;
        assert_eq!(verdict, RunVerdict::Unknown, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("in flight during any kill")),
            "{reasons:?}"
        );
        // The same run with an operation during the kill is a real pass.
        let mut busy = ops.to_vec();
        busy.push((1, "read", Done, 12, 13));
        let (verdict, reasons) = verdict_of(recording(
            op_events(&busy),
            &["kill-one"],
            &[("kill-one", 10, 20)],
        ))
        .await;
        assert_eq!(verdict, RunVerdict::Linearizable, "{reasons:?}");
    }
}
