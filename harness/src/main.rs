//! `riptide`: the Jepsen-style harness. A thin binary over the `riptide_checker` and
//! `riptide_nemesis` libraries and the modules of this crate.
//!
//! Subcommands: `test` (one fault-injection run end to end), `check` (check recorded histories),
//! `serve` (browse the store of results), `campaign` (many runs over a matrix).

mod campaign;
mod client;
mod cluster;
mod cmd_campaign;
mod cmd_check;
mod cmd_report;
mod cmd_serve;
mod cmd_test;
mod console;
mod progress;
mod recorder;
mod report;
mod runner;
mod store;
mod workload;

use clap::{Parser, Subcommand};

/// Jepsen-style fault-injection testing of a Raft key-value cluster.
#[derive(Debug, Parser)]
#[command(name = "riptide", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one fault-injection test end to end: cluster, workload, faults, check, report.
    ///
    /// Exit codes: 0 linearizable, 1 not linearizable, 2 unknown, 3 the run itself failed.
    Test(Box<cmd_test::TestArgs>),
    /// Check recorded histories for linearizability.
    Check(cmd_check::CheckArgs),
    /// Check a stored run's history again and rewrite its results and report.
    Report(cmd_report::ReportArgs),
    /// Browse the store of results in a web browser.
    Serve(cmd_serve::ServeArgs),
    /// Run many tests over a matrix (workloads x nemeses x seeds, or a TOML file) with a time
    /// budget; summary table, campaign.json, JUnit XML and an index page in the store.
    ///
    /// Exit codes: 1 when any run is not linearizable, else 3 when a run failed, else 2 when a
    /// verdict is unknown, else 0. `--bugs` runs the detection matrix of the planted bugs.
    Campaign(Box<cmd_campaign::CampaignArgs>),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => cmd_test::run(*args),
        Command::Check(args) => cmd_check::run(args),
        Command::Report(args) => cmd_report::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Campaign(args) => cmd_campaign::run(*args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(3)
        }
    }
}
