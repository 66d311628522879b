//! The volatile cache: every write and truncation a file received since its last fsync, kept in
//! memory the way a disk's write cache (or the kernel's page cache, as LazyFS models it) holds
//! data that is not yet durable.
//!
//! The backing file holds only what was fsynced. A file with unsynced changes has a
//! [`DirtyFile`]: its operations in arrival order, replayed over the backing bytes on every read
//! (so readers see their own writes) and written to the backing file on fsync. A power cut drops
//! the operations; a torn write persists a prefix of the last one. Nothing here touches FUSE, so
//! the model is tested on its own.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// One change a file received and that is not durable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PendingOp {
    /// `pwrite(data, offset)`.
    Write { offset: u64, data: Vec<u8> },
    /// `ftruncate(len)` (also `set_len`, `O_TRUNC`).
    Truncate { len: u64 },
}

/// The unsynced state of one file.
#[derive(Debug, Clone)]
pub(crate) struct DirtyFile {
    /// The file's size as readers see it now (backing size with every pending op applied).
    pub(crate) len: u64,
    /// Pending changes, oldest first: replayed in this order.
    pub(crate) ops: Vec<PendingOp>,
    /// When this file was last written, on the cache's clock: picks "the most recently written
    /// file" for a torn write.
    pub(crate) last_write_seq: u64,
}

impl DirtyFile {
    /// Bytes of write payload waiting (what a power cut loses).
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                PendingOp::Write { data, .. } => data.len() as u64,
                PendingOp::Truncate { .. } => 0,
            })
            .sum()
    }

    /// Overlays the pending ops on `buf`, which holds the backing bytes at `offset` (zero past the
    /// backing file's end), and cuts it to the file's current size.
    pub(crate) fn overlay(&self, offset: u64, buf: &mut Vec<u8>) {
        let end = offset + buf.len() as u64;
        for op in &self.ops {
            match op {
                PendingOp::Write { offset: at, data } => {
                    let from = (*at).max(offset);
                    let to = (at + data.len() as u64).min(end);
                    if from < to {
                        let dst = (from - offset) as usize..(to - offset) as usize;
                        let src = (from - at) as usize..(to - at) as usize;
                        buf[dst].copy_from_slice(&data[src]);
                    }
                }
                PendingOp::Truncate { len } => {
                    // Bytes past a truncation read as zero until written again.
                    if *len < end {
                        let from = len.saturating_sub(offset) as usize;
                        buf[from..].fill(0);
                    }
                }
            }
        }
        let visible = self.len.saturating_sub(offset).min(buf.len() as u64);
        buf.truncate(visible as usize);
    }
}

/// Writes `ops` to `file` in order (the caller fsyncs it afterwards).
pub(crate) fn apply(file: &File, ops: &[PendingOp]) -> io::Result<()> {
    for op in ops {
        match op {
            PendingOp::Write { offset, data } => file.write_all_at(data, *offset)?,
            PendingOp::Truncate { len } => file.set_len(*len)?,
        }
    }
    Ok(())
}

/// Every file's unsynced state, by the mount's inode number.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    files: HashMap<u64, DirtyFile>,
    /// A counter bumped by every write, to order files by their last write.
    clock: u64,
}

impl Cache {
    pub(crate) fn get(&self, ino: u64) -> Option<&DirtyFile> {
        self.files.get(&ino)
    }

    /// Records a write; `backing_len` is the backing file's size, used when the file has no
    /// pending ops yet.
    pub(crate) fn write(&mut self, ino: u64, backing_len: u64, offset: u64, data: &[u8]) {
        self.clock += 1;
        let clock = self.clock;
        let file = self.entry(ino, backing_len);
        file.len = file.len.max(offset + data.len() as u64);
        file.last_write_seq = clock;
        file.ops.push(PendingOp::Write {
            offset,
            data: data.to_vec(),
        });
    }

    /// Records a truncation (or extension) to `len`.
    pub(crate) fn truncate(&mut self, ino: u64, backing_len: u64, len: u64) {
        let file = self.entry(ino, backing_len);
        file.len = len;
        file.ops.push(PendingOp::Truncate { len });
    }

    fn entry(&mut self, ino: u64, backing_len: u64) -> &mut DirtyFile {
        self.files.entry(ino).or_insert_with(|| DirtyFile {
            len: backing_len,
            ops: Vec::new(),
            last_write_seq: 0,
        })
    }

    /// Takes a file's pending ops out (to persist them on fsync).
    pub(crate) fn take(&mut self, ino: u64) -> Option<DirtyFile> {
        self.files.remove(&ino)
    }

    /// Puts back ops [`Cache::take`] took out but could not persist (a failed fsync keeps them,
    /// as the page cache keeps dirty pages after a failed writeback).
    pub(crate) fn restore(&mut self, ino: u64, dirty: DirtyFile) {
        self.files.insert(ino, dirty);
    }

    /// Takes every file's pending ops out (a power cut, or a clean unmount that persists them).
    pub(crate) fn take_all(&mut self) -> Vec<(u64, DirtyFile)> {
        let mut all: Vec<_> = self.files.drain().collect();
        all.sort_by_key(|(ino, _)| *ino);
        all
    }

    /// The file written most recently, if any file has a pending write.
    pub(crate) fn most_recently_written(&self) -> Option<u64> {
        self.files
            .iter()
            .filter(|(_, f)| f.last_write_seq > 0)
            .max_by_key(|(_, f)| f.last_write_seq)
            .map(|(ino, _)| *ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &DirtyFile, backing: &[u8], offset: u64, size: usize) -> Vec<u8> {
        let mut buf = vec![0; size];
        let start = (offset as usize).min(backing.len());
        let stop = (offset as usize + size).min(backing.len());
        buf[..stop - start].copy_from_slice(&backing[start..stop]);
        file.overlay(offset, &mut buf);
        buf
    }

    #[test]
    fn reads_see_pending_writes_over_the_backing_bytes() {
        let mut cache = Cache::default();
        cache.write(7, 4, 2, b"XYZ");
        let file = cache.get(7).unwrap();
        assert_eq!(file.len, 5);
        assert_eq!(read(file, b"abcd", 0, 16), b"abXYZ");
        assert_eq!(read(file, b"abcd", 3, 1), b"Y");
    }

    #[test]
    fn a_truncation_zeroes_what_a_later_extension_exposes() {
        let mut cache = Cache::default();
        cache.truncate(1, 8, 2);
        cache.write(1, 8, 6, b"!");
        let file = cache.get(1).unwrap();
        assert_eq!(read(file, b"abcdefgh", 0, 16), b"ab\0\0\0\0!");
    }

    #[test]
    fn the_most_recently_written_file_is_the_one_with_the_latest_write() {
        let mut cache = Cache::default();
        cache.write(1, 0, 0, b"a");
        cache.write(2, 0, 0, b"b");
        cache.truncate(1, 0, 0);
        assert_eq!(cache.most_recently_written(), Some(2));
        cache.write(1, 0, 0, b"c");
        assert_eq!(cache.most_recently_written(), Some(1));
        assert_eq!(cache.get(1).unwrap().pending_bytes(), 2);
    }
}
