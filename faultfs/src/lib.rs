//! Disk faults as real as LazyFS: a FUSE passthrough that keeps file data in memory until it is
//! fsynced, so a test can cut the power under a running store and see what it really made durable.
//!
//! A [`FaultFs`] mounts a view of a backing directory. Reads, writes, truncations, creates,
//! renames, unlinks, mkdir, readdir, stat, chmod, statfs and fsync all work as on a local disk,
//! and `flock`/`fcntl` locks work (the kernel keeps them for the mount). What differs is
//! durability:
//!
//! - Writes and truncations (`set_len`, `O_TRUNC`) wait in memory, per file, until that file is
//!   fsynced (`fsync` or `fdatasync`); only then do they reach the backing directory. Readers see
//!   them at once, as they would through the page cache. `close` makes nothing durable.
//! - Metadata operations (create, mkdir, rename, unlink, rmdir, chmod, chown) reach the backing
//!   directory at once, so they are durable at once, as in LazyFS. *Simplification:* a real disk
//!   may lose a rename or a create that its directory was not fsynced after; this layer does not
//!   model that, so a store that forgets to fsync a directory is not caught here. It does catch
//!   a store that renames a file whose data it never fsynced (the rename survives, the data does
//!   not: the file is empty or short after the fault).
//!
//! The faults, each meant to be applied right after the process using the mount was killed
//! with SIGKILL (the power cut itself):
//!
//! - [`FaultFs::lose_unsynced`]: every write not yet fsynced is forgotten.
//! - [`FaultFs::tear_last_write`]: the most recently written file keeps its unsynced writes up
//!   to its last one, and a seeded prefix of that one (a torn write); every other unsynced write
//!   is forgotten.
//! - [`corrupt_file`]: seeded bit flips in a file at rest (a stopped node's WAL, hard state or
//!   snapshot), with or without a mount.
//!
//! Mounts are owned like processes. Dropping the [`FaultFs`] (also in a panic that unwinds past
//! it) unmounts. For an owner that ends without unmounting (`kill -9`, an abort, `exit`), each
//! mount has a guard process that waits on a pipe only the owner holds and lazily detaches the
//! mount when that pipe closes; `fusermount3`'s `auto_unmount` is a second line, which alone
//! misses a mount now and then (the guard module says why). A clean [`FaultFs::unmount`] (or
//! drop) first persists every pending write, as a clean shutdown syncs a real disk.
//! [`check_available`] says, naming what is missing, whether FUSE can be used here at all.
//!
//! ```no_run
//! # fn main() -> Result<(), riptide_faultfs::FaultFsError> {
//! use std::io::Write;
//! let (backing, mnt) = (std::path::Path::new("/tmp/b"), std::path::Path::new("/tmp/m"));
//! let fs = riptide_faultfs::FaultFs::mount(backing, mnt)?;
//! let mut f = std::fs::File::create(mnt.join("x")).unwrap();
//! f.write_all(b"durable").unwrap();
//! f.sync_all().unwrap();
//! f.write_all(b" and not").unwrap();
//! drop(f);
//! let lost = fs.lose_unsynced()?; // lost.files[0]: "x", 8 bytes
//! assert_eq!(std::fs::read(mnt.join("x")).unwrap(), b"durable");
//! fs.unmount()
//! # }
//! ```

mod cache;
mod corrupt;
mod fs;
mod guard;

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, INodeNo, MountOption, SessionACL};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use corrupt::{corrupt_file, BitFlip, CorruptReport};

use cache::PendingOp;
use fs::{FaultFilesystem, Shared};
use guard::MountGuard;

/// How long an unmount waits for the kernel to drop the mount before it reports failure.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request-handling threads: a slow fsync of one file must not stall reads of another.
const FUSE_THREADS: usize = 4;

/// What went wrong, naming the file or the missing piece.
#[derive(Debug, thiserror::Error)]
pub enum FaultFsError {
    #[error("FUSE is not usable here: {what}")]
    Unavailable { what: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is already a mount point", path.display())]
    AlreadyMounted { path: PathBuf },
    #[error("mounting {} at {}: {source}", backing.display(), mountpoint.display())]
    Mount {
        backing: PathBuf,
        mountpoint: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is still mounted {waited:?} after the unmount", path.display())]
    StillMounted { path: PathBuf, waited: Duration },
    #[error("cannot flip {bits} distinct bits in {}: it has only {len} bytes", path.display())]
    TooSmallToCorrupt { path: PathBuf, len: u64, bits: u32 },
}

/// One file's unsynced data that a fault dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostFile {
    /// Relative to the mount point (the file's last name, if it was unlinked while open).
    pub path: PathBuf,
    /// Bytes of write payload dropped.
    pub bytes: u64,
    /// Writes and truncations dropped.
    pub ops: usize,
}

/// What [`FaultFs::lose_unsynced`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossReport {
    /// Files that had unsynced data, by path.
    pub files: Vec<LostFile>,
    /// Sum of `files[..].bytes`.
    pub bytes: u64,
}

/// The torn write of a [`TornReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornWrite {
    /// Relative to the mount point.
    pub path: PathBuf,
    /// Where the torn write started in the file.
    pub offset: u64,
    /// Its full length.
    pub len: u64,
    /// How many of its first bytes were persisted (less than `len` whenever `len` > 1).
    pub kept: u64,
    /// Unsynced writes to the same file before it, persisted whole (the cache had flushed them).
    pub earlier_writes_kept: usize,
}

/// What [`FaultFs::tear_last_write`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornReport {
    /// The write torn, or `None` when no file had an unsynced write.
    pub torn: Option<TornWrite>,
    /// Everything else unsynced, dropped.
    pub lost: LossReport,
}

/// A FUSE passthrough of `backing` mounted at `mountpoint` that keeps every write in memory until
/// the file is fsynced, as a disk's volatile cache (or LazyFS) does. See the crate docs for what
/// is and is not modelled. Unmounts on drop; leaves no mount if its owner is `kill -9`'d.
pub struct FaultFs {
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    /// The FUSE session; `None` once unmounted. Dropping it closes the socket `fusermount3`
    /// waits on, which unmounts.
    session: Option<BackgroundSession>,
    /// Detaches the mount if this process ends without unmounting it; disarmed by a clean
    /// unmount.
    guard: Option<MountGuard>,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFs")
            .field("backing", &self.shared.backing)
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl FaultFs {
    /// Mounts a view of the directory `backing` at the (existing, empty) directory `mountpoint`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<FaultFs, FaultFsError> {
        check_available()?;
        let resolve = |path: &Path| {
            path.canonicalize().map_err(|source| FaultFsError::Io {
                op: "resolve",
                path: path.to_path_buf(),
                source,
            })
        };
        let backing = resolve(backing)?;
        let mountpoint = resolve(mountpoint)?;
        if is_mounted(&mountpoint)? {
            return Err(FaultFsError::AlreadyMounted { path: mountpoint });
        }
        let shared = Arc::new(Shared::new(backing.clone()));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("riptide-faultfs".into()),
            MountOption::Subtype("riptide-faultfs".into()),
            MountOption::AutoUnmount,
            MountOption::NoAtime,
        ];
        // fusermount3 accepts auto_unmount only with allow_other (root may always set it;
        // anyone else needs user_allow_other in /etc/fuse.conf, which check_available checks).
        config.acl = SessionACL::All;
        config.n_threads = Some(FUSE_THREADS);
        let filesystem = FaultFilesystem {
            shared: Arc::clone(&shared),
        };
        // The guard comes first, so that the mount is never without one.
        let fusermount =
            find_in_path("fusermount3").unwrap_or_else(|| PathBuf::from("fusermount3"));
        let guard =
            MountGuard::spawn(&mountpoint, &fusermount).map_err(|source| FaultFsError::Io {
                op: "start the mount guard for",
                path: mountpoint.clone(),
                source,
            })?;
        let session = match fuser::spawn_mount(filesystem, &mountpoint, &config) {
            Ok(session) => session,
            Err(source) => {
                guard.disarm();
                return Err(FaultFsError::Mount {
                    backing,
                    mountpoint,
                    source,
                });
            }
        };
        tracing::debug!(backing = %backing.display(), mountpoint = %mountpoint.display(), "mounted");
        Ok(FaultFs {
            mountpoint,
            shared,
            session: Some(session),
            guard: Some(guard),
        })
    }

    /// Where the view is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory that holds what is durable (canonical).
    pub fn backing(&self) -> &Path {
        &self.shared.backing
    }

    /// Forgets every write and truncation not yet fsynced: a power cut. Call it right after the
    /// process using the mount was killed with SIGKILL.
    pub fn lose_unsynced(&self) -> Result<LossReport, FaultFsError> {
        let dropped = {
            let mut state = self.shared.lock();
            let dropped = state.cache.take_all();
            report_loss(&state.nodes, dropped)
        };
        self.invalidate(&dropped.1);
        Ok(dropped.0)
    }

    /// A power cut in the middle of a write: the most recently written file keeps its unsynced
    /// writes before its last one and the first `kept` bytes of that one (`kept` drawn from
    /// `seed`, in `1..len` for a write of `len` > 1 bytes); every other unsynced change, in any
    /// file, is forgotten. Call it right after the process using the mount was killed.
    pub fn tear_last_write(&self, seed: u64) -> Result<TornReport, FaultFsError> {
        let (report, inos) = {
            let mut state = self.shared.lock();
            let torn = match state.cache.most_recently_written() {
                Some(ino) => {
                    let dirty = state.cache.take(ino);
                    let path = state.nodes.path(ino).map(Path::to_path_buf);
                    match (dirty, path) {
                        (Some(dirty), Some(path)) => self.persist_torn(&path, dirty.ops, seed)?,
                        _ => None,
                    }
                }
                None => None,
            };
            let rest = state.cache.take_all();
            let (lost, inos) = report_loss(&state.nodes, rest);
            (TornReport { torn, lost }, inos)
        };
        self.invalidate(&inos);
        Ok(report)
    }

    fn persist_torn(
        &self,
        path: &Path,
        mut ops: Vec<PendingOp>,
        seed: u64,
    ) -> Result<Option<TornWrite>, FaultFsError> {
        // Ops after the last write (truncations) are dropped with the rest of the power cut.
        let Some(last) = ops
            .iter()
            .rposition(|op| matches!(op, PendingOp::Write { .. }))
        else {
            return Ok(None);
        };
        ops.truncate(last + 1);
        let Some(PendingOp::Write { offset, data }) = ops.pop() else {
            return Ok(None);
        };
        let len = data.len() as u64;
        let kept = if len > 1 {
            ChaCha8Rng::seed_from_u64(seed).gen_range(1..len)
        } else {
            0
        };
        let earlier_writes_kept = ops
            .iter()
            .filter(|op| matches!(op, PendingOp::Write { .. }))
            .count();
        ops.push(PendingOp::Write {
            offset,
            data: data[..kept as usize].to_vec(),
        });
        self.shared
            .persist(path, &ops)
            .map_err(|source| FaultFsError::Io {
                op: "persist torn write to",
                path: self.shared.full_path(path),
                source,
            })?;
        Ok(Some(TornWrite {
            path: path.to_path_buf(),
            offset,
            len,
            kept,
            earlier_writes_kept,
        }))
    }

    /// Tells the kernel to drop cached pages of files a fault changed (best effort: the
    /// attribute TTL is zero anyway, and a new open drops the pages too).
    fn invalidate(&self, inos: &[u64]) {
        if let Some(session) = &self.session {
            let notifier = session.notifier();
            for ino in inos {
                if let Err(e) = notifier.inval_inode(INodeNo(*ino), 0, 0) {
                    tracing::debug!(ino, error = %e, "page cache invalidation skipped");
                }
            }
        }
    }

    /// Persists every pending write (a clean shutdown syncs), then unmounts and waits until the
    /// mount is gone.
    pub fn unmount(mut self) -> Result<(), FaultFsError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), FaultFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let persisted = self.persist_all();
        // Detach the mount ourselves: closing the session's socket alone did not make the
        // waiting fusermount3 unmount while this process still serves the mount (it does once
        // the process is gone, which is what covers kill -9).
        let detached = detach(&self.mountpoint);
        drop(session);
        let gone = detached.and_then(|()| self.wait_unmounted());
        if let Some(guard) = self.guard.take() {
            if gone.is_ok() {
                guard.disarm();
            } else {
                // Armed, the guard detaches the mount once more on its way out, from a process
                // that does not serve it.
                drop(guard);
            }
        }
        gone?;
        persisted
    }

    fn wait_unmounted(&self) -> Result<(), FaultFsError> {
        let deadline = Instant::now() + UNMOUNT_TIMEOUT;
        while is_mounted(&self.mountpoint)? {
            if Instant::now() > deadline {
                return Err(FaultFsError::StillMounted {
                    path: self.mountpoint.clone(),
                    waited: UNMOUNT_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn persist_all(&self) -> Result<(), FaultFsError> {
        let mut state = self.shared.lock();
        let mut first_error = None;
        for (ino, dirty) in state.cache.take_all() {
            let Some(path) = state.nodes.path(ino) else {
                continue;
            };
            if let Err(source) = self.shared.persist(path, &dirty.ops) {
                first_error.get_or_insert(FaultFsError::Io {
                    op: "persist on unmount",
                    path: self.shared.full_path(path),
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount on drop failed");
        }
    }
}

/// Lazily unmounts `mountpoint`: `umount2(MNT_DETACH)` as root, `fusermount3 -u -z` otherwise.
/// Not a mount point (any more) is not an error. For cleaning up a mount its owner left, as a
/// test does when it has proved that one was left.
pub fn detach(mountpoint: &Path) -> Result<(), FaultFsError> {
    use std::os::unix::ffi::OsStrExt;
    let io = |source| FaultFsError::Io {
        op: "unmount",
        path: mountpoint.to_path_buf(),
        source,
    };
    let c_path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|e| io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } == 0 {
        return Ok(());
    }
    let errno = io::Error::last_os_error();
    if errno.raw_os_error() == Some(libc::EINVAL) {
        // Not a mount point (any more): nothing to do.
        return Ok(());
    }
    let fusermount = find_in_path("fusermount3").unwrap_or_else(|| PathBuf::from("fusermount3"));
    let output = std::process::Command::new(fusermount)
        .args(["-u", "-z", "-q", "--"])
        .arg(mountpoint)
        .output()
        .map_err(io)?;
    if output.status.success() || !is_mounted(mountpoint)? {
        Ok(())
    } else {
        Err(io(io::Error::other(format!(
            "umount2: {errno}; fusermount3 -u -z: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))))
    }
}

fn report_loss(nodes: &fs::Nodes, dropped: Vec<(u64, cache::DirtyFile)>) -> (LossReport, Vec<u64>) {
    let mut report = LossReport::default();
    let mut inos = Vec::with_capacity(dropped.len());
    for (ino, dirty) in dropped {
        let lost = LostFile {
            path: nodes.path(ino).map_or_else(
                || PathBuf::from(format!("<inode {ino}>")),
                Path::to_path_buf,
            ),
            bytes: dirty.pending_bytes(),
            ops: dirty.ops.len(),
        };
        report.bytes += lost.bytes;
        report.files.push(lost);
        inos.push(ino);
    }
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    (report, inos)
}

/// Is FUSE usable here: `/dev/fuse` can be opened, `fusermount3` is installed, and (when not
/// root) `/etc/fuse.conf` allows `allow_other`, which `auto_unmount` needs. The error names what
/// is missing and how to get it.
pub fn check_available() -> Result<(), FaultFsError> {
    let unavailable = |what: String| Err(FaultFsError::Unavailable { what });
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return unavailable(format!(
            "cannot open /dev/fuse ({e}): load the fuse module, or give the container the device"
        ));
    }
    if find_in_path("fusermount3").is_none() {
        return unavailable("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
        if !conf.lines().any(|line| line.trim() == "user_allow_other") {
            return unavailable(
                "not root, and /etc/fuse.conf lacks `user_allow_other` (auto_unmount needs allow_other)"
                    .into(),
            );
        }
    }
    Ok(())
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether `path` is a mount point now (per `/proc/self/mounts`). Compare canonical paths.
pub fn is_mounted(path: &Path) -> Result<bool, FaultFsError> {
    let mounts = std::fs::read("/proc/self/mounts").map_err(|source| FaultFsError::Io {
        op: "read",
        path: PathBuf::from("/proc/self/mounts"),
        source,
    })?;
    Ok(mounts
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(1))
        .any(|field| unescape_mount_field(field) == path))
}

/// `/proc/self/mounts` writes space, tab, newline and backslash as `\040`-style octal.
fn unescape_mount_field(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(
            unescape_mount_field(br"/tmp/a\040b\134c"),
            PathBuf::from(r"/tmp/a b\c")
        );
    }
}
