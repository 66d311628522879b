//! `riptide shrink RUN_DIR`: writes `minimal.jsonl` into a failing run's folder, the smallest
//! piece of its failing key's history that is still not linearizable (see
//! [`crate::run::minimal`]), then draws the report again with it first. A failing `riptide
//! test` does the same within `--shrink-budget`; this command gives it more time, or shrinks a
//! run stored before it existed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use riptide_checker::ShrinkError;

use crate::cli::console::outln;
use crate::cli::report::{read_config, read_events, recheck};
use crate::cli::test::parse_duration;
use crate::run::analysis::model_of;
use crate::run::minimal::shrink_run;
use crate::run::ops::RunHistory;
use crate::store::{RunDir, RunResults, RESULTS_FILE};

/// Arguments of `riptide shrink`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShrinkArgs {
    /// The run folder (e.g. histories/latest).
    pub run_dir: PathBuf,
    /// How long to search: when it runs out, the smallest failing piece found so far is kept
    /// (not 1-minimal then, and the command says so).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub budget: Duration,
    /// The key to shrink (default: the failing key in results.json, else the first the
    /// checker finds).
    #[arg(long)]
    pub key: Option<String>,
}

/// Shrinks, writes `minimal.jsonl`, re-renders the report; exit code 0 when written.
pub fn run(args: ShrinkArgs) -> anyhow::Result<u8> {
    let dir = &args.run_dir;
    anyhow::ensure!(dir.is_dir(), "{}: no such run folder", dir.display());
    let config = read_config(dir)?;
    let events = read_events(dir)?;
    let stored: Option<RunResults> = std::fs::read_to_string(dir.join(RESULTS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let known_key = args.key.clone().or_else(|| {
        stored
            .as_ref()
            .and_then(|r| r.check.as_ref())
            .and_then(|c| c.failures().next())
            .map(|p| p.partition.clone())
    });
    let history = RunHistory::new(events);
    if let Err(e) = &history.checkable {
        anyhow::bail!("{}: {e}", dir.display());
    }
    let minimal = match shrink_run(
        &history,
        model_of(&config),
        known_key.as_deref(),
        args.budget,
    ) {
        Ok(m) => m,
        Err(ShrinkError::NotFailing { verdict }) => anyhow::bail!(
            "{}: no failing key to shrink: the history is {verdict}",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("shrinking {}", dir.display())),
    };
    let run_dir = RunDir { path: dir.clone() };
    std::fs::write(run_dir.minimal(), minimal.to_jsonl())
        .with_context(|| format!("writing {}", run_dir.minimal().display()))?;
    eprintln!("minimal history: {}", minimal.summary());
    // Draw the report again with it (budget 0: keep the file just written).
    recheck(dir, Some(0))?;
    outln!("{}", run_dir.minimal().display());
    Ok(0)
}
