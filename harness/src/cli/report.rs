//! `riptide report RUN_DIR`: checks a stored run's history again and rewrites its
//! `results.json` and `report.html`, e.g. after a checker upgrade, or after editing a history
//! by hand to see how the report draws a violation. What the run itself recorded (faults, node
//! problems, run failures) is kept from the old `results.json`.

use std::path::PathBuf;
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
    let dir = &args.run_dir;
    let config: RunConfig = match std::fs::read_to_string(dir.join(CONFIG_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|t| serde_json::from_str(&t).map_err(anyhow::Error::from))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot read {}/{CONFIG_FILE}: {e}", dir.display());
            return Ok(3);
        }
    };
    let text = match std::fs::read_to_string(dir.join(HISTORY_FILE)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}/{HISTORY_FILE}: {e}", dir.display());
            return Ok(3);
        }
    };
    let mut events: Vec<Event> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(e) => events.push(e),
            Err(e) => {
                eprintln!("{}/{HISTORY_FILE} line {}: {e}", dir.display(), n + 1);
                return Ok(3);
            }
        }
    }
    let old: Option<RunResults> = std::fs::read_to_string(dir.join(RESULTS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let last_time_ms = events.last().map_or(0, |e| e.time / 1_000_000);
    let served = crate::run::recorder::served_of_history(&text);
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
    let run_dir = RunDir { path: dir.clone() };
    let results = runtime.block_on(finish(&config, &mut collected, &run_dir, Instant::now()))?;
    print_summary(&results);
    outln!("{}", results.verdict.name());
    eprintln!("report: {}", dir.join(REPORT_FILE).display());
    Ok(results.exit_code)
}
