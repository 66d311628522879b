//! The write-ahead log: Raft log entries as an append-only sequence of checksummed records.
//!
//! File layout (little endian), format version 2:
//!
//! ```text
//! +----------------------------+  file header, 8 bytes
//! | magic "RTWL" | version: u32|
//! +----------------------------+----------------------------------------------+
//! | len: u32 | payload crc32: u32 | header crc32: u32 (of len and payload crc)  |  record
//! +----------+--------------------+----------------------------------------------+
//! | payload (len bytes): index: u64 | term: u64 | kind: u8 | data: bytes        |
//! +------------------------------------------------------------------------------+
//! ```
//!
//! `kind` 0 is a no-op entry, 1 a command whose bytes are `data`, 2 a cluster configuration
//! whose `data` is its postcard encoding (added without a version change: older nodes
//! refuse such a file as corrupt rather than misread it). Records are contiguous by
//! index and their terms never decrease. The header has its own checksum so a bit flip in a
//! length is seen as such instead of making the record "run past the end of the file" (which
//! would look like a torn write and cut acknowledged records). A file with another magic or
//! version (version 1 had no file header and no header checksum) is refused, never guessed at.
//!
//! A conflicting suffix (Raft's "delete the existing entry and all that follow it") is
//! removed physically: the file is truncated at the offset of the first conflicting record and
//! the truncation is fsynced, then the new entries are written and fsynced. Two fsyncs, so a
//! crash can never keep a replacement record while losing the truncation (a log mixing two
//! histories); conflicts are rare, so the second fsync costs little.
//!
//! Log compaction (after a snapshot) drops a prefix by rewriting the file with the suffix only:
//! the kept records are copied to `wal.log.tmp`, which is fsynced and renamed over `wal.log`,
//! then the directory is fsynced. A crash leaves the old file or the new one; a leftover `.tmp`
//! is removed on open. Rewriting (rather than a directory of segment files) keeps one file and
//! one recovery path, and costs little: the node snapshots at its apply index, so the suffix
//! still to copy is only the entries appended but not yet applied (usually a few batches).
//! Since the first record's index is no longer 1 after compaction, the file's first index is
//! the first record's; an empty file starts right after the snapshot the caller says it has.
//!
//! Recovery rules on open, from the first record on. A record is *bad* when its header is
//! short or fails its checksum, when its (checksummed) length runs past the end of the file, or
//! when its payload fails its checksum.
//! - a bad record after which no valid record starts at any byte offset is a torn write from a
//!   crash (a half-written last batch, with zeros or stale bytes after it): it and everything
//!   after it are cut off, with a warning, and the cut is fsynced. It was never fsynced, so
//!   never acknowledged;
//! - a bad record followed somewhere by a valid one is corruption (a bit flip in cold data, or
//!   a disk that persisted a later part of an unsynced batch but not an earlier one: the two
//!   look the same, and only the first loses acknowledged records); so is a valid record that
//!   does not decode, an index out of sequence or a term lower than the one before: open fails
//!   naming the file and the byte offset, and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{Fs, FsFile, StdFs};
use super::StorageError;
use crate::raft::{Entry, EntryPayload, LogIndex};

/// The first bytes of every WAL file.
const MAGIC: &[u8; 4] = b"RTWL";
/// The format this code writes and the only one it reads (see the module docs).
const FORMAT_VERSION: u32 = 2;
/// Bytes of the file header: magic and version.
pub const FILE_HEADER_LEN: u64 = 8;
/// Bytes of a record header: length, payload checksum and header checksum.
const HEADER_LEN: usize = 12;
/// Bytes of a payload before the entry's data: index, term and kind.
const PAYLOAD_FIXED_LEN: usize = 17;
const KIND_NOOP: u8 = 0;
const KIND_COMMAND: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Planted bugs that live in the WAL (test only; see [`crate::bugs`]). All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WalBugs {
    /// `no-fsync`: appends and truncations are never fsynced, so an acknowledged entry can be
    /// lost by a crash of the machine (or a disk fault that drops unsynced writes).
    pub no_fsync: bool,
    /// `wal-trusts-length`: recovery takes any bad record for a torn tail and cuts it off
    /// with everything after it, the behaviour before header checksums.
    pub trusts_length: bool,
}

/// What recovery cut off the end of the file on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the torn record started (the file's new length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes_cut: u64,
}

/// An open WAL file.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    file: Box<dyn FsFile>,
    /// Index of the first entry the file holds (1 until snapshots compact the log).
    first_index: LogIndex,
    /// Byte offset of each record: `offsets[i]` is where entry `first_index + i` starts.
    offsets: Vec<u64>,
    /// Length of the valid part of the file: where the next record goes.
    end: u64,
    /// What open cut off, if anything (for tests and operators).
    torn_tail: Option<TornTail>,
    /// Fsyncs done since open, for metrics.
    fsyncs: u64,
    /// Planted bugs (all off outside of tests of the harness).
    bugs: WalBugs,
}

impl Wal {
    /// Creates an empty WAL file holding only the file header (and fsyncs it; the caller
    /// fsyncs the directory).
    pub fn create(path: &Path) -> Result<(), StorageError> {
        Wal::create_on(&StdFs::shared(), path)
    }

    /// [`Wal::create`] on the file system `fs`.
    pub fn create_on(fs: &Arc<dyn Fs>, path: &Path) -> Result<(), StorageError> {
        let mut file = fs
            .create(path)
            .map_err(|e| StorageError::io("create", path, e))?;
        file.write_at(0, &file_header())
            .map_err(|e| StorageError::io("write", path, e))?;
        file.sync(true)
            .map_err(|e| StorageError::io("fsync", path, e))
    }

    /// True when the file at `path` holds no record (only a header, or nothing at all).
    pub fn holds_no_record(fs: &Arc<dyn Fs>, path: &Path) -> Result<bool, StorageError> {
        let len = fs
            .len(path)
            .map_err(|e| StorageError::io("stat", path, e))?;
        Ok(len <= FILE_HEADER_LEN)
    }

    /// Opens an existing WAL, recovers it (see the module docs) and returns its entries.
    /// `snapshot_index` is where the caller's snapshot ends (0 without one): an empty file
    /// starts right after it. Entries the snapshot already covers are returned too; the caller
    /// drops them with [`Wal::compact_through`].
    pub fn open(path: &Path, snapshot_index: LogIndex) -> Result<(Wal, Vec<Entry>), StorageError> {
        Wal::open_with_bugs(path, snapshot_index, WalBugs::default())
    }

    /// [`Wal::open`] with planted bugs on (test only).
    pub fn open_with_bugs(
        path: &Path,
        snapshot_index: LogIndex,
        bugs: WalBugs,
    ) -> Result<(Wal, Vec<Entry>), StorageError> {
        Wal::open_on(StdFs::shared(), path, snapshot_index, bugs)
    }

    /// [`Wal::open_with_bugs`] on the file system `fs`.
    pub fn open_on(
        fs: Arc<dyn Fs>,
        path: &Path,
        snapshot_index: LogIndex,
        bugs: WalBugs,
    ) -> Result<(Wal, Vec<Entry>), StorageError> {
        let tmp = tmp_path(path);
        if fs
            .exists(&tmp)
            .map_err(|e| StorageError::io("stat", &tmp, e))?
        {
            tracing::warn!(file = %tmp.display(), "removing an unfinished log compaction left by a crash");
            fs.remove(&tmp)
                .map_err(|e| StorageError::io("remove", &tmp, e))?;
        }
        let file = fs.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::Missing {
                    path: path.to_path_buf(),
                    why: "the write-ahead log is gone",
                }
            } else {
                StorageError::io("open", path, e)
            }
        })?;
        let bytes = fs
            .read(path)
            .map_err(|e| StorageError::io("read", path, e))?;
        let scan = scan(path, &bytes, bugs)?;
        let mut wal = Wal {
            fs,
            path: path.to_path_buf(),
            file,
            first_index: scan.entries.first().map_or(snapshot_index + 1, |e| e.index),
            offsets: scan.offsets,
            end: scan.valid_len,
            torn_tail: None,
            fsyncs: 0,
            bugs,
        };
        if scan.valid_len < bytes.len() as u64 {
            let torn = TornTail {
                offset: scan.valid_len,
                bytes_cut: bytes.len() as u64 - scan.valid_len,
            };
            tracing::warn!(
                file = %path.display(),
                offset = torn.offset,
                bytes_cut = torn.bytes_cut,
                reason = %scan.torn_reason,
                "cutting off a torn record at the end of the write-ahead log (never acknowledged)"
            );
            wal.file
                .set_len(torn.offset)
                .map_err(|e| StorageError::io("truncate", path, e))?;
            wal.sync(true)?;
            wal.torn_tail = Some(torn);
        }
        Ok((wal, scan.entries))
    }

    /// Appends entries, first cutting off the durable suffix from `entries[0].index` on if the
    /// log already reaches that far (fsynced on its own), then fsyncs once.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(self.invalid(format!(
                    "entries not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                )));
            }
        }
        if first.index <= self.last_index() {
            self.truncate_from(first.index)?;
        }
        if first.index != self.last_index() + 1 {
            return Err(self.invalid(format!(
                "gap: log ends at {}, appending from {}",
                self.last_index(),
                first.index
            )));
        }
        let mut buf = Vec::with_capacity(entries.len() * 64);
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push(self.end + buf.len() as u64);
            encode_record(entry, &mut buf);
        }
        self.file
            .write_at(self.end, &buf)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        self.sync(false)?;
        self.end += buf.len() as u64;
        self.offsets.extend(offsets);
        Ok(())
    }

    /// Fsyncs the file: `sync_all` when its size changed in a way fdatasync may not cover
    /// (a truncation), `sync_data` otherwise.
    fn sync(&mut self, size_changed: bool) -> Result<(), StorageError> {
        if self.bugs.no_fsync {
            // PLANTED BUG (no-fsync): the write is left in the page cache and acknowledged as
            // durable anyway.
            return Ok(());
        }
        self.file
            .sync(size_changed)
            .map_err(|e| StorageError::io("fsync", &self.path, e))?;
        self.fsyncs += 1;
        Ok(())
    }

    /// Cuts the log so that it ends just before `index`, and fsyncs the cut before anything
    /// is written in its place.
    fn truncate_from(&mut self, index: LogIndex) -> Result<(), StorageError> {
        if index < self.first_index {
            return Err(self.invalid(format!(
                "cannot truncate from {index}: the log starts at {}",
                self.first_index
            )));
        }
        let keep = (index - self.first_index) as usize;
        let Some(&offset) = self.offsets.get(keep) else {
            return Ok(());
        };
        tracing::info!(
            file = %self.path.display(),
            from_index = index,
            offset,
            "truncating a conflicting log suffix"
        );
        self.file
            .set_len(offset)
            .map_err(|e| StorageError::io("truncate", &self.path, e))?;
        self.sync(true)?;
        self.offsets.truncate(keep);
        self.end = offset;
        Ok(())
    }

    /// Index of the last entry (first_index - 1 when empty).
    pub fn last_index(&self) -> LogIndex {
        self.first_index + self.offsets.len() as u64 - 1
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the first entry the file holds (or would hold next, when empty).
    pub fn first_index(&self) -> LogIndex {
        self.first_index
    }

    /// Size of the valid part of the file in bytes (the file header included).
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Drops every entry up to and including `index` (a snapshot covers them), keeping the
    /// suffix; atomic (see the module docs). Nothing happens when the file already starts
    /// after `index`. When `index` is at or past the end, the file becomes empty and the next
    /// entry expected is `index + 1`.
    pub fn compact_through(&mut self, index: LogIndex) -> Result<(), StorageError> {
        if index < self.first_index {
            return Ok(());
        }
        let dropped = ((index - self.first_index + 1) as usize).min(self.offsets.len());
        self.rewrite_without(dropped, index + 1)
    }

    /// Empties the log; the next entry expected is `first_index` (a snapshot received from the
    /// leader replaced the whole log). Atomic like a compaction.
    pub fn reset(&mut self, first_index: LogIndex) -> Result<(), StorageError> {
        self.rewrite_without(self.offsets.len(), first_index)
    }

    /// Rewrites the file without its first `dropped` records; the first kept record (or the
    /// next one appended) has index `first_index`.
    fn rewrite_without(
        &mut self,
        dropped: usize,
        first_index: LogIndex,
    ) -> Result<(), StorageError> {
        let start = self.offsets.get(dropped).copied().unwrap_or(self.end);
        let mut image = file_header().to_vec();
        image.resize(FILE_HEADER_LEN as usize + (self.end - start) as usize, 0);
        self.file
            .read_at(start, &mut image[FILE_HEADER_LEN as usize..])
            .map_err(|e| StorageError::io("read", &self.path, e))?;
        let tmp = tmp_path(&self.path);
        let mut file = self
            .fs
            .create(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))?;
        file.write_at(0, &image)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        file.sync(true)
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(file);
        self.fs
            .rename(&tmp, &self.path)
            .map_err(|e| StorageError::io("rename", &tmp, e))?;
        super::sync_dir(
            &*self.fs,
            self.path.parent().unwrap_or_else(|| Path::new(".")),
        )?;
        self.fsyncs += 2;
        self.file = self
            .fs
            .open(&self.path)
            .map_err(|e| StorageError::io("open", &self.path, e))?;
        self.offsets = self.offsets[dropped..]
            .iter()
            .map(|offset| offset - start + FILE_HEADER_LEN)
            .collect();
        self.end = self.end - start + FILE_HEADER_LEN;
        self.first_index = first_index;
        Ok(())
    }

    /// What recovery cut off on open, if anything.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn_tail
    }

    /// Fsyncs done since open.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs
    }

    fn invalid(&self, why: String) -> StorageError {
        StorageError::InvalidAppend {
            path: self.path.clone(),
            why,
        }
    }
}

/// `wal.log` -> `wal.log.tmp`, where a compaction writes the new file.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The file header: magic and format version.
fn file_header() -> [u8; FILE_HEADER_LEN as usize] {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    header[..4].copy_from_slice(MAGIC);
    header[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Appends the framed record of `entry` to `buf`.
fn encode_record(entry: &Entry, buf: &mut Vec<u8>) {
    let encoded;
    let (kind, data): (u8, &[u8]) = match &entry.payload {
        EntryPayload::Noop => (KIND_NOOP, &[]),
        EntryPayload::Command(bytes) => (KIND_COMMAND, bytes),
        EntryPayload::Membership(membership) => {
            // Encoding a map of integers and byte strings into a Vec cannot fail.
            encoded = postcard::to_allocvec(membership).unwrap_or_default();
            (KIND_MEMBERSHIP, &encoded)
        }
    };
    let payload_len = PAYLOAD_FIXED_LEN + data.len();
    let start = buf.len();
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&entry.index.to_le_bytes());
    buf.extend_from_slice(&entry.term.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(data);
    let payload_crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&buf[start..start + 8]);
    buf[start + 8..start + 12].copy_from_slice(&header_crc.to_le_bytes());
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Checks the record starting at `bytes[pos..]`: its payload when it is valid, why it is bad
/// otherwise (see the module docs).
fn check_record(bytes: &[u8], pos: usize) -> Result<&[u8], String> {
    let rest = &bytes[pos..];
    if rest.len() < HEADER_LEN {
        return Err(format!("short record header ({} bytes)", rest.len()));
    }
    if crc32fast::hash(&rest[..8]) != read_u32(rest, 8) {
        return Err("record header fails its checksum".to_string());
    }
    let len = read_u32(rest, 0) as usize;
    if HEADER_LEN + len > rest.len() {
        return Err(format!(
            "record of {len} bytes runs past the end of the file ({} bytes left)",
            rest.len() - HEADER_LEN
        ));
    }
    let payload = &rest[HEADER_LEN..HEADER_LEN + len];
    if crc32fast::hash(payload) != read_u32(rest, 4) {
        return Err("record fails its checksum".to_string());
    }
    if len < PAYLOAD_FIXED_LEN {
        return Err(format!("record of {len} bytes is too short for an entry"));
    }
    Ok(payload)
}

/// The first byte offset after `from` where a valid record starts, if any.
fn next_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER_LEN - 1)).find(|&pos| check_record(bytes, pos).is_ok())
}

/// Byte offsets of the records of a WAL image, as open reads them (the simulation flips bits
/// in records it knows to be followed by another one).
pub fn record_offsets(path: &Path, bytes: &[u8]) -> Result<Vec<u64>, StorageError> {
    Ok(scan(path, bytes, WalBugs::default())?.offsets)
}

/// The result of reading a WAL image.
struct Scan {
    entries: Vec<Entry>,
    offsets: Vec<u64>,
    /// Bytes up to the end of the last good record.
    valid_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    torn_reason: String,
}

/// Reads every record of a WAL image, telling a torn tail from corruption.
fn scan(path: &Path, bytes: &[u8], bugs: WalBugs) -> Result<Scan, StorageError> {
    let corrupt = |offset: usize, why: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    };
    let header = file_header();
    if bytes.len() < header.len() || bytes[..4] != header[..4] {
        return Err(corrupt(
            0,
            "no write-ahead log header (a file of another program, or written by a \
             riptide-server older than WAL format 2)"
                .to_string(),
        ));
    }
    let version = read_u32(bytes, 4);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            4,
            format!("WAL format version {version}; this node reads version {FORMAT_VERSION}"),
        ));
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut offsets = Vec::new();
    let mut pos = header.len();
    let torn_reason = loop {
        if pos == bytes.len() {
            break String::new();
        }
        let payload = match check_record(bytes, pos) {
            Ok(payload) => payload,
            Err(why) if bugs.trusts_length => {
                // PLANTED BUG (wal-trusts-length): any bad record is taken for a torn tail and
                // cut off with everything after it, acknowledged records included.
                break why;
            }
            Err(why) => match next_valid_record(bytes, pos + 1) {
                None => break why,
                Some(next) => {
                    return Err(corrupt(
                        pos,
                        format!("{why}, and a valid record follows at byte offset {next}"),
                    ))
                }
            },
        };
        let index = read_u64(payload, 0);
        let term = read_u64(payload, 8);
        let data = &payload[PAYLOAD_FIXED_LEN..];
        let payload_value = match payload[16] {
            KIND_NOOP if data.is_empty() => EntryPayload::Noop,
            KIND_COMMAND => EntryPayload::Command(data.to_vec()),
            KIND_MEMBERSHIP => match postcard::from_bytes(data) {
                Ok(membership) => EntryPayload::Membership(membership),
                Err(e) => return Err(corrupt(pos, format!("undecodable configuration: {e}"))),
            },
            other => return Err(corrupt(pos, format!("unknown record kind {other}"))),
        };
        if let Some(prev) = entries.last() {
            if index != prev.index + 1 {
                return Err(corrupt(
                    pos,
                    format!("entry index {index} follows index {}", prev.index),
                ));
            }
            if term < prev.term {
                return Err(corrupt(
                    pos,
                    format!(
                        "entry {index} has term {term}, below the term {} of the entry before",
                        prev.term
                    ),
                ));
            }
        } else if index == 0 {
            return Err(corrupt(pos, "entry index 0".to_string()));
        }
        entries.push(Entry {
            index,
            term,
            payload: payload_value,
        });
        offsets.push(pos as u64);
        pos += HEADER_LEN + payload.len();
    };
    Ok(Scan {
        entries,
        offsets,
        valid_len: pos as u64,
        torn_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn entry(index: LogIndex, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: if index.is_multiple_of(3) {
                EntryPayload::Noop
            } else {
                EntryPayload::Command(format!("value-{index}-{term}").into_bytes())
            },
        }
    }

    fn wal_with(entries: &[Entry]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        Wal::create(&path).unwrap();
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.append(entries).unwrap();
        (dir, path)
    }

    fn record_offsets(path: &Path) -> Vec<u64> {
        Wal::open(path, 0).unwrap().0.offsets.clone()
    }

    #[test]
    fn appended_entries_read_back_in_order() {
        let log: Vec<_> = (1..=10).map(|i| entry(i, 1 + i / 4)).collect();
        let (_dir, path) = wal_with(&log);
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log);
        assert_eq!(wal.last_index(), 10);
        assert_eq!(wal.torn_tail(), None);
    }

    #[test]
    fn one_batch_costs_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        Wal::create(&path).unwrap();
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.append(&(1..=100).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(wal.fsync_count(), 1);
    }

    #[test]
    fn conflicting_suffix_is_replaced_and_stays_replaced_after_reopen() {
        let (_dir, path) = wal_with(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        let replacement: Vec<_> = (4..=5).map(|i| entry(i, 2)).collect();
        wal.append(&replacement).unwrap();
        assert_eq!(wal.last_index(), 5);
        drop(wal);
        let (_, read) = Wal::open(&path, 0).unwrap();
        let mut expected: Vec<_> = (1..=3).map(|i| entry(i, 1)).collect();
        expected.extend(replacement);
        assert_eq!(read, expected);
    }

    #[test]
    fn append_with_a_gap_is_refused() {
        let (_dir, path) = wal_with(&[entry(1, 1)]);
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        let err = wal.append(&[entry(3, 1)]).unwrap_err();
        assert!(matches!(err, StorageError::InvalidAppend { .. }), "{err}");
    }

    /// A `tracing` writer that keeps what is logged, to assert on warnings.
    #[derive(Clone, Default)]
    struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLogs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with logs captured; returns its result and the log text.
    fn with_captured_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        (result, text)
    }

    #[test]
    fn short_last_record_is_cut_with_the_rest_kept() {
        let log: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let offsets = record_offsets(&path);
        let len = fs::metadata(&path).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (opened, logs) = with_captured_logs(|| Wal::open(&path, 0));
        let (wal, read) = opened.unwrap();
        assert!(logs.contains("WARN"), "no warning logged: {logs}");
        assert!(logs.contains("torn record"), "{logs}");
        assert!(logs.contains(&format!("offset={}", offsets[4])), "{logs}");
        assert_eq!(read, log[..4].to_vec());
        assert_eq!(
            wal.torn_tail(),
            Some(TornTail {
                offset: offsets[4],
                bytes_cut: len - 3 - offsets[4]
            })
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[4]);
    }

    #[test]
    fn short_header_at_the_end_is_cut() {
        let log: Vec<_> = (1..=2).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[7, 0, 0])
            .unwrap();
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log);
        assert_eq!(wal.torn_tail().map(|t| t.bytes_cut), Some(3));
    }

    #[test]
    fn bad_checksum_on_the_last_record_is_a_torn_tail() {
        let log: Vec<_> = (1..=4).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log[..3].to_vec());
        assert!(wal.torn_tail().is_some());
    }

    #[test]
    fn zero_filled_tail_is_a_torn_tail() {
        let log: Vec<_> = (1..=2).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0; 4096])
            .unwrap();
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log);
        assert_eq!(wal.torn_tail().map(|t| t.bytes_cut), Some(4096));
    }

    #[test]
    fn corruption_in_the_middle_names_the_file_and_the_offset() {
        let log: Vec<_> = (1..=6).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let offsets = record_offsets(&path);
        let mut bytes = fs::read(&path).unwrap();
        // Flip a byte inside the command data of the second record (entry 2).
        let target = offsets[1] as usize + HEADER_LEN + PAYLOAD_FIXED_LEN + 1;
        bytes[target] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let before = bytes.len();
        let err = Wal::open(&path, 0).unwrap_err();
        match &err {
            StorageError::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*offset, offsets[1]);
            }
            other => panic!("expected corruption, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("wal.log"), "{text}");
        assert!(text.contains(&offsets[1].to_string()), "{text}");
        // Nothing was cut off: the operator decides.
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, before);
    }

    #[test]
    fn index_out_of_sequence_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let offsets = write_raw_wal(&path, &[entry(1, 1), entry(5, 1)]);
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == offsets[1]),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_another_format_version_or_without_a_header_is_refused() {
        let (_dir, path) = wal_with(&[entry(1, 1)]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] = 9;
        fs::write(&path, &bytes).unwrap();
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        // A version 1 file: records straight from byte 0.
        fs::write(&path, &bytes[FILE_HEADER_LEN as usize..]).unwrap();
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("wal.log"), "{err}");
    }

    #[test]
    fn bad_last_record_followed_by_stale_bytes_that_hold_no_record_is_a_torn_tail() {
        let log: Vec<_> = (1..=3).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let offsets = record_offsets(&path);
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[2] as usize + HEADER_LEN + 2] ^= 1;
        bytes.extend((0..300u32).map(|i| (i * 7 + 3) as u8));
        fs::write(&path, &bytes).unwrap();
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log[..2].to_vec());
        assert_eq!(wal.torn_tail().map(|t| t.offset), Some(offsets[2]));
    }

    /// Writes a WAL file holding exactly the records of `entries`, in that order, bypassing the
    /// checks `append` makes (to build images a buggy or damaged writer could leave).
    fn write_raw_wal(path: &Path, entries: &[Entry]) -> Vec<u64> {
        Wal::create(path).unwrap();
        let mut bytes = fs::read(path).unwrap();
        let mut offsets = Vec::new();
        for entry in entries {
            offsets.push(bytes.len() as u64);
            encode_record(entry, &mut bytes);
        }
        fs::write(path, &bytes).unwrap();
        offsets
    }

    /// A WAL of 5 acknowledged records where a bit flip in the length's high byte makes
    /// record 2 claim to run far past the end of the file; also returns the log and the
    /// records' offsets.
    fn five_records_with_a_flipped_length_in_the_second(
    ) -> (tempfile::TempDir, PathBuf, Vec<Entry>, Vec<u64>) {
        let log: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        let (dir, path) = wal_with(&log);
        let offsets = record_offsets(&path);
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[1] as usize + 3] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        (dir, path, log, offsets)
    }

    #[test]
    fn bit_flip_in_the_length_of_a_middle_record_is_corruption_not_a_torn_tail() {
        let (_dir, path, _log, offsets) = five_records_with_a_flipped_length_in_the_second();
        let bytes = fs::read(&path).unwrap();
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == offsets[1]),
            "{err}"
        );
        // Records 2..5 were fsynced and acknowledged: nothing may be cut.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn half_written_last_record_followed_by_zeros_is_a_torn_tail() {
        let log: Vec<_> = (1..=3).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let torn_at = fs::metadata(&path).unwrap().len();
        let mut record = Vec::new();
        encode_record(&entry(4, 1), &mut record);
        // A crash mid-write: the first half of the record reached the disk, the rest of the
        // block (pre-allocated by the file system) reads as zeros.
        record.truncate(record.len() / 2);
        record.resize(4096, 0);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&record)
            .unwrap();
        let (wal, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log);
        assert_eq!(wal.torn_tail().map(|t| t.offset), Some(torn_at));
        assert_eq!(fs::metadata(&path).unwrap().len(), torn_at);
    }

    #[test]
    fn truncating_a_conflicting_suffix_is_fsynced_before_the_replacement_is_written() {
        let (_dir, path) = wal_with(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.append(&[entry(4, 2)]).unwrap();
        // One fsync for the shorter file, one for the replacement records: a crash cannot keep
        // the replacement and lose the truncation.
        assert_eq!(wal.fsync_count(), 2);
    }

    #[test]
    fn terms_that_decrease_along_the_log_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let offsets = write_raw_wal(&path, &[entry(1, 2), entry(2, 2), entry(3, 1)]);
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == offsets[2]),
            "{err}"
        );
        assert!(err.to_string().contains("term"), "{err}");
    }

    #[test]
    fn planted_no_fsync_acknowledges_appends_and_truncations_without_any_fsync() {
        let (_dir, path) = wal_with(&(1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let bugs = WalBugs {
            no_fsync: true,
            ..WalBugs::default()
        };
        let (mut wal, _) = Wal::open_with_bugs(&path, 0, bugs).unwrap();
        wal.append(&[entry(5, 1), entry(6, 1)]).unwrap();
        wal.append(&[entry(3, 2)]).unwrap();
        assert_eq!(wal.last_index(), 3);
        assert_eq!(wal.fsync_count(), 0, "the planted bug fsynced");
        let (mut healthy, _) = Wal::open(&path, 0).unwrap();
        healthy.append(&[entry(4, 2)]).unwrap();
        assert_eq!(healthy.fsync_count(), 1);
    }

    #[test]
    fn planted_wal_trusts_length_cuts_acknowledged_records_after_a_bit_flip() {
        let (_dir, path, log, offsets) = five_records_with_a_flipped_length_in_the_second();
        let bugs = WalBugs {
            trusts_length: true,
            ..WalBugs::default()
        };
        let (wal, read) = Wal::open_with_bugs(&path, 0, bugs).unwrap();
        // Records 2..5 were acknowledged, and are gone.
        assert_eq!(read, log[..1].to_vec());
        assert_eq!(wal.torn_tail().map(|t| t.offset), Some(offsets[1]));
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[1]);
    }

    #[test]
    fn compaction_keeps_the_suffix_and_appends_continue_after_it_across_reopen() {
        let log: Vec<_> = (1..=10).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        let before = wal.bytes();
        wal.compact_through(7).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (8, 10));
        assert!(wal.bytes() < before);
        assert_eq!(fs::metadata(&path).unwrap().len(), wal.bytes());
        // A conflicting suffix can still be replaced after the compaction...
        wal.append(&[entry(10, 2), entry(11, 2)]).unwrap();
        // ...and compacting to an index already dropped changes nothing.
        wal.compact_through(3).unwrap();
        drop(wal);
        let (wal, read) = Wal::open(&path, 7).unwrap();
        let mut expected = log[7..9].to_vec();
        expected.extend([entry(10, 2), entry(11, 2)]);
        assert_eq!(read, expected);
        assert_eq!(wal.first_index(), 8);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn compaction_past_the_end_leaves_an_empty_log_expecting_the_next_index() {
        let (_dir, path) = wal_with(&(1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.compact_through(9).unwrap();
        assert_eq!(
            (wal.first_index(), wal.last_index(), wal.bytes()),
            (10, 9, FILE_HEADER_LEN)
        );
        let err = wal.append(&[entry(5, 1)]).unwrap_err();
        assert!(matches!(err, StorageError::InvalidAppend { .. }), "{err}");
        wal.append(&[entry(10, 3)]).unwrap();
        drop(wal);
        let (wal, read) = Wal::open(&path, 9).unwrap();
        assert_eq!(read, vec![entry(10, 3)]);
        assert_eq!(wal.last_index(), 10);
    }

    #[test]
    fn reset_empties_the_log_and_an_empty_file_starts_after_the_snapshot() {
        let (_dir, path) = wal_with(&(1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.reset(21).unwrap();
        drop(wal);
        let (wal, read) = Wal::open(&path, 20).unwrap();
        assert!(read.is_empty());
        assert_eq!((wal.first_index(), wal.last_index()), (21, 20));
    }

    #[test]
    fn unfinished_compaction_left_by_a_crash_is_removed_and_the_old_log_kept() {
        let log: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        let (_dir, path) = wal_with(&log);
        let tmp = tmp_path(&path);
        fs::write(&tmp, b"half a compacted log").unwrap();
        let (_, read) = Wal::open(&path, 0).unwrap();
        assert_eq!(read, log);
        assert!(!tmp.exists());
    }

    #[test]
    fn missing_file_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("wal.log"));
    }
}
