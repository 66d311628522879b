//! `riptide`: the Jepsen-style harness. A thin binary over the `riptide_checker` and
//! `riptide_nemesis` libraries and the modules of this crate.
//!
//! Subcommands: `test` (one fault-injection run end to end), `check` (check recorded histories),
//! `serve` (browse the store of results).

mod cmd_check;

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
    /// Check recorded histories for linearizability.
    Check(cmd_check::CheckArgs),
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
        Command::Check(args) => cmd_check::run(args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(3)
        }
    }
}
