//! The hard state file: term, vote and commit index, replaced atomically.
//!
//! Raft needs term and vote durable before the node answers anything that depends on them (a
//! vote, or any message in a new term); otherwise a restarted node could vote twice in one term.
//! The file is small, so it is rewritten whole: write `hardstate.json.tmp`, fsync it, rename it
//! over `hardstate.json`, fsync the directory. A crash leaves either the old or the new file.
//! The JSON carries a CRC32 of the state's own JSON, so a damaged file is detected, not trusted.
//!
//! Only a change of term or vote costs a write: the commit index is an optimisation (a restarted
//! node relearns it from the leader), so it is saved along with the next term or vote change and
//! never on its own. Group commit of log entries therefore costs one fsync, not three.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fs::{Fs, StdFs};
use super::{sync_dir, StorageError};
use crate::raft::HardState;

/// The on-disk form: the state and a checksum of its JSON encoding.
#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    /// CRC32 (crc32fast) of `serde_json::to_vec(&hard_state)`.
    crc32: u32,
    hard_state: HardState,
}

/// The hard state file of one data directory.
#[derive(Debug)]
pub struct HardStateFile {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    /// What the file holds now; a save with the same term and vote is skipped.
    current: HardState,
    /// Fsyncs done (file and directory), for metrics.
    fsyncs: u64,
}

impl HardStateFile {
    /// Writes a new file (atomically) holding `hs`.
    pub fn create(path: &Path, hs: HardState) -> Result<HardStateFile, StorageError> {
        HardStateFile::create_on(StdFs::shared(), path, hs)
    }

    /// [`HardStateFile::create`] on the file system `fs`.
    pub fn create_on(
        fs: Arc<dyn Fs>,
        path: &Path,
        hs: HardState,
    ) -> Result<HardStateFile, StorageError> {
        let mut f = HardStateFile {
            fs,
            path: path.to_path_buf(),
            current: hs,
            fsyncs: 0,
        };
        f.write(hs)?;
        Ok(f)
    }

    /// Reads and checks an existing file.
    pub fn open(path: &Path) -> Result<(HardStateFile, HardState), StorageError> {
        HardStateFile::open_on(StdFs::shared(), path)
    }

    /// [`HardStateFile::open`] on the file system `fs`.
    pub fn open_on(
        fs: Arc<dyn Fs>,
        path: &Path,
    ) -> Result<(HardStateFile, HardState), StorageError> {
        let bytes = fs
            .read(path)
            .map_err(|e| StorageError::io("read", path, e))?;
        let corrupt = |why: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            why,
        };
        let on_disk: OnDisk =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        let encoded = serde_json::to_vec(&on_disk.hard_state)
            .map_err(|e| corrupt(format!("cannot re-encode: {e}")))?;
        let crc = crc32fast::hash(&encoded);
        if crc != on_disk.crc32 {
            return Err(corrupt(format!(
                "checksum mismatch (stored {:08x}, computed {crc:08x})",
                on_disk.crc32
            )));
        }
        let hs = on_disk.hard_state;
        let file = HardStateFile {
            fs,
            path: path.to_path_buf(),
            current: hs,
            fsyncs: 0,
        };
        Ok((file, hs))
    }

    /// Makes `hs` durable if its term or vote differs from what the file holds.
    pub fn save(&mut self, hs: HardState) -> Result<(), StorageError> {
        if hs.term == self.current.term && hs.voted_for == self.current.voted_for {
            return Ok(());
        }
        self.write(hs)?;
        self.current = hs;
        Ok(())
    }

    /// Fsyncs done so far.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs
    }

    fn write(&mut self, hs: HardState) -> Result<(), StorageError> {
        let encoded = serde_json::to_vec(&hs).map_err(|e| StorageError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            why: format!("cannot encode hard state: {e}"),
        })?;
        let on_disk = OnDisk {
            crc32: crc32fast::hash(&encoded),
            hard_state: hs,
        };
        let mut bytes = serde_json::to_vec(&on_disk).map_err(|e| StorageError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            why: format!("cannot encode hard state: {e}"),
        })?;
        bytes.push(b'\n');
        let tmp = self.path.with_extension("json.tmp");
        let mut file = self
            .fs
            .create(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))?;
        file.write_at(0, &bytes)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        file.sync(true)
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(file);
        self.fs
            .rename(&tmp, &self.path)
            .map_err(|e| StorageError::io("rename", &tmp, e))?;
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        sync_dir(&*self.fs, dir)?;
        self.fsyncs += 2;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn saved_state_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hs.json");
        let mut f = HardStateFile::create(&path, HardState::default()).unwrap();
        let hs = HardState {
            term: 7,
            voted_for: Some(3),
            commit: 4,
        };
        f.save(hs).unwrap();
        let (_, read) = HardStateFile::open(&path).unwrap();
        assert_eq!(read, hs);
    }

    #[test]
    fn commit_only_change_costs_no_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hs.json");
        let mut f = HardStateFile::create(&path, HardState::default()).unwrap();
        let before = f.fsync_count();
        f.save(HardState {
            commit: 9,
            ..HardState::default()
        })
        .unwrap();
        assert_eq!(f.fsync_count(), before);
    }

    #[test]
    fn damaged_file_is_reported_as_corrupt_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hs.json");
        let mut f = HardStateFile::create(&path, HardState::default()).unwrap();
        f.save(HardState {
            term: 5,
            voted_for: Some(1),
            commit: 0,
        })
        .unwrap();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"term\":5", "\"term\":6");
        fs::write(&path, text).unwrap();
        let err = HardStateFile::open(&path).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("hs.json"), "{err}");
    }
}
