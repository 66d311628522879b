//! The snapshot file: the state machine's image at one log index, replaced atomically.
//!
//! A snapshot stands for every log entry up to and including its index, so once it is durable
//! the log prefix can go (log compaction), and a follower too far behind is sent it instead of
//! entries the leader no longer has. There is one file per data directory, `snapshot.bin`:
//!
//! ```text
//! +----------+-----------+-----------+----------------+-----------+------------------+
//! | magic    | index: u64| term: u64 | data_len: u64  | crc32: u32| data (data_len)  |
//! | 8 bytes  |           |           |                | see below |                  |
//! +----------+-----------+-----------+----------------+-----------+------------------+
//! ```
//!
//! Integers are little endian; the CRC32 covers index, term, data length and data. In format
//! 2 (magic `RTSNAP02`) the data area starts with the cluster configuration at the index:
//! `membership_len: u32`, then its postcard encoding, then the state machine's image, which is
//! opaque here (the KV layer's [`KvStore::snapshot`](crate::kv::KvStore::snapshot)). Format 1
//! (`RTSNAP01`, no configuration: the initial one) is still read.
//!
//! A new snapshot is written to `snapshot.bin.tmp`, fsynced, renamed over `snapshot.bin`, and
//! the directory is fsynced: a crash leaves either the old file or the new one, never a mix.
//! A `.tmp` left behind by a crash is removed when the directory is opened. Because the rename
//! is the only way a snapshot appears, a `snapshot.bin` that fails any check is corruption, not
//! a torn write: opening fails naming the file, and the node does not start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{Fs, StdFs};
use super::{sync_dir, StorageError};
use crate::raft::{Snapshot, SnapshotMeta};

/// First bytes of every snapshot file this code writes (format version 2).
pub const MAGIC: &[u8; 8] = b"RTSNAP02";
/// First bytes of a format 1 file, without a configuration.
const MAGIC_V1: &[u8; 8] = b"RTSNAP01";
/// Bytes before the data: magic, index, term, data length, checksum.
pub const HEADER_LEN: usize = 8 + 8 + 8 + 8 + 4;

/// The snapshot file of one data directory.
#[derive(Debug)]
pub struct SnapshotFile {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    /// What the file holds now (None before the first snapshot).
    meta: Option<SnapshotMeta>,
    /// Size of the file in bytes (0 without one), for metrics.
    bytes: u64,
    /// Fsyncs done (file and directory), for metrics.
    fsyncs: u64,
}

impl SnapshotFile {
    /// Reads the snapshot at `path`, if there is one, after removing a `.tmp` a crash left
    /// behind. A file that fails its checks is an error naming it.
    pub fn open(path: &Path) -> Result<(SnapshotFile, Option<Snapshot>), StorageError> {
        SnapshotFile::open_on(StdFs::shared(), path)
    }

    /// [`SnapshotFile::open`] on the file system `fs`.
    pub fn open_on(
        fs: Arc<dyn Fs>,
        path: &Path,
    ) -> Result<(SnapshotFile, Option<Snapshot>), StorageError> {
        let tmp = tmp_path(path);
        if fs
            .exists(&tmp)
            .map_err(|e| StorageError::io("stat", &tmp, e))?
        {
            tracing::warn!(
                file = %tmp.display(),
                "removing an unfinished snapshot left by a crash"
            );
            fs.remove(&tmp)
                .map_err(|e| StorageError::io("remove", &tmp, e))?;
        }
        let bytes = match fs.read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = SnapshotFile {
                    fs,
                    path: path.to_path_buf(),
                    meta: None,
                    bytes: 0,
                    fsyncs: 0,
                };
                return Ok((file, None));
            }
            Err(e) => return Err(StorageError::io("read", path, e)),
        };
        let snapshot = decode(path, &bytes)?;
        let file = SnapshotFile {
            fs,
            path: path.to_path_buf(),
            meta: Some(snapshot.meta),
            bytes: bytes.len() as u64,
            fsyncs: 0,
        };
        Ok((file, Some(snapshot)))
    }

    /// Makes `snapshot` the durable snapshot, atomically (see the module docs).
    pub fn save(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let bytes = write_atomically(&*self.fs, &self.path, snapshot)?;
        self.note_saved(snapshot.meta, bytes);
        Ok(())
    }

    /// Records that [`write_atomically`] (run elsewhere, e.g. on a background thread) made a
    /// snapshot of `bytes` bytes durable at this file's path.
    pub fn note_saved(&mut self, meta: SnapshotMeta, bytes: u64) {
        self.fsyncs += 2;
        self.meta = Some(meta);
        self.bytes = bytes;
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system it lives on.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// Where the durable snapshot ends (None without one).
    pub fn meta(&self) -> Option<SnapshotMeta> {
        self.meta
    }

    /// Size of the snapshot file in bytes (0 without one).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fsyncs done since open.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs
    }
}

/// Writes `snapshot` to `path` on the file system `fs` atomically (tmp, write, fsync, rename,
/// fsync the directory) and returns the file's size. Needs no [`SnapshotFile`], so it can run
/// off the thread that owns the storage (give it [`Storage::fs`](super::Storage::fs), so the
/// write goes through the same seam as the rest of the directory); only one write to a path
/// may be in flight at a time (they share the `.tmp`).
pub fn write_atomically(
    fs: &dyn Fs,
    path: &Path,
    snapshot: &Snapshot,
) -> Result<u64, StorageError> {
    let bytes = encode(snapshot);
    let tmp = tmp_path(path);
    let mut file = fs
        .create(&tmp)
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    file.write_at(0, &bytes)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    file.sync(true)
        .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    drop(file);
    fs.rename(&tmp, path)
        .map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(fs, path.parent().unwrap_or_else(|| Path::new(".")))?;
    Ok(bytes.len() as u64)
}

/// `snapshot.bin` -> `snapshot.bin.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The file image of a snapshot.
fn encode(snapshot: &Snapshot) -> Vec<u8> {
    // Encoding a map of integers and byte strings into a Vec cannot fail.
    let membership = postcard::to_allocvec(&snapshot.membership).unwrap_or_default();
    let mut area = Vec::with_capacity(4 + membership.len() + snapshot.data.len());
    area.extend_from_slice(&(membership.len() as u32).to_le_bytes());
    area.extend_from_slice(&membership);
    area.extend_from_slice(&snapshot.data);
    let mut bytes = Vec::with_capacity(HEADER_LEN + area.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&snapshot.meta.index.to_le_bytes());
    bytes.extend_from_slice(&snapshot.meta.term.to_le_bytes());
    bytes.extend_from_slice(&(area.len() as u64).to_le_bytes());
    let crc = checksum(&bytes[8..32], &area);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&area);
    bytes
}

/// CRC32 of the header fields (index, term, length) followed by the data.
fn checksum(fields: &[u8], data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(fields);
    hasher.update(data);
    hasher.finalize()
}

/// Reads a file image back, checking everything.
fn decode(path: &Path, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let corrupt = |offset: u64, why: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        why,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "{} bytes is shorter than a snapshot header ({HEADER_LEN} bytes)",
                bytes.len()
            ),
        ));
    }
    let with_membership = match &bytes[..8] {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(corrupt(0, "not a snapshot file (bad magic)".to_string())),
    };
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let index = u64_at(8);
    let term = u64_at(16);
    let data_len = u64_at(24);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[32..36]);
    let stored_crc = u32::from_le_bytes(crc);
    let data = &bytes[HEADER_LEN..];
    if data.len() as u64 != data_len {
        return Err(corrupt(
            24,
            format!(
                "header says {data_len} bytes of data, the file holds {}",
                data.len()
            ),
        ));
    }
    let computed = checksum(&bytes[8..32], data);
    if computed != stored_crc {
        return Err(corrupt(
            32,
            format!("checksum mismatch (stored {stored_crc:08x}, computed {computed:08x})"),
        ));
    }
    if index == 0 {
        return Err(corrupt(8, "snapshot at index 0".to_string()));
    }
    if !with_membership {
        return Ok(Snapshot {
            meta: SnapshotMeta { index, term },
            membership: None,
            data: data.to_vec(),
        });
    }
    let bad_membership = |why: String| corrupt(HEADER_LEN as u64, why);
    let Some(len_bytes) = data.get(..4) else {
        return Err(bad_membership(
            "no room for the configuration's length".into(),
        ));
    };
    let mut word = [0u8; 4];
    word.copy_from_slice(len_bytes);
    let membership_len = u32::from_le_bytes(word) as usize;
    let Some(encoded) = data.get(4..4 + membership_len) else {
        return Err(bad_membership(format!(
            "configuration of {membership_len} bytes runs past the data"
        )));
    };
    let membership = postcard::from_bytes(encoded)
        .map_err(|e| bad_membership(format!("undecodable configuration: {e}")))?;
    Ok(Snapshot {
        meta: SnapshotMeta { index, term },
        membership,
        data: data[4 + membership_len..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta { index, term },
            membership: Some(crate::raft::Membership::from_voters([1, 2, 3])),
            data: data.to_vec(),
        }
    }

    fn fresh() -> (tempfile::TempDir, PathBuf, SnapshotFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        let (file, read) = SnapshotFile::open(&path).unwrap();
        assert_eq!(read, None);
        (dir, path, file)
    }

    #[test]
    fn saved_snapshot_reads_back_and_a_newer_one_replaces_it() {
        let (_dir, path, mut file) = fresh();
        file.save(&snapshot(10, 2, b"first")).unwrap();
        file.save(&snapshot(20, 3, b"second image")).unwrap();
        assert_eq!(file.meta(), Some(SnapshotMeta { index: 20, term: 3 }));
        assert_eq!(
            file.bytes(),
            encode(&snapshot(20, 3, b"second image")).len() as u64
        );
        let (reopened, read) = SnapshotFile::open(&path).unwrap();
        assert_eq!(read, Some(snapshot(20, 3, b"second image")));
        assert_eq!(reopened.bytes(), fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_format_1_file_reads_as_a_snapshot_of_the_initial_configuration() {
        let (_dir, path, _file) = fresh();
        let data = b"old image";
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let crc = checksum(&bytes[8..32], data);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(data);
        fs::write(&path, &bytes).unwrap();
        let read = SnapshotFile::open(&path).unwrap().1.unwrap();
        assert_eq!(read.meta, SnapshotMeta { index: 7, term: 2 });
        assert_eq!((read.membership, &read.data[..]), (None, &data[..]));
    }

    #[test]
    fn empty_data_is_a_valid_snapshot() {
        let (_dir, path, mut file) = fresh();
        file.save(&snapshot(1, 1, b"")).unwrap();
        assert_eq!(
            SnapshotFile::open(&path).unwrap().1,
            Some(snapshot(1, 1, b""))
        );
    }

    #[test]
    fn unfinished_tmp_left_by_a_crash_is_removed_and_the_old_snapshot_kept() {
        let (_dir, path, mut file) = fresh();
        file.save(&snapshot(5, 1, b"old")).unwrap();
        // A crash in the middle of writing the next one: half a file under the tmp name.
        let tmp = tmp_path(&path);
        fs::write(&tmp, &encode(&snapshot(9, 2, b"new"))[..20]).unwrap();
        let (_, read) = SnapshotFile::open(&path).unwrap();
        assert_eq!(read, Some(snapshot(5, 1, b"old")));
        assert!(!tmp.exists());
    }

    #[test]
    fn flipped_data_byte_is_corruption_naming_the_file() {
        let (_dir, path, mut file) = fresh();
        file.save(&snapshot(5, 1, b"some state")).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = SnapshotFile::open(&path).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("snapshot.bin"), "{text}");
        assert!(text.contains("checksum"), "{text}");
    }

    #[test]
    fn truncated_or_foreign_files_are_corruption() {
        let (_dir, path, mut file) = fresh();
        file.save(&snapshot(5, 1, b"some state")).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let err = SnapshotFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("header says"), "{err}");
        fs::write(&path, &bytes[..10]).unwrap();
        let err = SnapshotFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("shorter"), "{err}");
        let mut foreign = bytes.clone();
        foreign[0] = b'X';
        fs::write(&path, &foreign).unwrap();
        let err = SnapshotFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }
}
