//! Mounts are owned like processes: gone after drop, after a panic in their owner, and after
//! `kill -9` of the process that owns one (also of an owner of several busy mounts, round after
//! round); a clean unmount persists what was pending.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{dirs, mounted, wait_until, Mounted};
use riptide_faultfs::FaultFs;

const UNMOUNT_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn dropping_the_handle_unmounts() {
    let m = Mounted::new();
    let mnt = m.fs.mountpoint().to_path_buf();
    assert!(mounted(&mnt));
    let Mounted { fs, dir } = m;
    drop(fs);
    assert!(!mounted(&mnt), "drop waits until the mount is gone");
    drop(dir);
}

#[test]
fn a_clean_unmount_persists_pending_writes() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"pending").unwrap();
    assert_eq!(std::fs::read(m.backing("f")).unwrap(), b"");
    let backing = m.backing("f");
    let Mounted { fs, dir } = m;
    let mnt = fs.mountpoint().to_path_buf();
    fs.unmount().unwrap();
    assert!(!mounted(&mnt));
    assert_eq!(std::fs::read(backing).unwrap(), b"pending");
    drop(dir);
}

#[test]
fn a_panic_in_the_owning_thread_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = dirs(dir.path());
    let (mounted_tx, mounted_rx) = mpsc::channel();
    let owner = {
        let mnt = mnt.clone();
        std::thread::spawn(move || {
            let _fs = FaultFs::mount(&backing, &mnt).expect("mount");
            mounted_tx.send(()).unwrap();
            panic!("the owner fails while the mount is up");
        })
    };
    mounted_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("mounted");
    assert!(owner.join().is_err(), "the owner panicked");
    assert!(!mounted(&mnt), "unwinding dropped the mount");
}

/// A `faultfs-mount` process holding `pairs` (backing, mount point), killed on drop so that a
/// failed assertion leaves no process (and so no mount) behind.
struct Owner(Child);

impl Owner {
    /// Starts the owner and waits until it reports every mount.
    fn start(pairs: &[(PathBuf, PathBuf)]) -> Owner {
        let mut command = Command::new(env!("CARGO_BIN_EXE_faultfs-mount"));
        for (backing, mnt) in pairs {
            command.arg(backing).arg(mnt);
        }
        let mut child = Owner(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn faultfs-mount"),
        );
        let stdout = child.0.stdout.take().expect("child stdout");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        for (_, mnt) in pairs {
            let line = line_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("faultfs-mount reports each mount");
            assert_eq!(line.trim(), format!("mounted {}", mnt.display()));
            assert!(mounted(mnt));
        }
        child
    }

    /// SIGKILL by PID: no destructor runs in the owner.
    fn kill_9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = self.0.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lazily detaches, on drop, whichever of the test's own mount points is still mounted, so a
/// failing test does not leave its mounts to the next one.
struct DetachLeftovers(Vec<PathBuf>);

impl Drop for DetachLeftovers {
    fn drop(&mut self) {
        for mnt in self
            .0
            .iter()
            .filter(|m| riptide_faultfs::is_mounted(m).unwrap_or(true))
        {
            let _ = riptide_faultfs::detach(mnt);
        }
    }
}

#[test]
fn kill_9_of_the_owning_process_leaves_no_mount() {
    riptide_faultfs::check_available().expect("FUSE must be usable for these tests");
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = dirs(dir.path());
    let _leftovers = DetachLeftovers(vec![mnt.clone()]);
    let mut owner = Owner::start(&[(backing.clone(), mnt.clone())]);
    std::fs::write(mnt.join("f"), b"x").unwrap();

    owner.kill_9();
    wait_until(
        "the killed owner's mount to disappear",
        UNMOUNT_DEADLINE,
        || !mounted(&mnt),
    );
    assert!(
        !mnt.join("f").exists(),
        "the mount point is an empty directory again"
    );
    assert_eq!(
        std::fs::read(backing.join("f")).unwrap(),
        b"",
        "unsynced data died with its owner"
    );
}

/// Mounts held by one owner in the round below, as the harness holds one per node.
const BUSY_MOUNTS: usize = 4;
/// Kills of such an owner: what this guards against is a race.
const BUSY_ROUNDS: usize = 5;

/// The harness's case: one process owns a mount per node, the nodes write through them, and
/// the owner is killed with SIGKILL. `fusermount3`'s `auto_unmount` alone left a mount behind
/// now and then here (its unmount needs the connection dead before it looks, and the owner's
/// device descriptors close after the socket it waits on), so every round must find none left.
#[test]
fn kill_9_of_an_owner_of_several_busy_mounts_leaves_none() {
    riptide_faultfs::check_available().expect("FUSE must be usable for these tests");
    for round in 1..=BUSY_ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<(PathBuf, PathBuf)> = (0..BUSY_MOUNTS)
            .map(|i| dirs(&dir.path().join(i.to_string())))
            .collect();
        let mnts: Vec<PathBuf> = pairs.iter().map(|(_, mnt)| mnt.clone()).collect();
        let _leftovers = DetachLeftovers(mnts.clone());
        let mut owner = Owner::start(&pairs);

        // A writer per mount, appending until its mount goes away under it.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = mnts
            .iter()
            .map(|mnt| {
                let (file, stop) = (mnt.join("w"), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let Ok(mut f) = std::fs::File::create(&file) else {
                        return;
                    };
                    while !stop.load(Ordering::Relaxed) && f.write_all(&[7; 4096]).is_ok() {}
                })
            })
            .collect();
        wait_until("every writer to be writing", UNMOUNT_DEADLINE, || {
            mnts.iter()
                .all(|m| std::fs::metadata(m.join("w")).is_ok_and(|meta| meta.len() > 0))
        });

        owner.kill_9();
        let left = || mnts.iter().filter(|m| mounted(m)).count();
        let deadline = std::time::Instant::now() + UNMOUNT_DEADLINE;
        while left() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().expect("writer thread");
        }
        let still: Vec<_> = mnts.iter().filter(|m| mounted(m)).collect();
        assert!(
            still.is_empty(),
            "round {round}: {UNMOUNT_DEADLINE:?} after kill -9 of their owner, still mounted: {still:?}"
        );
    }
}
