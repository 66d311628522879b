//! `riptide test`: its flags, and how they become a [`RunPlan`].
//!
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown, 3 the run itself failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use riptide_nemesis::Schedule;

use crate::cli::console::outln;
use crate::run::schedule::make_schedule;
use crate::run::workload::Workload;
use crate::run::RunPlan;
use crate::store::{RunConfig, RunVerdict};
use crate::system::etcd::{EtcdDb, EtcdReads};
use crate::system::riptide::RiptideDb;
use crate::system::{Db, Route, SystemKind};

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
    /// Target operations per second over the clients that keep to a rate (0: as fast as they
    /// can).
    #[arg(long, default_value_t = 200.0, value_parser = parse_rate)]
    pub rate: f64,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = Workload::Kv)]
    pub workload: Workload,
    /// Number of keys for the kv and append workloads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub keys: u64,
    /// Faults: `default` (every family this machine can apply: partition, kill, pause,
    /// crash, churn, membership, deafen-leader, and disk when FUSE is usable), or a comma-separated list of fault names
    /// (partition-halves, isolate-one, isolate-leader, majorities-ring, bridge, slow-links,
    /// throttle-links, deafen-leader, kill-one, kill-minority, kill-majority, kill-leader, pause-one,
    /// pause-leader, stall-leader, crash-restart-one, crash-restart-leader,
    /// crash-restart-election, crash-restart-voter, leader-churn, lose-unsynced, torn-write,
    /// corrupt, power-cut, corrupt-all, remove-voter, add-learner, replace-node, remove-leader,
    /// promote-split, figure-8), families (partition, link, kill, pause, crash, churn, disk,
    /// membership; promote-split, figure-8 and deafen-leader are asked for by name only), `all`
    /// (every kind but the disk and membership ones) or `none`.
    #[arg(long, default_value = DEFAULT_NEMESIS_NAME)]
    pub nemesis: String,
    /// Length of each fault. One second outlasts an election (150-300 ms by default) and
    /// leaves the new leader time to take writes; with the default quiet period a 30 s run
    /// plays 20 faults, every family at least three times.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// Length of the quiet period before each fault (short: more faults fit in a run, and
    /// every family and kind gets its turn in 30 s).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub nemesis_quiet: Option<Duration>,
    /// Longest downtime of a crash-restart (`crash-restart-one`, `-leader`, `-election`): each
    /// crashed node is started again after a seeded downtime between 0 and this.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub crash_downtime_max: Duration,
    /// How many voters `crash-restart-election` crash-restarts after the leader.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub election_crashes: u32,
    /// The span after the leader's crash over which `crash-restart-election` spreads its voter
    /// crashes: about the election that follows (one to two election timeouts of the node).
    #[arg(long, default_value = "600ms", value_parser = parse_duration)]
    pub election_window: Duration,
    /// How long `leader-churn` lets each new leader lead (and take writes) before cutting it
    /// off.
    #[arg(long, default_value = "400ms", value_parser = parse_duration)]
    pub churn_dwell: Duration,
    /// Latency `crash-restart-voter` adds to each link among the nodes other than the old
    /// leader: a vote and the new leader's first entry are then twice this apart, the window in
    /// which the voter is crashed. Keep it under half the node's election timeout.
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    pub voter_delay: Duration,
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
    /// Where clients send reads first: `any` node round-robin (a correct follower
    /// redirects; this exposes nodes that answer reads they should not), or the `leader`.
    #[arg(long, value_enum, default_value_t = Route::Any)]
    pub read_from: Route,
    /// Where clients send writes first: `any` node round-robin, following redirects (so a
    /// cut-off old leader keeps getting writes), or the believed `leader`.
    #[arg(long, value_enum, default_value_t = Route::Any)]
    pub write_to: Route,
    /// How many of the clients are closed-loop: they issue their next operation as soon as
    /// the last one completes, ignoring --rate, so operations are in flight at the instant a
    /// fault starts. The others keep to --rate.
    #[arg(long, default_value_t = 2)]
    pub closed_loop: u64,
    /// How long one operation may take, retries included, before it is `info`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// How long one HTTP attempt may wait for an answer before the client tries again
    /// (another node, same Request-Id). Short: clients leave a cut-off leader quickly, and
    /// meet the new one while the old one may still answer.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub attempt_timeout: Duration,
    /// How long the healed cluster gets to elect a leader and catch up before the final reads.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// How long the checker may search before the verdict is `unknown`.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// How long a failing run may spend shrinking its history to `minimal.jsonl` (the smallest
    /// piece that is still not linearizable); 0 to skip.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shrink_budget: Duration,
    /// No live progress display.
    #[arg(long)]
    pub quiet: bool,
    /// The system under test: `riptide` nodes, or a local `etcd` cluster (etcd-server 3.4;
    /// network faults except a 3-node majorities-ring, no disk faults).
    #[arg(long, value_enum, default_value_t = SystemKind::Riptide)]
    pub system: SystemKind,
    /// With --system etcd: `linearizable` reads (etcd's default, through the leader's read
    /// index) or `serializable` ones (answered by the member from its own state: stale reads
    /// are possible, and documented).
    #[arg(long, value_enum, default_value_t = EtcdReads::Linearizable)]
    pub etcd_reads: EtcdReads,
    /// With --system etcd: the etcd binary (default /usr/bin/etcd, else etcd on PATH).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
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
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {text:?} is too long"))
}

/// Parses `--rate`: operations per second, `0` for as fast as the clients go. A rate so low
/// that one client would wait more than a day between operations is refused (it would also
/// overflow the interval).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("bad rate {text:?} (operations per second, e.g. 200, or 0)"))?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!("bad rate {text:?}: a finite number >= 0"));
    }
    if rate > 0.0 && rate < MIN_RATE {
        return Err(format!(
            "rate {text:?} is below {MIN_RATE} operations per second (use 0 for no limit)"
        ));
    }
    Ok(rate)
}

/// The lowest `--rate` accepted besides 0: one operation per client per ~3 hours at 1,000
/// clients, far below anything useful, far above what overflows.
pub const MIN_RATE: f64 = 0.0001;

/// What `--nemesis default` means.
pub const DEFAULT_NEMESIS_NAME: &str = "default";

/// The families of the default nemesis, strongest first: the default run is the strongest
/// test we know, not the gentlest. The disk family is listed by kind, without `corrupt-all`:
/// it restarts the whole cluster onto damaged disks each time, which only an operator's repair
/// of every node undoes, and it is what the nightly and `campaign --bugs` play for
/// `wal-trusts-length`; the default run was measured without it. `membership` gives the
/// cluster two spare slots and changes its configuration through the nodes' API. A family's
/// first round leads with its first-listed kind, so `stall-leader` (the pause that exposes
/// leader-local reads) and `power-cut` (the only fault that exposes a node that skips fsync)
/// play in every run that plays their family, which with 20 faults over 8 families is every run.
/// `deafen-leader` is listed by name (the `link` family's other kinds slow links rather than cut
/// them): it holds open the window that request deduplication exists for, a write committed by
/// the next leader while its client times out and retries, which other faults on a quiet
/// machine rarely catch.
pub const DEFAULT_FAMILIES: &[&str] = &[
    "partition",
    "kill",
    "stall-leader",
    "pause",
    "crash",
    "churn",
    "power-cut",
    "lose-unsynced",
    "torn-write",
    "corrupt",
    "membership",
    "deafen-leader",
];

/// `--nemesis` as the run will use it: `default` becomes [`DEFAULT_FAMILIES`], without `disk`
/// where this machine cannot mount FUSE, which a note then says (printed at start and kept in
/// config.json), so nothing is left out silently. Anything else is kept as given (and an
/// explicit disk fault where FUSE is unusable is refused later).
pub fn expand_nemesis(given: &str) -> (String, Vec<String>) {
    if given.trim() != DEFAULT_NEMESIS_NAME {
        return (given.to_string(), Vec::new());
    }
    match riptide_faultfs::check_available() {
        Ok(()) => (DEFAULT_FAMILIES.join(","), Vec::new()),
        Err(e) => (
            default_without_disk(),
            vec![format!(
                "the default nemesis leaves out the disk faults on this machine: {e}"
            )],
        ),
    }
}

/// [`DEFAULT_FAMILIES`] without the disk kinds (those that need a filesystem layer).
fn default_without_disk() -> String {
    DEFAULT_FAMILIES
        .iter()
        .filter(|f| {
            !riptide_nemesis::parse_fault_list(f).is_ok_and(|kinds| {
                kinds
                    .iter()
                    .all(|k| k.requires() == Some(riptide_nemesis::Requirement::Disk))
            })
        })
        .copied()
        .collect::<Vec<_>>()
        .join(",")
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

/// The system a stored run tested (its `config.json`), for `--replay`.
fn replayed_system(dir: &Path) -> anyhow::Result<SystemKind> {
    let text = std::fs::read_to_string(dir.join(crate::store::CONFIG_FILE))
        .with_context(|| format!("reading the run to replay in {}", dir.display()))?;
    let config: RunConfig = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}/config.json", dir.display()))?;
    Ok(config.system)
}

/// Finds the etcd binary: the flag, else /usr/bin/etcd, else `etcd` on PATH.
pub fn resolve_etcd_bin(flag: Option<&Path>) -> Result<PathBuf, String> {
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("etcd"))
                .find(|p| p.is_file())
        })
    };
    match flag {
        Some(given) if given.is_file() => Ok(given.to_path_buf()),
        Some(given) => Err(format!(
            "the etcd binary {} does not exist (install etcd-server: apt-get install etcd-server)",
            given.display()
        )),
        None => {
            let default = Path::new(crate::system::etcd::DEFAULT_ETCD_BIN);
            if default.is_file() {
                Ok(default.to_path_buf())
            } else {
                on_path().ok_or_else(|| {
                    format!(
                        "cannot find the etcd binary at {} or on PATH (install etcd-server: \
                         apt-get install etcd-server, or pass --etcd-bin PATH)",
                        default.display()
                    )
                })
            }
        }
    }
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
    let (nemesis, notes) = match args.system {
        SystemKind::Riptide => expand_nemesis(&args.nemesis),
        SystemKind::Etcd if args.nemesis.trim() == DEFAULT_NEMESIS_NAME => {
            let (list, note) = crate::system::etcd::default_nemesis(args.nodes as usize);
            (list, vec![note])
        }
        SystemKind::Etcd => (args.nemesis.clone(), Vec::new()),
    };
    for note in &notes {
        eprintln!("note: {note}");
    }
    let test_name = args.name.clone().unwrap_or_else(|| match args.system {
        SystemKind::Riptide => format!(
            "{}-{}",
            args.workload.name(),
            nemesis.replace(',', "+").replace(' ', "")
        ),
        // etcd's default is a long list of kinds: its name says `default` instead.
        SystemKind::Etcd => format!(
            "etcd-{}-{}",
            args.workload.name(),
            args.nemesis.trim().replace(',', "+").replace(' ', "")
        ),
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
        nemesis,
        notes,
        nemesis_interval_ms: args.nemesis_interval.as_millis() as u64,
        nemesis_quiet_ms: args.nemesis_quiet.map(|q| q.as_millis() as u64),
        fault_options: fault_options(args),
        op_timeout_ms: args.op_timeout.as_millis() as u64,
        attempt_timeout_ms: Some(args.attempt_timeout.as_millis() as u64),
        recovery_timeout_ms: args.recovery_timeout.as_millis() as u64,
        check_timeout_ms: args.check_timeout.as_millis() as u64,
        shrink_budget_ms: args.shrink_budget.as_millis() as u64,
        server_bin,
        node_args: args.node_args.clone(),
        read_from: args.read_from,
        write_to: args.write_to,
        closed_loop: args.closed_loop.min(args.concurrency) as usize,
        system: args.system,
        etcd_reads: (args.system == SystemKind::Etcd).then_some(args.etcd_reads),
        replay_of: None,
        riptide_version: env!("CARGO_PKG_VERSION").to_string(),
        rerun: String::new(),
    };
    Ok((config, None))
}

/// The fault parameters of the flags; the rest (link faults) keep their defaults.
fn fault_options(args: &TestArgs) -> riptide_nemesis::FaultOptions {
    riptide_nemesis::FaultOptions {
        crash_downtime_max_ms: args.crash_downtime_max.as_millis() as u64,
        election_crashes: args.election_crashes,
        election_window_ms: args.election_window.as_millis() as u64,
        churn_dwell_ms: args.churn_dwell.as_millis() as u64,
        voter_delay_ms: args.voter_delay.as_millis() as u64,
        ..riptide_nemesis::FaultOptions::default()
    }
}

/// Runs `riptide test`; returns the exit code.
pub fn run(args: TestArgs) -> anyhow::Result<u8> {
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("run failed: {e:#}");
            return Ok(RunVerdict::RunFailed.exit_code());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let outcome = runtime.block_on(crate::run::execute(plan))?;
    // The verdict alone on stdout, for scripts; everything else went to stderr.
    outln!("{}", outcome.results.verdict);
    eprintln!(
        "report: {}",
        outcome.run_dir.join(crate::store::REPORT_FILE).display()
    );
    Ok(outcome.results.exit_code)
}

/// The run plan of `riptide test`'s flags (or of the run being replayed): the configuration,
/// the fault schedule and the system under test. An error is a run that cannot start.
pub fn plan(args: &TestArgs) -> anyhow::Result<RunPlan> {
    let system = match &args.replay {
        Some(dir) => replayed_system(dir)?,
        None => args.system,
    };
    if system == SystemKind::Riptide
        && (args.etcd_reads != EtcdReads::Linearizable || args.etcd_bin.is_some())
    {
        anyhow::bail!("--etcd-reads and --etcd-bin need --system etcd");
    }
    let server_bin = match system {
        SystemKind::Riptide => resolve_server_bin(args.server_bin.as_deref()),
        SystemKind::Etcd => resolve_etcd_bin(args.etcd_bin.as_deref()),
    }
    .map_err(anyhow::Error::msg)?;
    let (config, replayed) = make_config(args, server_bin)?;
    let schedule = make_schedule(&config, replayed).map_err(anyhow::Error::msg)?;
    let db: Arc<dyn Db> = match config.system {
        SystemKind::Riptide => Arc::new(RiptideDb {
            server_bin: config.server_bin.clone(),
            node_args: config.node_args.clone(),
        }),
        SystemKind::Etcd => Arc::new(EtcdDb::new(
            config.server_bin.clone(),
            config.node_args.clone(),
            config.etcd_reads.unwrap_or_default(),
        )),
    };
    // A fault the system cannot be given is refused now, naming it and why, never played
    // as if it worked.
    let mut kinds = riptide_nemesis::parse_fault_list(&config.nemesis).unwrap_or_default();
    kinds.extend(schedule.faults.iter().map(|f| f.plan.kind()));
    let refused = db.unsupported_faults(&kinds, config.nodes);
    if !refused.is_empty() {
        let list: Vec<String> = refused
            .iter()
            .map(|(kind, why)| format!("{}: {why}", kind.name()))
            .collect();
        anyhow::bail!(
            "--system {} cannot apply --nemesis {}: {}",
            db.name(),
            config.nemesis,
            list.join("; ")
        );
    }
    // A fault this machine cannot apply is refused now, never skipped silently.
    if crate::run::disk::schedule_needs_disks(&schedule) {
        riptide_faultfs::check_available().map_err(|e| {
            anyhow::anyhow!(
                "--nemesis {} has disk faults, which need FUSE on this machine: {e} \
                 (or leave the disk family out of --nemesis)",
                config.nemesis
            )
        })?;
    }
    Ok(RunPlan {
        db,
        config,
        schedule,
        store: args.store.clone(),
        quiet: args.quiet,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn without_fuse_the_default_nemesis_keeps_every_family_but_the_disk_kinds() {
        assert_eq!(
            super::default_without_disk(),
            "partition,kill,stall-leader,pause,crash,churn,membership,deafen-leader"
        );
    }

    use super::*;

    #[test]
    fn durations_accept_the_usual_units() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        // Values that overflow a Duration or are not numbers are errors, never a panic.
        assert!(parse_duration("1000000000000000000000000s").is_err());
        assert!(parse_duration("inf").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rates_are_finite_non_negative_and_not_absurdly_low() {
        assert_eq!(parse_rate("200").unwrap(), 200.0);
        assert_eq!(parse_rate("0").unwrap(), 0.0);
        assert!(parse_rate("1e-300").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("-5").is_err());
    }

    fn args_of(flags: &[&str]) -> TestArgs {
        use clap::{Args, FromArgMatches};
        let command = TestArgs::augment_args(clap::Command::new("t"));
        let matches = command.get_matches_from(std::iter::once("t").chain(flags.iter().copied()));
        TestArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn fault_parameter_flags_default_to_the_nemesis_defaults_and_reach_the_schedule() {
        let defaults = args_of(&[]);
        assert_eq!(
            fault_options(&defaults),
            riptide_nemesis::FaultOptions::default()
        );
        let args = args_of(&[
            "--nemesis",
            "crash-restart-election",
            "--crash-downtime-max",
            "20ms",
            "--election-crashes",
            "9",
            "--election-window",
            "2s",
            "--churn-dwell",
            "150ms",
            "--seed",
            "3",
        ]);
        let (config, _) = make_config(&args, "riptide-server".into()).unwrap();
        let schedule = make_schedule(&config, None).unwrap();
        let options = &schedule.spec.options;
        assert_eq!(
            (
                options.crash_downtime_max_ms,
                options.election_crashes,
                options.election_window_ms,
                options.churn_dwell_ms
            ),
            (20, 9, 2000, 150)
        );
        for fault in &schedule.faults {
            let riptide_nemesis::FaultPlan::CrashRestartElection {
                down_ms, crashes, ..
            } = &fault.plan
            else {
                panic!("wrong plan {:?}", fault.plan);
            };
            assert!(*down_ms <= 20 && crashes.len() == 9);
        }
    }

    #[test]
    fn a_missing_server_binary_is_named_in_the_error() {
        let err = resolve_server_bin(Some(Path::new("/nonexistent/riptide-server"))).unwrap_err();
        assert!(err.contains("/nonexistent/riptide-server"), "{err}");
    }
}
