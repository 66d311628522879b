//! `riptide report RUN_DIR`: checks a stored run's history again and rewrites its
//! `results.json` and `report.html`, e.g. after a checker upgrade, or after editing a history
//! by hand to see how the report draws a violation. What the run itself recorded (faults, node
//! problems, run failures) is kept from the old `results.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use riptide_checker::history::Event;

use crate::cli::console::outln;
use crate::run::analysis::finish;
use crate::run::{print_summary, Recording};
use crate::store::{RunConfig, RunResults};
use crate::store::{RunDir, CONFIG_FILE, HISTORY_FILE, REPORT_FILE, RESULTS_FILE};

/// Arguments of `riptide report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The run folder (e.g. histories/latest).
    pub run_dir: PathBuf,
}

/// Re-checks and re-renders; returns the exit code of the new verdict (3 for unreadable input).
pub fn run(args: ReportArgs) -> anyhow::Result<u8> {
    match recheck(&args.run_dir, None) {
        Ok(results) => Ok(results.exit_code),
        Err(e) => {
            eprintln!("{e:#}");
            Ok(3)
        }
    }
}

/// The events of a run folder's `history.jsonl`.
pub fn read_events(dir: &Path) -> anyhow::Result<Vec<Event>> {
    parse_events(dir, &read_history_text(dir)?)
}

/// The text of a run folder's `history.jsonl`.
fn read_history_text(dir: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(dir.join(HISTORY_FILE))
        .with_context(|| format!("cannot read {}/{HISTORY_FILE}", dir.display()))
}

/// The events of `history.jsonl`'s text (`dir` names the file in errors).
fn parse_events(dir: &Path, text: &str) -> anyhow::Result<Vec<Event>> {
    let mut events: Vec<Event> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let event = serde_json::from_str(line)
            .with_context(|| format!("{}/{HISTORY_FILE} line {}", dir.display(), n + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// The run's `config.json`.
pub fn read_config(dir: &Path) -> anyhow::Result<RunConfig> {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|t| serde_json::from_str(&t).map_err(anyhow::Error::from))
        .with_context(|| format!("cannot read {}/{CONFIG_FILE}", dir.display()))
}

/// Checks a stored run again and rewrites its results and report, printing the summary.
/// `shrink_budget_ms` overrides the run's own budget for `minimal.jsonl` (0: keep the stored
/// one).
pub fn recheck(dir: &Path, shrink_budget_ms: Option<u64>) -> anyhow::Result<RunResults> {
    let mut config = read_config(dir)?;
    if let Some(budget) = shrink_budget_ms {
        config.shrink_budget_ms = budget;
    }
    let history = read_history_text(dir)?;
    let events = parse_events(dir, &history)?;
    let old: Option<RunResults> = std::fs::read_to_string(dir.join(RESULTS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let last_time_ms = events.last().map_or(0, |e| e.time / 1_000_000);
    let served = crate::run::recorder::served_of_history(&history);
    let mut collected = match old {
        Some(old) => Recording {
            events,
            served,
            faults: old.faults,
            node_problems: old.node_problems,
            reasons: old.run_reasons,
            run_problem: old.run_problem,
            workload_ms: old.stats.workload_ms.max(1),
            interrupted: false,
            healed_ns: old.healed_ns,
            planned_faults: old.planned_faults,
            recorded_total_ms: Some(old.stats.total_ms),
            divergence: old.divergence,
            origin_utc: old.origin_utc,
        },
        None => Recording {
            events,
            served,
            workload_ms: last_time_ms.max(1),
            ..Recording::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let run_dir = RunDir {
        path: dir.to_path_buf(),
    };
    let results = runtime.block_on(finish(&config, &mut collected, &run_dir, Instant::now()))?;
    print_summary(&results);
    outln!("{}", results.verdict.name());
    eprintln!("report: {}", dir.join(REPORT_FILE).display());
    Ok(results)
}
