//! Mounts [`riptide_faultfs::FaultFs`] views and holds them until killed: for trying the layer by
//! hand (`faultfs-mount BACKING MOUNTPOINT`), and for the tests that prove a `kill -9` of a
//! mount's owner leaves no mount behind, also when the owner holds several busy mounts as the
//! harness does. Prints `mounted <path>` on stdout for each mount once it is up.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser};

/// Mount fault-injecting FUSE views (BACKING at MOUNTPOINT, for each pair) until
/// SIGINT/SIGTERM/SIGKILL.
#[derive(Parser)]
#[command(name = "faultfs-mount")]
struct Args {
    /// Directory that holds what is durable.
    backing: PathBuf,
    /// Existing empty directory to mount the view on.
    mountpoint: PathBuf,
    /// More BACKING MOUNTPOINT pairs, mounted in order after the first.
    #[arg(value_name = "BACKING MOUNTPOINT")]
    more: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.more.len() % 2 != 0 {
        Args::command()
            .error(
                clap::error::ErrorKind::WrongNumberOfValues,
                "every BACKING needs its MOUNTPOINT: give directories in pairs",
            )
            .exit();
    }
    let mut pairs = vec![(args.backing, args.mountpoint)];
    pairs.extend(
        args.more
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone())),
    );
    let mut stdout = std::io::stdout();
    let mut mounts = Vec::with_capacity(pairs.len());
    for (backing, mountpoint) in &pairs {
        let fs = riptide_faultfs::FaultFs::mount(backing, mountpoint).with_context(|| {
            format!("mounting {} at {}", backing.display(), mountpoint.display())
        })?;
        writeln!(stdout, "mounted {}", fs.mountpoint().display()).context("stdout")?;
        stdout.flush().context("stdout")?;
        mounts.push(fs);
    }
    // Held until a signal ends the process; each mount's guard cleans up whichever way it ends.
    loop {
        std::thread::park();
    }
}
