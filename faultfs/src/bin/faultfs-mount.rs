//! Mounts a [`riptide_faultfs::FaultFs`] and holds it until killed: for trying the layer by hand
//! (`faultfs-mount BACKING MOUNTPOINT`), and for the tests that prove a `kill -9` of a mount's
//! owner leaves no mount behind. Prints `mounted <path>` on stdout once the mount is up.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Mount a fault-injecting FUSE view of BACKING at MOUNTPOINT until SIGINT/SIGTERM/SIGKILL.
#[derive(Parser)]
struct Args {
    /// Directory that holds what is durable.
    backing: PathBuf,
    /// Existing empty directory to mount the view on.
    mountpoint: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let fs =
        riptide_faultfs::FaultFs::mount(&args.backing, &args.mountpoint).with_context(|| {
            format!(
                "mounting {} at {}",
                args.backing.display(),
                args.mountpoint.display()
            )
        })?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "mounted {}", fs.mountpoint().display()).context("stdout")?;
    stdout.flush().context("stdout")?;
    // Held until a signal ends the process; auto_unmount cleans up whichever way it ends.
    loop {
        std::thread::park();
    }
}
