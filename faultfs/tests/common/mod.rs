//! What the faultfs tests share: a mount over a fresh backing directory, and bounded polling.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use riptide_faultfs::FaultFs;

/// A [`FaultFs`] over `dir/backing`, mounted at `dir/mnt`. Fields drop in order: the mount goes
/// before the temporary directory is removed.
pub struct Mounted {
    pub fs: FaultFs,
    pub dir: tempfile::TempDir,
}

impl Mounted {
    pub fn new() -> Mounted {
        riptide_faultfs::check_available().expect("FUSE must be usable for these tests");
        let dir = tempfile::Builder::new()
            .prefix("riptide-faultfs-")
            .tempdir()
            .expect("temp dir");
        let (backing, mnt) = dirs(dir.path());
        let fs = FaultFs::mount(&backing, &mnt).expect("mount");
        Mounted { fs, dir }
    }

    /// `relative` seen through the mount.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.fs.mountpoint().join(relative)
    }

    /// `relative` in the backing directory: what is durable.
    pub fn backing(&self, relative: &str) -> PathBuf {
        self.fs.backing().join(relative)
    }
}

/// Creates `root/backing` and `root/mnt` and returns them (canonical).
pub fn dirs(root: &Path) -> (PathBuf, PathBuf) {
    let backing = root.join("backing");
    let mnt = root.join("mnt");
    std::fs::create_dir_all(&backing).expect("backing dir");
    std::fs::create_dir_all(&mnt).expect("mount dir");
    (
        backing.canonicalize().expect("canonical backing"),
        mnt.canonicalize().expect("canonical mount point"),
    )
}

/// Polls `check` every 20 ms until it is true; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn mounted(path: &Path) -> bool {
    riptide_faultfs::is_mounted(path).expect("read /proc/self/mounts")
}
