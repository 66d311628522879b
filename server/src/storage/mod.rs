//! Durable storage of one node's Raft state: the hard state (term, vote, commit), the log and
//! the latest snapshot.
//!
//! The Raft core is sans-IO; this module is where its [`Ready`](crate::raft::Ready) output becomes
//! durable. A data directory holds three files (and a `LOCK`):
//!
//! - `hardstate.json` ([`hard_state`]): term, vote and commit index, replaced atomically (write
//!   a temp file, fsync, rename, fsync the directory) and protected by a checksum;
//! - `wal.log` ([`wal`]): the log after the snapshot, as an append-only sequence of checksummed
//!   records; a conflicting suffix is cut off physically (truncate the file) before new entries
//!   are appended, and a compacted prefix is dropped by rewriting the file with the suffix;
//! - `snapshot.bin` ([`snapshot`]): the state machine's image at some index, which stands for
//!   every entry up to it; replaced atomically, absent until the first snapshot.
//!
//! [`Storage::persist`] makes one `Ready`'s hard state and entries durable with one fsync of the
//! WAL, however many entries it holds (group commit). On [`Storage::open`] a torn last record is
//! cut off with a warning; anything else that is wrong (corruption before the end, a missing
//! file that should be there, a log that does not continue the snapshot) is an error naming the
//! file, so the node stops instead of silently forgetting what it acknowledged.
//!
//! # Snapshots and crashes
//!
//! A snapshot is made durable before the log prefix it replaces is dropped, so every crash
//! point leaves a directory that opens to the same state:
//!
//! - a snapshot taken locally ([`Storage::save_snapshot`] then [`Storage::compact_log`]):
//!   crashing in between leaves WAL entries the snapshot covers; open drops them (the WAL's
//!   entry at the snapshot index has the snapshot's term, so they are the same history);
//! - a snapshot received from the leader ([`Storage::install_snapshot`]: write it, then empty
//!   the WAL): crashing in between leaves the old WAL; open drops its entries up to the
//!   snapshot and, when its entry at the snapshot index has another term (a history the
//!   leader's snapshot replaced, which can never commit), the whole WAL;
//! - a `.tmp` of either file left by a crash is removed on open.
//!
//! A WAL whose first entry is beyond the snapshot index + 1 has a hole no one can fill: error.
//!
//! Every file operation goes through the [`fs::Fs`] seam: [`Storage::open`] runs on the real
//! disk (and locks the directory), [`Storage::open_on`] on any file system, such as the
//! simulation's [`memfs::MemFs`], which loses, tears and reorders unsynced writes and crashes
//! between any two calls.

pub mod fs;
pub mod hard_state;
pub mod memfs;
pub mod snapshot;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::fs::{Fs, StdFs};

use crate::raft::{DurableState, Entry, HardState, LogIndex, Snapshot, SnapshotMeta};

pub use hard_state::HardStateFile;
pub use snapshot::SnapshotFile;
pub use wal::Wal;

/// File name of the hard state inside a data directory.
pub const HARD_STATE_FILE: &str = "hardstate.json";
/// File name of the write-ahead log inside a data directory.
pub const WAL_FILE: &str = "wal.log";
/// File name of the snapshot inside a data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

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
    fs: Arc<dyn Fs>,
    hard_state: HardStateFile,
    wal: Wal,
    snapshot: SnapshotFile,
    /// An exclusive `flock` on the directory, held while the node runs, so two processes never
    /// write the same log (none on a file system other than the real one).
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Storage {
    /// Opens (or creates, when it is empty or absent) a data directory and returns exactly what
    /// was durable in it.
    pub fn open(dir: &Path) -> Result<(Storage, DurableState), StorageError> {
        Storage::open_with_bugs(dir, wal::WalBugs::default())
    }

    /// [`Storage::open`] with the WAL's planted bugs on (test only; see [`crate::bugs`]).
    pub fn open_with_bugs(
        dir: &Path,
        bugs: wal::WalBugs,
    ) -> Result<(Storage, DurableState), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
        let lock = lock_dir(dir)?;
        let (mut storage, durable) = Storage::open_on(StdFs::shared(), dir, bugs)?;
        storage._lock = Some(lock);
        Ok((storage, durable))
    }

    /// Opens a data directory on the file system `fs`, without locking it (the caller makes
    /// sure nothing else writes there).
    pub fn open_on(
        fs: Arc<dyn Fs>,
        dir: &Path,
        bugs: wal::WalBugs,
    ) -> Result<(Storage, DurableState), StorageError> {
        fs.create_dir_all(dir)
            .map_err(|e| StorageError::io("create directory", dir, e))?;
        let exists = |path: &Path| {
            fs.exists(path)
                .map_err(|e| StorageError::io("stat", path, e))
        };
        let hs_path = dir.join(HARD_STATE_FILE);
        let wal_path = dir.join(WAL_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let hs_exists = exists(&hs_path)?;
        let wal_exists = exists(&wal_path)?;
        // A fresh directory is initialised WAL first, then hard state; so a WAL without a hard
        // state file is an interrupted initialisation only while the WAL is still empty.
        if hs_exists && !wal_exists {
            return Err(StorageError::Missing {
                path: wal_path,
                why: "the hard state file exists, so the log must too",
            });
        }
        if !hs_exists && exists(&snapshot_path)? {
            return Err(StorageError::Missing {
                path: hs_path,
                why: "a snapshot exists, so the hard state file must too",
            });
        }
        if !hs_exists && wal_exists && !Wal::holds_no_record(&fs, &wal_path)? {
            return Err(StorageError::Missing {
                path: hs_path,
                why: "the log holds entries, so the hard state file must exist",
            });
        }
        if !hs_exists {
            Wal::create_on(&fs, &wal_path)?;
            HardStateFile::create_on(fs.clone(), &hs_path, HardState::default())?;
            sync_dir(&*fs, dir)?;
        }
        let (hard_state, mut hs) = HardStateFile::open_on(fs.clone(), &hs_path)?;
        let (snapshot_file, snapshot) = SnapshotFile::open_on(fs.clone(), &snapshot_path)?;
        let snapshot_meta = snapshot.as_ref().map(|s| s.meta).unwrap_or_default();
        let (mut wal, log) = Wal::open_on(fs.clone(), &wal_path, snapshot_meta.index, bugs)?;
        let log = match &snapshot {
            Some(snapshot) => continue_snapshot(&mut wal, log, snapshot.meta)?,
            None => log,
        };
        // The commit index is written lazily; it can never be beyond what the log holds, and
        // everything the snapshot covers is committed.
        let last = log.last().map_or(snapshot_meta.index, |e| e.index);
        hs.commit = hs.commit.min(last).max(snapshot_meta.index);
        let storage = Storage {
            dir: dir.to_path_buf(),
            fs,
            hard_state,
            wal,
            snapshot: snapshot_file,
            _lock: None,
        };
        Ok((
            storage,
            DurableState {
                hard_state: hs,
                snapshot,
                log,
            },
        ))
    }

    /// Makes a `Ready`'s hard state and entries durable. The hard state file goes first when
    /// its term or vote changed, then the entries (one fsync for all of them). When the first
    /// entry's index is not right after the durable log's end, the conflicting suffix is cut
    /// off first.
    ///
    /// Hard state first closes a crash window: entries of a new term in the log under the
    /// hard state of an older term would let the restarted node vote again in the new term
    /// (for itself, after voting for that term's leader), and so two leaders in one term. A
    /// crash after the hard state and before the entries only loses entries nobody was told
    /// about; a commit index ahead of the log is clamped at open.
    ///
    /// The commit index written is kept below the first entry of the batch: the Ready's
    /// commit may cover entries of this very batch, which are not durable yet, and a crash
    /// before they are would leave the old log's entries at those indexes (maybe of another
    /// history, the suffix this batch replaces) under a commit index that claims them.
    pub fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        if let Some(hs) = hard_state {
            let durable_commit = entries
                .first()
                .map_or(hs.commit, |first| hs.commit.min(first.index - 1));
            self.hard_state.save(HardState {
                commit: durable_commit,
                ..*hs
            })?;
        }
        if !entries.is_empty() {
            self.wal.append(entries)?;
        }
        Ok(())
    }

    /// Makes a snapshot of this node's own state machine durable (atomically). The log prefix
    /// it covers stays until [`Storage::compact_log`]; a crash in between is harmless.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.check_snapshot_moves_forward(snapshot.meta)?;
        self.snapshot.save(snapshot)
    }

    /// Where [`snapshot::write_atomically`] must write a snapshot taken off the storage's
    /// thread; report it with [`Storage::snapshot_saved`] once durable.
    pub fn snapshot_path(&self) -> &Path {
        self.snapshot.path()
    }

    /// The file system the directory lives on (for a snapshot written off this thread).
    pub fn fs(&self) -> Arc<dyn Fs> {
        self.fs.clone()
    }

    /// A snapshot of `bytes` bytes was made durable at [`Storage::snapshot_path`] by
    /// [`snapshot::write_atomically`] on another thread (on [`Storage::fs`]).
    pub fn snapshot_saved(&mut self, meta: SnapshotMeta, bytes: u64) -> Result<(), StorageError> {
        self.check_snapshot_moves_forward(meta)?;
        self.snapshot.note_saved(meta, bytes);
        Ok(())
    }

    fn check_snapshot_moves_forward(&self, meta: SnapshotMeta) -> Result<(), StorageError> {
        match self.snapshot.meta() {
            Some(current) if meta.index <= current.index => Err(StorageError::InvalidAppend {
                path: self.dir.join(SNAPSHOT_FILE),
                why: format!(
                    "a snapshot at index {} does not replace the one at {}",
                    meta.index, current.index
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Drops the WAL's entries up to and including `index`, which a durable snapshot covers.
    pub fn compact_log(&mut self, index: LogIndex) -> Result<(), StorageError> {
        let covered = self.snapshot.meta().map_or(0, |m| m.index);
        if index > covered {
            return Err(StorageError::InvalidAppend {
                path: self.dir.join(WAL_FILE),
                why: format!(
                    "cannot compact through {index}: the durable snapshot only covers {covered}"
                ),
            });
        }
        self.wal.compact_through(index)
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. The snapshot
    /// is made durable first, then the WAL is emptied to continue at `meta.index + 1`.
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.save_snapshot(snapshot)?;
        self.wal.reset(snapshot.meta.index + 1)
    }

    /// Where the durable snapshot ends (None before the first one).
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshot.meta()
    }

    /// Size of the WAL in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.bytes()
    }

    /// Size of the snapshot file in bytes (0 without one).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot.bytes()
    }

    /// Index of the last durable entry (the snapshot's index when the WAL is empty, 0 when
    /// there is neither).
    pub fn last_index(&self) -> LogIndex {
        self.wal.last_index()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of fsyncs done since open (WAL and hard state), for metrics.
    pub fn fsync_count(&self) -> u64 {
        self.wal.fsync_count() + self.hard_state.fsync_count() + self.snapshot.fsync_count()
    }
}

/// Makes the WAL read at open continue the snapshot `meta` (see the module docs): drops the
/// entries it covers, or the whole log when it belongs to a history the snapshot replaced.
fn continue_snapshot(
    wal: &mut Wal,
    log: Vec<Entry>,
    meta: SnapshotMeta,
) -> Result<Vec<Entry>, StorageError> {
    let (Some(first), Some(last)) = (log.first(), log.last()) else {
        return Ok(log);
    };
    if first.index > meta.index + 1 {
        return Err(StorageError::Corrupt {
            path: wal.path().to_path_buf(),
            offset: 0,
            why: format!(
                "the log starts at index {} but the snapshot ends at {}: entries {}..{} are missing",
                first.index,
                meta.index,
                meta.index + 1,
                first.index - 1
            ),
        });
    }
    if first.index == meta.index + 1 {
        return Ok(log);
    }
    if last.index < meta.index {
        tracing::info!(
            snapshot_index = meta.index,
            wal_last_index = last.index,
            "the snapshot covers the whole log (crash after it was written): emptying the log"
        );
        wal.reset(meta.index + 1)?;
        return Ok(Vec::new());
    }
    let at_snapshot = &log[(meta.index - first.index) as usize];
    if at_snapshot.term != meta.term {
        tracing::warn!(
            snapshot_index = meta.index,
            snapshot_term = meta.term,
            log_term = at_snapshot.term,
            "the log holds another history at the snapshot index (crash while installing a \
             leader's snapshot): discarding the log"
        );
        wal.reset(meta.index + 1)?;
        return Ok(Vec::new());
    }
    tracing::info!(
        snapshot_index = meta.index,
        "dropping log entries the snapshot covers (crash before the log was compacted)"
    );
    wal.compact_through(meta.index)?;
    Ok(log.into_iter().filter(|e| e.index > meta.index).collect())
}

/// Takes an exclusive, non-blocking `flock` on a `LOCK` file in the directory.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, StorageError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
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
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryPayload;
    use std::fs;

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
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        // The commit index saved with a batch stays below the batch (see `persist`).
        assert_eq!(d.hard_state, HardState { commit: 0, ..hs });
        assert_eq!(d.log, vec![entry(1, 1), entry(2, 3)]);
        let next = HardState { term: 4, ..hs };
        s.persist(Some(&next), &[]).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.hard_state, next);
    }

    #[test]
    fn entries_of_a_new_term_never_reach_the_log_before_the_term_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.persist(Some(&hard_state(1, 1)), &[entry(1, 1)]).unwrap();
        // The hard state cannot be written (its temp file's name is taken by a directory),
        // as if the node crashed between the two writes of a Ready.
        let blocker = dir.path().join("hardstate.json.tmp");
        fs::create_dir(&blocker).unwrap();
        let new_term = HardState {
            term: 2,
            voted_for: Some(3),
            commit: 1,
        };
        assert!(s.persist(Some(&new_term), &[entry(2, 2)]).is_err());
        drop(s);
        fs::remove_dir(&blocker).unwrap();
        let (_s, d) = Storage::open(dir.path()).unwrap();
        // A log holding term 2 under a hard state of term 1 would let the restarted node
        // vote for itself in term 2 after voting for node 3 there: two leaders in one term.
        assert_eq!(d.hard_state.term, 1);
        assert_eq!(d.log, vec![entry(1, 1)]);
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

    fn snapshot(index: LogIndex, term: u64) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta { index, term },
            membership: None,
            data: format!("state at {index}").into_bytes(),
        }
    }

    fn hard_state(term: u64, commit: LogIndex) -> HardState {
        HardState {
            term,
            voted_for: Some(1),
            commit,
        }
    }

    /// A directory with entries 1..=last of term 1 persisted.
    fn dir_with_log(last: LogIndex) -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        let log: Vec<_> = (1..=last).map(|i| entry(i, 1)).collect();
        s.persist(Some(&hard_state(1, last)), &log).unwrap();
        (dir, s)
    }

    fn wal_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(WAL_FILE)).unwrap().len()
    }

    #[test]
    fn restart_after_a_snapshot_loads_it_and_the_log_suffix() {
        let (dir, mut s) = dir_with_log(10);
        let before = s.wal_bytes();
        s.save_snapshot(&snapshot(7, 1)).unwrap();
        s.compact_log(7).unwrap();
        assert!(s.wal_bytes() < before);
        assert_eq!(s.last_index(), 10);
        s.persist(None, &[entry(11, 1)]).unwrap();
        drop(s);
        let (s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(7, 1)));
        assert_eq!(d.log, (8..=11).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert_eq!(s.snapshot_meta(), Some(SnapshotMeta { index: 7, term: 1 }));
        assert_eq!(s.wal_bytes(), wal_len(dir.path()));
    }

    #[test]
    fn crash_between_snapshot_and_log_compaction_drops_the_covered_entries_at_open() {
        let (dir, mut s) = dir_with_log(10);
        s.save_snapshot(&snapshot(6, 1)).unwrap();
        let full = wal_len(dir.path());
        drop(s); // crash: the WAL still holds 1..=10
        let (s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(6, 1)));
        assert_eq!(d.log, (7..=10).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert!(
            wal_len(dir.path()) < full,
            "the covered prefix stays on disk"
        );
        // Everything the snapshot covers is committed.
        assert_eq!(d.hard_state.commit, 6);
        drop(s);
        // And it stays that way.
        let (_s, again) = Storage::open(dir.path()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn installed_snapshot_replaces_the_whole_log_and_entries_continue_after_it() {
        let (dir, mut s) = dir_with_log(5);
        s.install_snapshot(&snapshot(40, 3)).unwrap();
        assert_eq!((s.last_index(), s.wal_bytes()), (40, wal::FILE_HEADER_LEN));
        s.persist(Some(&hard_state(3, 41)), &[entry(41, 3), entry(42, 3)])
            .unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(40, 3)));
        assert_eq!(d.log, vec![entry(41, 3), entry(42, 3)]);
        // Saved with the batch 41..=42, the commit index stays below it: the snapshot's.
        assert_eq!(d.hard_state.commit, 40);
    }

    #[test]
    fn crash_while_installing_a_snapshot_beyond_the_log_empties_the_log_at_open() {
        let (dir, mut s) = dir_with_log(5);
        s.save_snapshot(&snapshot(40, 3)).unwrap();
        drop(s); // crash before the WAL was reset
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(40, 3)));
        assert!(d.log.is_empty());
        assert_eq!(d.hard_state.commit, 40);
        assert_eq!(wal_len(dir.path()), wal::FILE_HEADER_LEN);
    }

    #[test]
    fn crash_while_installing_over_a_conflicting_history_discards_that_history() {
        // The log holds 1..=10 of term 1; the leader's snapshot says index 8 has term 2, so
        // this node's entries 8.. belong to a history that can never commit.
        let (dir, mut s) = dir_with_log(10);
        s.save_snapshot(&snapshot(8, 2)).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(8, 2)));
        assert!(d.log.is_empty(), "{:?}", d.log);
    }

    #[test]
    fn log_that_does_not_reach_back_to_the_snapshot_is_an_error() {
        let (dir, mut s) = dir_with_log(10);
        s.save_snapshot(&snapshot(4, 1)).unwrap();
        let old_snapshot = fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        s.save_snapshot(&snapshot(10, 1)).unwrap();
        s.compact_log(10).unwrap();
        s.persist(None, &[entry(11, 1), entry(12, 1)]).unwrap();
        drop(s);
        // The snapshot goes back to index 4: entries 5..=10 are nowhere.
        fs::write(dir.path().join(SNAPSHOT_FILE), old_snapshot).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(WAL_FILE) && text.contains("5..10"), "{text}");
    }

    #[test]
    fn snapshot_written_off_the_storage_thread_counts_once_reported() {
        let (dir, mut s) = dir_with_log(10);
        let path = s.snapshot_path().to_path_buf();
        let fs = s.fs();
        let bytes = std::thread::spawn(move || {
            snapshot::write_atomically(&*fs, &path, &snapshot(8, 1)).unwrap()
        })
        .join()
        .unwrap();
        // Not reported yet: compaction is refused, the snapshot is not known.
        assert!(s.compact_log(8).is_err());
        s.snapshot_saved(SnapshotMeta { index: 8, term: 1 }, bytes)
            .unwrap();
        assert_eq!(s.snapshot_bytes(), bytes);
        s.compact_log(8).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot, Some(snapshot(8, 1)));
        assert_eq!(d.log, vec![entry(9, 1), entry(10, 1)]);
    }

    #[test]
    fn snapshots_only_move_forward_and_compaction_only_up_to_the_snapshot() {
        let (_dir, mut s) = dir_with_log(10);
        s.save_snapshot(&snapshot(6, 1)).unwrap();
        assert!(s.save_snapshot(&snapshot(6, 1)).is_err());
        assert!(s.save_snapshot(&snapshot(3, 1)).is_err());
        assert!(s.compact_log(7).is_err());
        s.compact_log(6).unwrap();
    }

    #[test]
    fn snapshot_without_a_hard_state_file_is_an_error() {
        let (dir, mut s) = dir_with_log(3);
        s.save_snapshot(&snapshot(3, 1)).unwrap();
        s.compact_log(3).unwrap();
        drop(s);
        fs::remove_file(dir.path().join(HARD_STATE_FILE)).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(HARD_STATE_FILE), "{err}");
    }

    #[test]
    fn corrupt_snapshot_stops_the_open_naming_the_file() {
        let (dir, mut s) = dir_with_log(3);
        s.save_snapshot(&snapshot(3, 1)).unwrap();
        drop(s);
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(SNAPSHOT_FILE), "{err}");
    }

    /// Opens a data dir on an in-memory disk.
    fn open_mem(disk: &memfs::MemFs) -> Result<(Storage, DurableState), StorageError> {
        Storage::open_on(
            Arc::new(disk.clone()),
            Path::new("/d"),
            wal::WalBugs::default(),
        )
    }

    #[test]
    fn a_power_loss_mid_batch_keeps_every_synced_entry_and_never_mixes_in_a_partial_batch() {
        use rand::SeedableRng;
        let (mut refused, mut cut) = (0, 0);
        for seed in 0..300 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let disk = memfs::MemFs::with_sector(16);
            let (mut s, _) = open_mem(&disk).unwrap();
            let synced: Vec<_> = (1..=4).map(|i| entry(i, 1)).collect();
            s.persist(Some(&hard_state(1, 0)), &synced).unwrap();
            // The process dies between the write of the next batch and its fsync.
            disk.arm_crash(1);
            let batch: Vec<_> = (5..=9).map(|i| entry(i, 1)).collect();
            assert!(s.persist(None, &batch).is_err());
            drop(s);
            disk.crash(memfs::Crash::PowerLoss, &mut rng);
            match open_mem(&disk) {
                Ok((_, d)) => {
                    // Everything synced, then a prefix of the batch: never a hole.
                    assert!(d.log.len() >= 4, "seed {seed}: {:?}", d.log);
                    assert_eq!(
                        d.log[..],
                        [synced.clone(), batch.clone()].concat()[..d.log.len()]
                    );
                    cut += usize::from(d.log.len() < 9);
                }
                Err(e) => {
                    // A later sector landed without an earlier one: refused like a bit flip.
                    assert!(
                        matches!(e, StorageError::Corrupt { .. }),
                        "seed {seed}: {e}"
                    );
                    assert!(e.to_string().contains(WAL_FILE), "{e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0 && cut > 0, "refused {refused}, cut {cut}");
    }

    #[test]
    fn a_crash_between_any_two_calls_of_a_snapshot_install_or_compaction_opens_to_one_history() {
        use rand::SeedableRng;
        for crash_after in 0..14 {
            for kind in [memfs::Crash::Process, memfs::Crash::PowerLoss] {
                let disk = memfs::MemFs::with_sector(16);
                let (mut s, _) = open_mem(&disk).unwrap();
                let log: Vec<_> = (1..=10).map(|i| entry(i, 1)).collect();
                s.persist(Some(&hard_state(1, 10)), &log).unwrap();
                disk.arm_crash(crash_after);
                let done = s
                    .save_snapshot(&snapshot(6, 1))
                    .and_then(|()| s.compact_log(6))
                    .and_then(|()| s.install_snapshot(&snapshot(20, 2)));
                drop(s);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crash_after);
                disk.crash(kind, &mut rng);
                let (_, d) = open_mem(&disk).unwrap_or_else(|e| panic!("{crash_after}: {e}"));
                // Either the old log (maybe under the first snapshot), or the installed snapshot
                // with an empty log: nothing in between, nothing lost.
                match d.snapshot.as_ref().map(|s| s.meta.index) {
                    None => assert_eq!(d.log, log),
                    Some(6) => assert_eq!(d.log, log[6..]),
                    Some(20) => assert!(d.log.is_empty(), "{:?}", d.log),
                    other => panic!("snapshot {other:?}"),
                }
                if done.is_ok() {
                    assert_eq!(d.snapshot.map(|s| s.meta.index), Some(20));
                }
            }
        }
    }

    #[test]
    fn a_crash_after_the_hard_state_never_leaves_a_commit_index_over_a_replaced_suffix() {
        // A follower holds 1..=5 of term 1; a leader of term 2 replaces 3..=5 and says 5 is
        // committed. The crash comes after the hard state (term 2) and before the WAL write.
        let disk = memfs::MemFs::with_sector(16);
        let (mut s, _) = open_mem(&disk).unwrap();
        s.persist(
            Some(&hard_state(1, 2)),
            &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(),
        )
        .unwrap();
        let calls_before = disk.changes();
        let new_term = HardState {
            term: 2,
            voted_for: None,
            commit: 5,
        };
        let replacement: Vec<_> = (3..=5).map(|i| entry(i, 2)).collect();
        // Find the call that starts the WAL's part: the hard state takes 5 calls.
        disk.arm_crash(5);
        assert!(s.persist(Some(&new_term), &replacement).is_err());
        assert_eq!(
            disk.changes() - calls_before,
            5,
            "the hard state was written"
        );
        drop(s);
        use rand::SeedableRng;
        disk.crash(
            memfs::Crash::Process,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
        );
        let (_, d) = open_mem(&disk).unwrap();
        assert_eq!(d.hard_state.term, 2);
        assert_eq!(d.log, (1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        // 3..=5 of term 1 were never committed: a commit index of 5 would apply them.
        assert!(d.hard_state.commit <= 2, "{:?}", d.hard_state);
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
        s.persist(None, &[entry(1, 1)]).unwrap();
        s.persist(Some(&hs), &[]).unwrap();
        drop(s);
        let (_s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.hard_state.commit, 1);
    }
}
