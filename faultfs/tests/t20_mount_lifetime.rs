//! Mounts are owned like processes: gone after drop, after a panic in their owner, and after
//! `kill -9` of the process that owns one; a clean unmount persists what was pending.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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

/// Kills the child on drop, so a failed assertion leaves no process (and so no mount) behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_of_the_owning_process_leaves_no_mount() {
    riptide_faultfs::check_available().expect("FUSE must be usable for these tests");
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = dirs(dir.path());
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_faultfs-mount"))
            .arg(&backing)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn faultfs-mount"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("faultfs-mount reports its mount");
    assert_eq!(line.trim(), format!("mounted {}", mnt.display()));
    assert!(mounted(&mnt));
    std::fs::write(mnt.join("f"), b"x").unwrap();

    // SIGKILL by PID: no destructor runs in the child; fusermount3 must clean up.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.0.wait();
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
