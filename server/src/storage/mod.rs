//! Durable storage of one node's Raft state: the hard state (term, vote, commit) and the log.
//!
//! The Raft core is sans-IO; this module is where its [`Ready`](crate::raft::Ready) output becomes
//! durable. A data directory holds two files:
//!
//! - `hardstate.json` ([`hard_state`]): term, vote and commit index, replaced atomically (write
//!   a temp file, fsync, rename, fsync the directory) and protected by a checksum;
//! - `wal.log` ([`wal`]): the log as an append-only sequence of checksummed records; a
//!   conflicting suffix is cut off physically (truncate the file) before new entries are appended.
//!
//! [`Storage::persist`] makes one `Ready`'s hard state and entries durable with one fsync of the
//! WAL, however many entries it holds (group commit). On [`Storage::open`] a torn last record is
//! cut off with a warning; anything else that is wrong (corruption before the end, a missing
//! file that should be there) is an error naming the file and the byte offset, so the node stops
//! instead of silently forgetting what it acknowledged.
//!
//! Snapshots (issue 7) will add a third file and a `first_index` to the WAL; the WAL already keeps
//! its entries' offsets relative to its first index so a compacted prefix fits in.

pub mod hard_state;
pub mod wal;

use std::fs;
use std::path::{Path, PathBuf};

use crate::raft::{DurableState, Entry, HardState, LogIndex};

pub use hard_state::HardStateFile;
pub use wal::Wal;

/// File name of the hard state inside a data directory.
pub const HARD_STATE_FILE: &str = "hardstate.json";
/// File name of the write-ahead log inside a data directory.
pub const WAL_FILE: &str = "wal.log";

/// Everything that can go wrong with a data directory. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that must exist is not there (the other files show the directory was in use).
    #[error("missing file {path}: {why}")]
    Missing { path: PathBuf, why: &'static str },
    /// A record before the end of the WAL, or the hard state, fails its checks.
    #[error("corrupt {path} at byte offset {offset}: {why}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// The caller asked for something the log cannot do (a gap or a truncation of nothing).
    #[error("invalid log operation on {path}: {why}")]
    InvalidAppend { path: PathBuf, why: String },
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another process")]
    Locked { path: PathBuf },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The durable state of one node: its hard state file and its WAL.
#[derive(Debug)]
pub struct Storage {
    /// The directory; kept for error messages and later snapshot files.
    dir: PathBuf,
    hard_state: HardStateFile,
    wal: Wal,
    /// An exclusive `flock` on the directory, held while the node runs, so two processes never
    /// write the same log.
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Storage {
    /// Opens (or creates, when it is empty or absent) a data directory and returns exactly what
    /// was durable in it.
    pub fn open(dir: &Path) -> Result<(Storage, DurableState), StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
        let lock = lock_dir(dir)?;
        let hs_path = dir.join(HARD_STATE_FILE);
        let wal_path = dir.join(WAL_FILE);
        let hs_exists = hs_path.exists();
        let wal_exists = wal_path.exists();
        // A fresh directory is initialised WAL first, then hard state; so a WAL without a hard
        // state file is an interrupted initialisation only while the WAL is still empty.
        if hs_exists && !wal_exists {
            return Err(StorageError::Missing {
                path: wal_path,
                why: "the hard state file exists, so the log must too",
            });
        }
        if !hs_exists && wal_exists {
            let len = fs::metadata(&wal_path)
                .map_err(|e| StorageError::io("stat", &wal_path, e))?
                .len();
            if len > 0 {
                return Err(StorageError::Missing {
                    path: hs_path,
                    why: "the log holds entries, so the hard state file must exist",
                });
            }
        }
        if !hs_exists {
            Wal::create(&wal_path)?;
            HardStateFile::create(&hs_path, HardState::default())?;
            sync_dir(dir)?;
        }
        let (hard_state, mut hs) = HardStateFile::open(&hs_path)?;
        let (wal, log) = Wal::open(&wal_path)?;
        // The commit index is written lazily; it can never be beyond what the log holds.
        let last = log.last().map_or(0, |e| e.index);
        hs.commit = hs.commit.min(last);
        let storage = Storage {
            dir: dir.to_path_buf(),
            hard_state,
            wal,
            _lock: lock,
        };
        Ok((
            storage,
            DurableState {
                hard_state: hs,
                snapshot: None,
                log,
            },
        ))
    }

    /// Makes a `Ready`'s hard state and entries durable. Entries go first (one fsync for all of
    /// them), then the hard state file when its term or vote changed. When the first entry's
    /// index is not right after the durable log's end, the conflicting suffix is cut off first.
    pub fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        if !entries.is_empty() {
            self.wal.append(entries)?;
        }
        if let Some(hs) = hard_state {
            self.hard_state.save(*hs)?;
        }
        Ok(())
    }

    /// Index of the last durable entry (0 when the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.wal.last_index()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of fsyncs done since open (WAL and hard state), for metrics.
    pub fn fsync_count(&self) -> u64 {
        self.wal.fsync_count() + self.hard_state.fsync_count()
    }
}

/// Takes an exclusive, non-blocking `flock` on a `LOCK` file in the directory.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<fs::File>, StorageError> {
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                StorageError::Locked {
                    path: dir.to_path_buf(),
                }
            } else {
                StorageError::io("lock", &path, std::io::Error::from(errno))
            }
        },
    )
}

/// Fsyncs a directory so a rename or a file creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryPayload;

    fn entry(index: LogIndex, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Command(format!("cmd{index}").into_bytes()),
        }
    }

    #[test]
    fn fresh_directory_opens_empty_and_reopens_with_what_was_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d, DurableState::default());
        let hs = HardState {
            term: 3,
            voted_for: Some(2),
            commit: 2,
        };
        s.persist(Some(&hs), &[entry(1, 1), entry(2, 3)]).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.hard_state, hs);
        assert_eq!(d.log, vec![entry(1, 1), entry(2, 3)]);
    }

    #[test]
    fn second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = Storage::open(dir.path()).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    }

    #[test]
    fn missing_wal_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path()).unwrap());
        fs::remove_file(dir.path().join(WAL_FILE)).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(WAL_FILE), "{err}");
    }

    #[test]
    fn missing_hard_state_next_to_a_non_empty_wal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.persist(None, &[entry(1, 1)]).unwrap();
        drop(s);
        fs::remove_file(dir.path().join(HARD_STATE_FILE)).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(HARD_STATE_FILE), "{err}");
    }

    #[test]
    fn commit_index_is_clamped_to_the_durable_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        let hs = HardState {
            term: 1,
            voted_for: None,
            commit: 10,
        };
        s.persist(Some(&hs), &[entry(1, 1)]).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.hard_state.commit, 1);
    }
}
