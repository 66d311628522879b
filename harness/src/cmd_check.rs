//! `riptide check`: check one or more recorded histories for linearizability.

/// Arguments of `riptide check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// History files (JSON Lines or Jepsen EDN).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Runs the check; returns the process exit code (0 linearizable, 1 not, 2 unknown, 3 bad input).
pub fn run(_args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::bail!("riptide check is not implemented yet")
}
