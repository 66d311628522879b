//! The `riptide` command line: one clap type per subcommand, and the one place where what
//! happened becomes an exit code.
//!
//! Exit codes: every subcommand's verdict codes (0 / 1 / 2) come from its run or check; 3 is
//! bad input or a run that failed, and that includes a usage error (an unknown flag, a bad
//! value): clap's own usage code 2 would read as "unknown" to a script.

use clap::{Parser, Subcommand};

pub mod campaign;
pub mod check;
pub mod console;
pub mod progress;
pub mod report;
pub mod serve;
pub mod shrink;
pub mod test;

/// The exit code of bad input, a usage error and a run that failed.
pub const EXIT_BAD_INPUT: u8 = 3;

/// Jepsen-style fault-injection testing of a Raft key-value cluster.
#[derive(Debug, Parser)]
#[command(name = "riptide", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one fault-injection test end to end: cluster, workload, faults, check, report.
    ///
    /// Exit codes: 0 linearizable, 1 not linearizable or replicas diverged, 2 unknown, 3 the run
    /// itself failed.
    Test(Box<test::TestArgs>),
    /// Check recorded histories for linearizability.
    Check(check::CheckArgs),
    /// Check a stored run's history again and rewrite its results and report.
    Report(report::ReportArgs),
    /// Write minimal.jsonl into a failing run's folder: the smallest piece of its failing key's
    /// history that is still not linearizable; the report then draws it first.
    ///
    /// Exit codes: 0 written, 3 no failing key, no such run folder, or unreadable input.
    Shrink(shrink::ShrinkArgs),
    /// Browse the store of results in a web browser.
    Serve(serve::ServeArgs),
    /// Run many tests over a matrix (workloads x nemeses x seeds, or a TOML file) with a time
    /// budget; summary table, campaign.json, JUnit XML and an index page in the store.
    ///
    /// Exit codes: 1 when any run is not linearizable, else 3 when a run failed, else 2 when a
    /// verdict is unknown, else 0. `--bugs` runs the detection matrix of the planted bugs.
    Campaign(Box<campaign::CampaignArgs>),
}

/// Parses the command line, runs the subcommand and returns its exit code.
pub fn main() -> std::process::ExitCode {
    // `fuser::reply` logs an ERROR whenever the kernel refuses a reply. With ENOENT that means
    // the request was aborted because the process that made it is gone, which is what every
    // `kill -9` of a node in the middle of a write or fsync does: a green run printed such lines.
    // A reply the filesystem gets wrong still shows, as an I/O error in the node's own log.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,fuser=error,fuser::reply=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return std::process::ExitCode::from(usage_exit(&e)),
    };
    let result = match cli.command {
        Command::Test(args) => test::run(*args),
        Command::Check(args) => check::run(args),
        Command::Report(args) => report::run(args),
        Command::Shrink(args) => shrink::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Campaign(args) => campaign::run(*args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Prints clap's message and gives the exit code: 0 for `--help` and `--version`, 3 for any
/// usage error (a missing subcommand included).
fn usage_exit(e: &clap::Error) -> u8 {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
        _ => EXIT_BAD_INPUT,
    }
}
