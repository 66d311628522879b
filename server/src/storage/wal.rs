//! The write-ahead log: Raft log entries as an append-only sequence of checksummed records.
//!
//! Record framing (little endian):
//!
//! ```text
//! +-----------+-----------+--------------------------------------------------+
//! | len: u32  | crc32: u32| payload (len bytes):                             |
//! |           | of payload| index: u64 | term: u64 | kind: u8 | data: bytes   |
//! +-----------+-----------+--------------------------------------------------+
//! ```
//!
//! `kind` 0 is a no-op entry, 1 a command whose bytes are `data`. Records are contiguous by
//! index. A conflicting suffix (Raft's "delete the existing entry and all that follow it") is
//! removed physically: the file is truncated at the offset of the first conflicting record, then
//! the new entries are appended, and one fsync covers both.
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
//! Recovery rules on open, from the first byte on:
//! - a record that runs past the end of the file, or whose checksum fails and which is the last
//!   record (or is followed only by zero bytes), is a torn write from a crash: it and everything
//!   after it are cut off, with a warning. It was never fsynced, so never acknowledged;
//! - a checksum failure with valid-looking data after it, a record that does not decode, or an
//!   index out of sequence is corruption: open fails naming the file and the byte offset.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StorageError;
use crate::raft::{Entry, EntryPayload, LogIndex};

/// Bytes of the frame header: length and checksum.
const HEADER_LEN: usize = 8;
/// Bytes of a payload before the entry's data: index, term and kind.
const PAYLOAD_FIXED_LEN: usize = 17;
const KIND_NOOP: u8 = 0;
const KIND_COMMAND: u8 = 1;

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
    path: PathBuf,
    file: fs::File,
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
}

impl Wal {
    /// Creates an empty WAL file (and fsyncs it; the caller fsyncs the directory).
    pub fn create(path: &Path) -> Result<(), StorageError> {
        let file = fs::File::create(path).map_err(|e| StorageError::io("create", path, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync", path, e))
    }

    /// Opens an existing WAL, recovers it (see the module docs) and returns its entries.
    /// `snapshot_index` is where the caller's snapshot ends (0 without one): an empty file
    /// starts right after it. Entries the snapshot already covers are returned too; the caller
    /// drops them with [`Wal::compact_through`].
    pub fn open(path: &Path, snapshot_index: LogIndex) -> Result<(Wal, Vec<Entry>), StorageError> {
        let tmp = tmp_path(path);
        if tmp.exists() {
            tracing::warn!(file = %tmp.display(), "removing an unfinished log compaction left by a crash");
            fs::remove_file(&tmp).map_err(|e| StorageError::io("remove", &tmp, e))?;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StorageError::Missing {
                        path: path.to_path_buf(),
                        why: "the write-ahead log is gone",
                    }
                } else {
                    StorageError::io("open", path, e)
                }
            })?;
        let bytes = fs::read(path).map_err(|e| StorageError::io("read", path, e))?;
        let scan = scan(path, &bytes)?;
        let mut wal = Wal {
            path: path.to_path_buf(),
            file,
            first_index: scan.entries.first().map_or(snapshot_index + 1, |e| e.index),
            offsets: scan.offsets,
            end: scan.valid_len,
            torn_tail: None,
            fsyncs: 0,
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
            wal.file
                .sync_all()
                .map_err(|e| StorageError::io("fsync", path, e))?;
            wal.torn_tail = Some(torn);
        }
        Ok((wal, scan.entries))
    }

    /// Appends entries, first cutting off the durable suffix from `entries[0].index` on if the
    /// log already reaches that far, then fsyncs once.
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
        let mut truncated = false;
        if first.index <= self.last_index() {
            self.truncate_from(first.index)?;
            truncated = true;
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
            .write_all_at(&buf, self.end)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        // A truncation changed the file size, which fdatasync covers too, but sync_all is the
        // conservative choice for a rare event.
        let synced = if truncated {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        };
        synced.map_err(|e| StorageError::io("fsync", &self.path, e))?;
        self.fsyncs += 1;
        self.end += buf.len() as u64;
        self.offsets.extend(offsets);
        Ok(())
    }

    /// Cuts the log so that it ends just before `index` (not fsynced on its own: the append
    /// that follows fsyncs).
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

    /// Size of the valid part of the file in bytes.
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
        let mut suffix = vec![0u8; (self.end - start) as usize];
        self.file
            .read_exact_at(&mut suffix, start)
            .map_err(|e| StorageError::io("read", &self.path, e))?;
        let tmp = tmp_path(&self.path);
        let mut file = fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
        file.write_all(&suffix)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| StorageError::io("rename", &tmp, e))?;
        super::sync_dir(self.path.parent().unwrap_or_else(|| Path::new(".")))?;
        self.fsyncs += 2;
        self.file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| StorageError::io("open", &self.path, e))?;
        self.offsets = self.offsets[dropped..]
            .iter()
            .map(|offset| offset - start)
            .collect();
        self.end -= start;
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

/// Appends the framed record of `entry` to `buf`.
fn encode_record(entry: &Entry, buf: &mut Vec<u8>) {
    let (kind, data): (u8, &[u8]) = match &entry.payload {
        EntryPayload::Noop => (KIND_NOOP, &[]),
        EntryPayload::Command(bytes) => (KIND_COMMAND, bytes),
    };
    let payload_len = PAYLOAD_FIXED_LEN + data.len();
    let start = buf.len();
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&entry.index.to_le_bytes());
    buf.extend_from_slice(&entry.term.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(data);
    let crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, StorageError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    let corrupt = |offset: usize, why: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    };
    let torn_reason = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break String::new();
        }
        if rest.len() < HEADER_LEN {
            break format!("short record header ({} bytes)", rest.len());
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let stored_crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if HEADER_LEN + len > rest.len() {
            break format!(
                "record of {len} bytes runs past the end of the file ({} bytes left)",
                rest.len() - HEADER_LEN
            );
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        let record_end = pos + HEADER_LEN + len;
        let only_zeros_follow = rest.iter().all(|&b| b == 0);
        if len < PAYLOAD_FIXED_LEN || crc32fast::hash(payload) != stored_crc {
            if record_end == bytes.len() || only_zeros_follow {
                break "last record fails its checksum".to_string();
            }
            return Err(corrupt(
                pos,
                format!(
                    "record fails its checksum and {} bytes follow it",
                    bytes.len() - record_end
                ),
            ));
        }
        let index = u64::from_le_bytes(payload[0..8].try_into().unwrap_or_default());
        let term = u64::from_le_bytes(payload[8..16].try_into().unwrap_or_default());
        let data = &payload[PAYLOAD_FIXED_LEN..];
        let payload = match payload[16] {
            KIND_NOOP if data.is_empty() => EntryPayload::Noop,
            KIND_COMMAND => EntryPayload::Command(data.to_vec()),
            other => return Err(corrupt(pos, format!("unknown record kind {other}"))),
        };
        if let Some(prev) = entries.last() {
            if index != prev.index + 1 {
                return Err(corrupt(
                    pos,
                    format!("entry index {index} follows index {}", prev.index),
                ));
            }
        } else if index == 0 {
            return Err(corrupt(pos, "entry index 0".to_string()));
        }
        entries.push(Entry {
            index,
            term,
            payload,
        });
        offsets.push(pos as u64);
        pos = record_end;
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
        let mut bytes = Vec::new();
        encode_record(&entry(1, 1), &mut bytes);
        let second = bytes.len() as u64;
        encode_record(&entry(5, 1), &mut bytes);
        fs::write(&path, &bytes).unwrap();
        let err = Wal::open(&path, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == second),
            "{err}"
        );
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
            (10, 9, 0)
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
