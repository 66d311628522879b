//! An in-memory file system that misbehaves the way disks do, for the deterministic simulation
//! (`server/tests/raft_sim.rs`) and storage tests: the real storage code runs on it through
//! the [`Fs`] seam.
//!
//! Every file keeps what is durable and what the process sees; a write, a truncation, a
//! create, a rename or a remove is visible at once and durable only once fsynced (file data:
//! [`FsFile::sync`]; names: [`Fs::sync_dir`]). What a crash leaves is chosen by
//! [`MemFs::crash`]:
//!
//! - [`Crash::Process`] (kill -9): the operating system keeps everything written;
//! - [`Crash::PowerLoss`]: per file, the unsynced writes are all lost, or kept up to a torn
//!   last one (a prefix of its bytes), or kept in 512-byte sectors chosen at random (a disk
//!   that reorders writes: a later sector lands, an earlier one does not); names keep a
//!   prefix of their unsynced changes (a journal replays in order).
//!
//! [`MemFs::arm_crash`] makes the file system fail every call after the next `n` changing
//! ones (as if the process died there), so a crash falls between any two system calls of a
//! persist, a snapshot write or a WAL rewrite; [`MemFs::flip_bit`] damages cold data.
//! A clone shares the same disk; [`MemFs::deep_copy`] makes an independent one.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::fs::{Fs, FsFile};

/// Bytes of a disk sector: the unit a power loss keeps or loses when writes reorder.
pub const SECTOR: usize = 512;

/// What a crash keeps (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process dies; every write reached the page cache and survives.
    Process,
    /// The machine loses power; unsynced writes are lost, torn or reordered.
    PowerLoss,
}

/// A shared in-memory disk (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    /// inode -> file.
    files: HashMap<u64, MemFile>,
    /// What the process sees: path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// The names after the last directory fsync.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Name changes since the last directory fsync, in order.
    name_log: Vec<NameChange>,
    next_inode: u64,
    /// Changing calls still allowed before the armed crash (None: not armed).
    crash_in: Option<u64>,
    /// The armed crash happened: every call fails until [`MemFs::crash`].
    crashed: bool,
    /// Changing calls made so far (for tests of the seam).
    changes: u64,
    /// Bytes of a sector (0: [`SECTOR`]).
    sector: usize,
}

#[derive(Debug, Clone)]
enum NameChange {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

#[derive(Debug, Clone, Default)]
struct MemFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Changes since the last fsync, in order.
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl Pending {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, bytes } => {
                let end = offset + bytes.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[*offset..end].copy_from_slice(bytes);
            }
            Pending::SetLen(len) => content.resize(*len, 0),
        }
    }
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl MemFs {
    /// An empty disk.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the disk as it was at that call: still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty disk whose power losses keep or lose unsynced writes in units of `sector`
    /// bytes (small sectors reorder within small writes too).
    pub fn with_sector(sector: usize) -> MemFs {
        let fs = MemFs::default();
        fs.lock().sector = sector.max(1);
        fs
    }

    /// An independent copy of this disk, as it is now.
    pub fn deep_copy(&self) -> MemFs {
        MemFs {
            inner: Arc::new(Mutex::new(self.lock().clone())),
        }
    }

    /// After `changes` more changing calls succeed, the next one and every call after it fail
    /// (the process died there) until [`MemFs::crash`].
    pub fn arm_crash(&self, changes: u64) {
        self.lock().crash_in = Some(changes);
    }

    /// Cancels an armed crash that has not happened.
    pub fn disarm(&self) {
        self.lock().crash_in = None;
    }

    /// Whether an armed crash happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Changing calls made so far.
    pub fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// The process (or machine) goes down: decides what survives (see [`Crash`]) and leaves a
    /// disk holding only that, usable again. Returns the files whose unsynced writes a power
    /// loss reordered (a later sector kept, an earlier one lost).
    pub fn crash(&self, kind: Crash, rng: &mut impl Rng) -> Vec<PathBuf> {
        let mut reordered = Vec::new();
        let mut inner = self.lock();
        inner.crash_in = None;
        inner.crashed = false;
        if kind == Crash::PowerLoss {
            let keep = rng.gen_range(0..=inner.name_log.len());
            let mut names = inner.durable_names.clone();
            for change in &inner.name_log[..keep] {
                match change {
                    NameChange::Link(path, inode) => {
                        names.insert(path.clone(), *inode);
                    }
                    NameChange::Unlink(path) => {
                        names.remove(path);
                    }
                    NameChange::Rename(from, to) => {
                        if let Some(inode) = names.remove(from) {
                            names.insert(to.clone(), inode);
                        }
                    }
                }
            }
            inner.names = names;
            let paths: HashMap<u64, PathBuf> = inner
                .names
                .iter()
                .map(|(path, inode)| (*inode, path.clone()))
                .collect();
            let sector = if inner.sector == 0 {
                SECTOR
            } else {
                inner.sector
            };
            for (inode, file) in inner.files.iter_mut() {
                let (content, was_reordered) = power_loss(file, sector, rng);
                file.current = content;
                if was_reordered {
                    reordered.extend(paths.get(inode).cloned());
                }
            }
        }
        inner.durable_names = inner.names.clone();
        inner.name_log.clear();
        let live: std::collections::HashSet<u64> = inner.names.values().copied().collect();
        inner.files.retain(|inode, _| live.contains(inode));
        for file in inner.files.values_mut() {
            file.durable = file.current.clone();
            file.pending.clear();
        }
        reordered
    }

    /// Flips one bit of the file at `path`, durably (cold data going bad). Returns false when
    /// there is no such file or byte.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut inner = self.lock();
        let Some(&inode) = inner.names.get(path) else {
            return false;
        };
        let Some(file) = inner.files.get_mut(&inode) else {
            return false;
        };
        let at = offset as usize;
        if at >= file.current.len() || at >= file.durable.len() {
            return false;
        }
        file.current[at] ^= 1 << (bit % 8);
        file.durable[at] ^= 1 << (bit % 8);
        true
    }

    /// The paths of the files that exist, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// Runs one changing call: fails if the process is gone or dies now.
    fn change<T>(&self, f: impl FnOnce(&mut Inner) -> io::Result<T>) -> io::Result<T> {
        let mut inner = self.lock();
        if inner.crashed {
            return Err(crashed_error());
        }
        if let Some(left) = inner.crash_in {
            if left == 0 {
                inner.crashed = true;
                return Err(crashed_error());
            }
            inner.crash_in = Some(left - 1);
        }
        inner.changes += 1;
        f(&mut inner)
    }

    /// Runs one reading call: fails if the process is gone.
    fn look<T>(&self, f: impl FnOnce(&Inner) -> io::Result<T>) -> io::Result<T> {
        let inner = self.lock();
        if inner.crashed {
            return Err(crashed_error());
        }
        f(&inner)
    }
}

/// What a power loss leaves of one file's content (see the module docs), and whether sectors
/// of its unsynced writes landed out of order.
fn power_loss(file: &MemFile, sector: usize, rng: &mut impl Rng) -> (Vec<u8>, bool) {
    let mut content = file.durable.clone();
    let mut reordered = false;
    if file.pending.is_empty() {
        return (content, reordered);
    }
    match rng.gen_range(0..3) {
        // Every unsynced change lost.
        0 => {}
        // In order up to a torn last write.
        1 => {
            let kept = rng.gen_range(0..=file.pending.len());
            for change in &file.pending[..kept] {
                change.apply(&mut content);
            }
            if let Some(Pending::Write { offset, bytes }) = file.pending.get(kept) {
                let torn = rng.gen_range(0..=bytes.len());
                Pending::Write {
                    offset: *offset,
                    bytes: bytes[..torn].to_vec(),
                }
                .apply(&mut content);
            }
        }
        // Sectors of the unsynced writes land in any order: a random subset survives.
        _ => {
            for change in &file.pending {
                match change {
                    Pending::SetLen(_) => {
                        if rng.gen_bool(0.5) {
                            change.apply(&mut content);
                        }
                    }
                    Pending::Write { offset, bytes } => {
                        let mut at = 0;
                        while at < bytes.len() {
                            // Sectors are aligned on the file, not on the write.
                            let sector_end = ((offset + at) / sector + 1) * sector - offset;
                            let end = sector_end.min(bytes.len());
                            if rng.gen_bool(0.5) {
                                Pending::Write {
                                    offset: offset + at,
                                    bytes: bytes[at..end].to_vec(),
                                }
                                .apply(&mut content);
                            } else {
                                reordered = true;
                            }
                            at = end;
                        }
                    }
                }
            }
        }
    }
    (content, reordered)
}

impl Fs for MemFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit: every path is a name in one flat table.
        self.look(|_| Ok(()))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.look(|inner| Ok(inner.names.contains_key(path)))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        self.look(|inner| {
            let inode = inner.names.get(path).ok_or_else(|| not_found(path))?;
            Ok(inner.files[inode].current.len() as u64)
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.look(|inner| {
            let inode = inner.names.get(path).ok_or_else(|| not_found(path))?;
            Ok(inner.files[inode].current.clone())
        })
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let inode = self.change(|inner| {
            if let Some(&inode) = inner.names.get(path) {
                let file = inner.files.entry(inode).or_default();
                file.current.clear();
                file.pending.push(Pending::SetLen(0));
                return Ok(inode);
            }
            inner.next_inode += 1;
            let inode = inner.next_inode;
            inner.files.insert(inode, MemFile::default());
            inner.names.insert(path.to_path_buf(), inode);
            inner
                .name_log
                .push(NameChange::Link(path.to_path_buf(), inode));
            Ok(inode)
        })?;
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            inode,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let inode = self.look(|inner| {
            inner
                .names
                .get(path)
                .copied()
                .ok_or_else(|| not_found(path))
        })?;
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            inode,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change(|inner| {
            let inode = inner.names.remove(from).ok_or_else(|| not_found(from))?;
            inner.names.insert(to.to_path_buf(), inode);
            inner
                .name_log
                .push(NameChange::Rename(from.to_path_buf(), to.to_path_buf()));
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.change(|inner| {
            inner.names.remove(path).ok_or_else(|| not_found(path))?;
            inner.name_log.push(NameChange::Unlink(path.to_path_buf()));
            Ok(())
        })
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.change(|inner| {
            inner.durable_names = inner.names.clone();
            inner.name_log.clear();
            Ok(())
        })
    }
}

/// An open file of a [`MemFs`]: its inode, which stays valid across renames.
#[derive(Debug)]
struct MemHandle {
    fs: MemFs,
    inode: u64,
}

impl FsFile for MemHandle {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let inode = self.inode;
        self.fs.change(|inner| {
            let file = inner.files.entry(inode).or_default();
            let change = Pending::Write {
                offset: offset as usize,
                bytes: bytes.to_vec(),
            };
            change.apply(&mut file.current);
            file.pending.push(change);
            Ok(())
        })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let inode = self.inode;
        self.fs.look(|inner| {
            let content = inner.files.get(&inode).map_or(&[][..], |f| &f.current[..]);
            let start = offset as usize;
            let end = start + buf.len();
            if end > content.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                ));
            }
            buf.copy_from_slice(&content[start..end]);
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let inode = self.inode;
        self.fs.change(|inner| {
            let file = inner.files.entry(inode).or_default();
            let change = Pending::SetLen(len as usize);
            change.apply(&mut file.current);
            file.pending.push(change);
            Ok(())
        })
    }

    fn sync(&mut self, _metadata: bool) -> io::Result<()> {
        let inode = self.inode;
        self.fs.change(|inner| {
            let file = inner.files.entry(inode).or_default();
            file.durable = file.current.clone();
            file.pending.clear();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    }

    fn write(fs: &MemFs, path: &str, bytes: &[u8], sync: bool) {
        let mut file = fs.create(Path::new(path)).unwrap();
        file.write_at(0, bytes).unwrap();
        if sync {
            file.sync(true).unwrap();
        }
    }

    #[test]
    fn a_process_crash_keeps_unsynced_writes_and_a_power_loss_may_not() {
        let fs = MemFs::new();
        write(&fs, "/d/a", b"synced", true);
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.open(Path::new("/d/a"))
            .unwrap()
            .write_at(6, b" and not")
            .unwrap();
        let copy = fs.deep_copy();
        fs.crash(Crash::Process, &mut rng());
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"synced and not");
        // Over many power losses: sometimes all of it is lost, never the synced part.
        let mut seen_lost = false;
        for seed in 0..50 {
            let disk = copy.deep_copy();
            disk.crash(
                Crash::PowerLoss,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            );
            let content = disk.read(Path::new("/d/a")).unwrap();
            assert!(content.starts_with(b"synced"), "{content:?}");
            seen_lost |= content == b"synced";
        }
        assert!(seen_lost);
    }

    #[test]
    fn a_name_is_durable_only_after_the_directory_is_synced() {
        // Some power loss must lose a file whose name was never made durable.
        let lost = (0..20).any(|seed| {
            let d = MemFs::new();
            write(&d, "/d/new", b"data", true);
            d.crash(
                Crash::PowerLoss,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            );
            !d.exists(Path::new("/d/new")).unwrap()
        });
        assert!(lost);
        let d = MemFs::new();
        write(&d, "/d/new", b"data", true);
        d.sync_dir(Path::new("/d")).unwrap();
        d.crash(Crash::PowerLoss, &mut rng());
        assert_eq!(d.read(Path::new("/d/new")).unwrap(), b"data");
    }

    #[test]
    fn an_armed_crash_fails_the_call_after_the_allowed_ones_and_every_call_after() {
        let fs = MemFs::new();
        fs.arm_crash(2);
        let mut file = fs.create(Path::new("/a")).unwrap(); // 1
        file.write_at(0, b"x").unwrap(); // 2
        assert!(file.sync(false).is_err());
        assert!(fs.crashed());
        assert!(fs.read(Path::new("/a")).is_err());
        fs.crash(Crash::Process, &mut rng());
        assert!(!fs.crashed());
        assert_eq!(fs.read(Path::new("/a")).unwrap(), b"x");
    }
}
