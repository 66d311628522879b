//! `riptide campaign`: many runs over a matrix, with a time budget, and what they found.
//!
//! Each run of the matrix is an ordinary `riptide test` run (same flags, same store layout,
//! same report), executed in sequence by [`crate::run::execute`]. After every run the
//! campaign folder `<store>/campaigns/<name>-<stamp>/` is rewritten (`campaign.json`,
//! `junit.xml`, `index.html`), so an interrupted campaign still has its results; at the end
//! the summary table goes to stdout. See [`crate::campaign`] for the matrix, the records and
//! the detection matrix of `--bugs`.
//!
//! Exit codes of a matrix campaign: 1 when any run is not linearizable (or its replicas
//! diverged), else 3 when a run
//! failed, else 2 when a verdict is unknown, else 0. A `--bugs` campaign exits 1 when a run
//! with no planted bug is not linearizable (a false alarm), 3 when such a run failed, else 0:
//! the bugs being found is its purpose, not a failure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{CommandFactory, Parser};

use crate::campaign::bugs::{bug_matrix, NO_BUG};
use crate::campaign::matrix::{expand, CampaignFile, MatrixEntry, Shard};
use crate::campaign::record::{merge, CampaignRecord, EntryVerdict, RunRecord};
use crate::campaign::render::{summary_table, write_all};
use crate::campaign::{CAMPAIGNS_DIR, CAMPAIGN_FILE};
use crate::cli::console::{out, outln};
use crate::cli::test::{parse_duration, TestArgs};

/// Arguments of `riptide campaign`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CampaignArgs {
    #[command(subcommand)]
    pub command: Option<CampaignCommand>,
    #[command(flatten)]
    pub run: RunCampaignArgs,
}

/// Subcommands of `riptide campaign`.
#[derive(Debug, clap::Subcommand)]
pub enum CampaignCommand {
    /// Join the results of several shards (`--shard I/N`) into one campaign: summary table,
    /// campaign.json, JUnit XML and index page. Exit code as the campaign's.
    Merge(MergeArgs),
    /// Rebuild a campaign's records from its runs' results.json and render it again (after
    /// `riptide report` checked its runs again, e.g. with a newer checker).
    Refresh(RefreshArgs),
}

/// Arguments of `riptide campaign refresh`.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// The campaign folder (`<store>/campaigns/<name>-<stamp>`).
    pub dir: PathBuf,
}

/// Arguments of `riptide campaign merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' campaign.json files (or their campaign folders).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Folder of the merged campaign (default: <store>/campaigns/<name>-merged-<stamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The store the runs are in (for the default output folder).
    #[arg(long, default_value = "histories")]
    pub store: PathBuf,
}

/// Arguments of a campaign run.
#[derive(Debug, clap::Args)]
pub struct RunCampaignArgs {
    /// A campaign TOML file (workloads, nemeses, seeds, explicit tests; see the README).
    /// Flags given on the command line override its fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Workloads, comma-separated (default kv,append).
    #[arg(long, value_delimiter = ',')]
    pub workload: Vec<String>,
    /// A nemesis of the matrix, as `riptide test --nemesis` takes it; repeat for several
    /// (default: partition, kill, pause, crash, churn and the default nemesis).
    #[arg(long)]
    pub nemesis: Vec<String>,
    /// Seeds per combination (default 1; with --bugs: see --runs).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// The first seed; the others follow it (default 1), so every shard agrees on them.
    #[arg(long)]
    pub first_seed: Option<u64>,
    /// Time limit of each run (default 30s).
    #[arg(long, value_parser = parse_duration)]
    pub time_limit: Option<Duration>,
    /// No run starts once this much time has passed; the rest are recorded as skipped.
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Folder of the store of results.
    #[arg(long, default_value = "histories")]
    pub store: PathBuf,
    /// Name of the campaign (default: the TOML file's, else `campaign`, or `bugs`).
    #[arg(long)]
    pub name: Option<String>,
    /// Run only part I of N of the matrix (1-based), e.g. on N CI jobs; join the parts with
    /// `riptide campaign merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// The node binary (default: riptide-server next to this executable, else on PATH).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// An extra flag for every node of every run (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// An extra `riptide test` flag for every run, e.g. --test-arg=--concurrency=20
    /// (repeatable).
    #[arg(long = "test-arg", allow_hyphen_values = true)]
    pub test_args: Vec<String>,
    /// The detection matrix: for every planted bug of the node, --runs short runs with the
    /// nemesis that should expose it, and the same runs with no bug.
    #[arg(long)]
    pub bugs: bool,
    /// With --bugs: only this planted bug (repeatable; `none` for the runs with no bug).
    #[arg(long = "bug", requires = "bugs")]
    pub bug: Vec<String>,
    /// With --bugs: runs per bug.
    #[arg(long, default_value_t = 10)]
    pub runs: u64,
    /// Also write the JUnit XML here (it is always in the campaign folder).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print the matrix (after sharding) and exit without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// No live progress display during runs.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses the flags of one run as `riptide test` would.
#[derive(Debug, Parser)]
#[command(name = "riptide-test", args_override_self = true)]
struct TestFlags {
    #[command(flatten)]
    test: TestArgs,
}

/// Runs `riptide campaign` (or `riptide campaign merge`); returns the exit code.
pub fn run(args: CampaignArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(CampaignCommand::Merge(m)) => run_merge(m),
        Some(CampaignCommand::Refresh(r)) => run_refresh(r),
        None => run_campaign(args.run),
    }
}

fn run_merge(args: MergeArgs) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    for path in &args.inputs {
        let file = if path.is_dir() {
            path.join(CAMPAIGN_FILE)
        } else {
            path.clone()
        };
        let record = CampaignRecord::load(&file).map_err(anyhow::Error::msg)?;
        inputs.push((file.display().to_string(), record));
    }
    let merged = merge(&inputs).map_err(anyhow::Error::msg)?;
    let out = args.out.unwrap_or_else(|| {
        args.store.join(CAMPAIGNS_DIR).join(format!(
            "{}-merged-{}",
            crate::store::sanitize_name(&merged.name),
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ))
    });
    write_all(&merged, &out).with_context(|| format!("writing {}", out.display()))?;
    out!("{}", summary_table(&merged));
    let missing = merged.matrix_size.saturating_sub(merged.runs.len());
    if missing > 0 {
        eprintln!(
            "warning: {missing} of {} matrix entries are in none of the inputs (a shard is missing?)",
            merged.matrix_size
        );
    }
    eprintln!("merged campaign: {}", out.join("index.html").display());
    Ok(merged.exit_code())
}

fn run_refresh(args: RefreshArgs) -> anyhow::Result<u8> {
    let file = args.dir.join(CAMPAIGN_FILE);
    let mut record = CampaignRecord::load(&file).map_err(anyhow::Error::msg)?;
    // The campaign folder lives in `<store>/campaigns/`.
    let store = args
        .dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&record.store));
    for run in &mut record.runs {
        let Some(rel) = run.run_dir.clone() else {
            continue;
        };
        let run_dir = store.join(&rel);
        let path = run_dir.join(crate::store::RESULTS_FILE);
        let results: crate::store::RunResults = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "warning: keeping the old record of {rel}: {}: {e}",
                    path.display()
                );
                continue;
            }
        };
        // The run's wall time is its own; a re-check only rewrote its results.
        let duration_ms = run.duration_ms;
        *run = RunRecord::from_run(run.entry.clone(), &results, &run_dir, &store);
        run.duration_ms = duration_ms;
    }
    let mode = record.mode.clone();
    let record = record.with_detection();
    write_all(&record, &args.dir).with_context(|| format!("writing {}", args.dir.display()))?;
    out!("{}", summary_table(&record));
    Ok(if mode == "bugs" {
        bugs_exit_code(&record)
    } else {
        record.exit_code()
    })
}

/// The campaign's matrix, name and time limit from the file and the flags.
struct Plan {
    name: String,
    mode: &'static str,
    entries: Vec<MatrixEntry>,
    time_limit: Duration,
    budget: Option<Duration>,
}

fn plan(args: &RunCampaignArgs) -> anyhow::Result<Plan> {
    let mut file = match &args.config {
        Some(path) => CampaignFile::load(path)?,
        None => CampaignFile::default(),
    };
    let file_duration = |field: &Option<String>, what: &str| -> anyhow::Result<Option<Duration>> {
        field
            .as_deref()
            .map(|t| parse_duration(t).map_err(|e| anyhow::anyhow!("campaign file {what}: {e}")))
            .transpose()
    };
    let time_limit = match args.time_limit {
        Some(t) => t,
        None => file_duration(&file.time_limit, "time_limit")?.unwrap_or(Duration::from_secs(30)),
    };
    let budget = match args.budget {
        Some(b) => Some(b),
        None => file_duration(&file.budget, "budget")?,
    };
    let first_seed = args.first_seed.or(file.first_seed).unwrap_or(1);
    if args.bugs {
        return Ok(Plan {
            name: args.name.clone().unwrap_or_else(|| "bugs".into()),
            mode: "bugs",
            entries: bug_matrix(&args.bug, args.runs, first_seed)?,
            time_limit,
            budget,
        });
    }
    if !args.workload.is_empty() {
        file.workloads = args.workload.clone();
    }
    if !args.nemesis.is_empty() {
        file.nemeses = args.nemesis.clone();
    }
    if file.workloads.is_empty() && file.nemeses.is_empty() && file.tests.is_empty() {
        file.workloads = vec!["kv".into(), "append".into()];
        file.nemeses = ["partition", "kill", "pause", "crash", "churn", "default"]
            .map(String::from)
            .to_vec();
    } else if file.workloads.is_empty() && !file.nemeses.is_empty() {
        file.workloads = vec!["kv".into()];
    } else if file.nemeses.is_empty() && !file.workloads.is_empty() {
        file.nemeses = vec![crate::cli::test::DEFAULT_NEMESIS_NAME.into()];
    }
    if let Some(s) = args.seeds {
        file.seeds = Some(s);
    }
    file.first_seed = Some(first_seed);
    let name = args
        .name
        .clone()
        .or_else(|| file.name.clone())
        .unwrap_or_else(|| "campaign".into());
    Ok(Plan {
        name,
        mode: "matrix",
        entries: expand(&file, 1, first_seed)?,
        time_limit,
        budget,
    })
}

/// The `riptide test` arguments of one matrix entry, built directly: the matrix's own fields
/// (workload, nemesis, seed, time limit, name, store, binary, node flags) are set as typed
/// values over `riptide test`'s defaults plus the extra flags the campaign file or the bug's
/// test give (`args`, campaign-wide ones first, so an entry's own win among them).
fn test_args(
    entry: &MatrixEntry,
    plan: &Plan,
    args: &RunCampaignArgs,
) -> Result<TestArgs, clap::Error> {
    let extra = args.test_args.iter().chain(entry.args.iter()).cloned();
    let mut test =
        TestFlags::try_parse_from(std::iter::once("riptide-test".to_string()).chain(extra))?.test;
    test.workload =
        <crate::run::workload::Workload as clap::ValueEnum>::from_str(&entry.workload, false)
            .map_err(|e| {
                TestFlags::command().error(
                    clap::error::ErrorKind::InvalidValue,
                    format!("workload {:?}: {e}", entry.workload),
                )
            })?;
    test.nemesis = entry.nemesis.clone();
    test.seed = Some(entry.seed);
    test.time_limit = plan.time_limit;
    test.name = Some(entry.test_name.clone());
    test.store = args.store.clone();
    if let Some(bin) = &args.server_bin {
        test.server_bin = Some(bin.clone());
    }
    // Campaign-wide node flags first, so a bug's own node flags (planted last) win.
    let mut node_args = args.node_args.clone();
    node_args.append(&mut test.node_args);
    // The entry's planted bug, whether it came from --bugs or from a campaign file's
    // `bug = "..."`, is turned on in every node.
    if let Some(bug) = &entry.bug {
        node_args.extend(crate::campaign::bugs::node_flags(bug));
    }
    test.node_args = node_args;
    test.quiet |= args.quiet;
    Ok(test)
}

fn run_campaign(args: RunCampaignArgs) -> anyhow::Result<u8> {
    let plan = plan(&args)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let matrix_size = plan.entries.len();
    let mine: Vec<MatrixEntry> = plan
        .entries
        .iter()
        .filter(|e| shard.is_none_or(|s| s.owns(e.id)))
        .cloned()
        .collect();
    // Every entry's flags must parse before anything runs.
    for entry in &mine {
        test_args(entry, &plan, &args).map_err(|e| {
            anyhow::anyhow!(
                "matrix entry {} ({}): bad riptide test flags: {}",
                entry.id,
                entry.test_name,
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;
    }
    if args.dry_run {
        if plan.mode == "bugs" {
            for b in crate::campaign::bugs::PLANTED_BUGS {
                eprintln!(
                    "{}: breaks \"{}\"; exposed by {} / {}: {}",
                    b.name, b.rule, b.workload, b.nemesis, b.why
                );
            }
        }
        for e in &mine {
            outln!(
                "{}\t{}\tseed={}\tworkload={}\tnemesis={}\tbug={}\t{}",
                e.id,
                e.test_name,
                e.seed,
                e.workload,
                e.nemesis,
                e.bug.as_deref().unwrap_or("-"),
                e.args.join(" ")
            );
        }
        eprintln!(
            "{} of {matrix_size} matrix entries{}, {} each",
            mine.len(),
            shard.map(|s| format!(" (shard {s})")).unwrap_or_default(),
            crate::campaign::render::summary_secs(plan.time_limit)
        );
        return Ok(0);
    }
    let server_bin = match crate::cli::test::resolve_server_bin(args.server_bin.as_deref()) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("campaign failed: {msg}");
            return Ok(3);
        }
    };
    std::fs::create_dir_all(&args.store)
        .with_context(|| format!("creating the store {}", args.store.display()))?;
    let started = chrono::Utc::now();
    let folder = format!(
        "{}-{}{}",
        crate::store::sanitize_name(&plan.name),
        started.format("%Y%m%dT%H%M%S"),
        shard
            .map(|s| format!("-shard{}of{}", s.index, s.count))
            .unwrap_or_default()
    );
    let campaign_dir = args.store.join(CAMPAIGNS_DIR).join(folder);
    let mut record = CampaignRecord {
        name: plan.name.clone(),
        mode: plan.mode.to_string(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished: None,
        shard,
        matrix_size,
        time_limit_ms: plan.time_limit.as_millis() as u64,
        budget_ms: plan.budget.map(|b| b.as_millis() as u64),
        store: args.store.display().to_string(),
        runs: Vec::new(),
        merged_from: Vec::new(),
        detection: Vec::new(),
    };
    eprintln!(
        "riptide campaign {}: {} runs{} of {}, results in {}",
        plan.name,
        mine.len(),
        shard.map(|s| format!(" (shard {s})")).unwrap_or_default(),
        crate::campaign::render::summary_secs(plan.time_limit),
        campaign_dir.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
            }
        });
    }
    let t0 = Instant::now();
    let total = mine.len();
    for (n, entry) in mine.into_iter().enumerate() {
        let out_of_budget = plan
            .budget
            .is_some_and(|b| t0.elapsed() + plan.time_limit > b);
        if interrupted.load(Ordering::SeqCst) {
            record
                .runs
                .push(RunRecord::skipped(entry, "campaign interrupted by Ctrl-C"));
            continue;
        }
        if out_of_budget {
            record
                .runs
                .push(RunRecord::skipped(entry, "time budget spent"));
            continue;
        }
        eprintln!(
            "\n[{}/{total}] {} seed {}{}",
            n + 1,
            entry.test_name,
            entry.seed,
            entry
                .bug
                .as_deref()
                .filter(|b| *b != NO_BUG)
                .map(|b| format!(" (planted bug {b})"))
                .unwrap_or_default()
        );
        let run = execute_entry(&runtime, &entry, &plan, &args, &server_bin);
        let rec = match run {
            Ok((results, run_dir)) => RunRecord::from_run(entry, &results, &run_dir, &args.store),
            Err(e) => {
                let mut r = RunRecord::skipped(entry, &format!("run failed: {e:#}"));
                r.verdict = EntryVerdict::Ran(crate::store::RunVerdict::RunFailed);
                r.exit_code = Some(3);
                r
            }
        };
        eprintln!(
            "[{}/{total}] {}: {}",
            n + 1,
            rec.entry.test_name,
            rec.verdict
        );
        record.runs.push(rec);
        record = record.with_detection();
        write_all(&record, &campaign_dir)
            .with_context(|| format!("writing {}", campaign_dir.display()))?;
    }
    record.finished = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    record = record.with_detection();
    write_all(&record, &campaign_dir)
        .with_context(|| format!("writing {}", campaign_dir.display()))?;
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::campaign::render::junit(&record))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    outln!();
    out!("{}", summary_table(&record));
    eprintln!(
        "campaign: {}",
        campaign_dir.join(crate::campaign::INDEX_FILE).display()
    );
    Ok(if plan.mode == "bugs" {
        bugs_exit_code(&record)
    } else {
        record.exit_code()
    })
}

/// The exit code of a `--bugs` campaign: only the runs with no planted bug can fail it.
fn bugs_exit_code(record: &CampaignRecord) -> u8 {
    let baseline = CampaignRecord {
        runs: record
            .runs
            .iter()
            .filter(|r| r.entry.bug.as_deref().is_none_or(|b| b == NO_BUG))
            .cloned()
            .collect(),
        ..record.clone()
    };
    match baseline.exit_code() {
        2 => 0,
        code => code,
    }
}

/// Runs one matrix entry as `riptide test` would; returns its results and run folder.
fn execute_entry(
    runtime: &tokio::runtime::Runtime,
    entry: &MatrixEntry,
    plan: &Plan,
    args: &RunCampaignArgs,
    server_bin: &Path,
) -> anyhow::Result<(crate::store::RunResults, PathBuf)> {
    let mut test = test_args(entry, plan, args).map_err(|e| anyhow::anyhow!("{e}"))?;
    test.server_bin = Some(server_bin.to_path_buf());
    let outcome = runtime.block_on(crate::run::execute(crate::cli::test::plan(&test)?))?;
    Ok((outcome.results, outcome.run_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunCampaignArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            run: RunCampaignArgs,
        }
        let mut argv = vec!["campaign"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn entry_flags_override_campaign_wide_ones() {
        let a = args(&["--test-arg=--concurrency=3", "--node-arg=--election-ms=300"]);
        let p = plan(&a).unwrap();
        let mut entry = p.entries[0].clone();
        entry.args = vec!["--concurrency=7".into()];
        let t = test_args(&entry, &p, &a).unwrap();
        assert_eq!(t.concurrency, 7);
        assert_eq!(t.node_args, ["--election-ms=300"]);
        assert_eq!(t.time_limit, Duration::from_secs(30));
        assert_eq!(t.seed, Some(entry.seed));
    }

    #[test]
    fn the_default_matrix_crosses_two_workloads_with_five_families_and_the_default_nemesis() {
        let p = plan(&args(&[])).unwrap();
        assert_eq!(p.entries.len(), 12);
        let p = plan(&args(&["--workload", "register", "--seeds", "2"])).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].nemesis, "default");
    }

    #[test]
    fn bug_runs_plant_the_bug_in_every_node() {
        let a = args(&["--bugs", "--bug", "no-dedup", "--runs", "2"]);
        let p = plan(&a).unwrap();
        assert_eq!(p.mode, "bugs");
        assert_eq!(p.entries.len(), 2);
        let t = test_args(&p.entries[0], &p, &a).unwrap();
        assert!(
            t.node_args.contains(&"--unsafe".to_string()),
            "{:?}",
            t.node_args
        );
        assert!(t.node_args.contains(&"--bug=no-dedup".to_string()));
    }

    #[test]
    fn a_campaign_file_s_bug_is_planted_in_every_node_and_none_plants_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[test]]\nworkload = \"kv\"\nnemesis = \"kill\"\nbug = \"no-fsync\"\n\n\
             [[test]]\nworkload = \"kv\"\nnemesis = \"kill\"\nbug = \"none\"\n",
        )
        .unwrap();
        let a = args(&["--config", file.to_str().unwrap()]);
        let p = plan(&a).unwrap();
        let planted = test_args(&p.entries[0], &p, &a).unwrap();
        assert!(planted.node_args.contains(&"--unsafe".to_string()));
        assert!(planted.node_args.contains(&"--bug=no-fsync".to_string()));
        let clean = test_args(&p.entries[1], &p, &a).unwrap();
        assert!(!clean
            .node_args
            .iter()
            .any(|a| a.contains("bug") || a == "--unsafe"));
    }

    #[test]
    fn every_test_of_the_bug_matrix_parses_and_plans_its_faults() {
        let a = args(&["--bugs", "--runs", "1"]);
        let p = plan(&a).unwrap();
        for entry in &p.entries {
            let t = test_args(entry, &p, &a).unwrap();
            let (config, _) = crate::cli::test::make_config(&t, "riptide-server".into()).unwrap();
            let schedule = crate::run::schedule::make_schedule(&config, None).unwrap();
            assert!(!schedule.faults.is_empty(), "{}", entry.test_name);
            if entry.bug.as_deref() == Some("leader-local-reads") {
                // Clients leave a cut-off leader well within the window of a stale read, and
                // the short quiet periods fit many isolations into the run.
                assert_eq!(config.attempt_timeout_ms, Some(250));
                assert!(schedule.faults.len() >= 9, "{}", schedule.faults.len());
            }
        }
    }

    #[test]
    fn only_false_alarms_fail_a_bugs_campaign() {
        use crate::campaign::matrix::MatrixEntry;
        let run = |bug: &str, verdict: &str| {
            let mut r = RunRecord::skipped(
                MatrixEntry {
                    id: 0,
                    test_name: "t".into(),
                    workload: "kv".into(),
                    nemesis: "none".into(),
                    seed: 1,
                    bug: Some(bug.into()),
                    args: vec![],
                },
                "",
            );
            r.verdict = verdict.parse().unwrap();
            r
        };
        let mut record = CampaignRecord {
            name: "bugs".into(),
            mode: "bugs".into(),
            started: String::new(),
            finished: None,
            shard: None,
            matrix_size: 2,
            time_limit_ms: 1,
            budget_ms: None,
            store: String::new(),
            runs: vec![
                run("no-dedup", "not linearizable"),
                run(NO_BUG, "linearizable"),
            ],
            merged_from: vec![],
            detection: vec![],
        };
        assert_eq!(bugs_exit_code(&record), 0);
        record.runs.push(run(NO_BUG, "not linearizable"));
        assert_eq!(bugs_exit_code(&record), 1);
    }
}
