//! What the layer costs a WAL: appends of a 128-byte record, each followed by fdatasync, in a
//! plain directory and through a FaultFs mount over the same kind of directory.
//! `cargo run --release -p riptide-faultfs --example fsync_rate [ROUNDS]`

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

fn appends_per_second(dir: &Path, rounds: u32) -> anyhow::Result<f64> {
    let path = dir.join("wal.log");
    let mut wal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let record = [0x5a_u8; 128];
    let started = Instant::now();
    for _ in 0..rounds {
        wal.write_all(&record).context("append")?;
        wal.sync_data().context("fdatasync")?;
    }
    Ok(f64::from(rounds) / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let rounds: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ROUNDS must be a number")?,
        None => 2000,
    };
    let root = tempfile::tempdir().context("temp dir")?;
    let (plain, backing, mnt) = (
        root.path().join("plain"),
        root.path().join("backing"),
        root.path().join("mnt"),
    );
    for dir in [&plain, &backing, &mnt] {
        std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    let plain_rate = appends_per_second(&plain, rounds)?;
    let fs = riptide_faultfs::FaultFs::mount(&backing, &mnt)?;
    let mounted_rate = appends_per_second(&mnt, rounds)?;
    fs.unmount()?;
    println!(
        "append+fdatasync of 128 B, {rounds} rounds, in {}",
        root.path().display()
    );
    println!("  plain directory: {plain_rate:>9.0}/s");
    println!(
        "  through FaultFs: {mounted_rate:>9.0}/s ({:.2}x)",
        mounted_rate / plain_rate
    );
    Ok(())
}
