//! The file-system seam of storage: the few calls the WAL, the hard state file and the
//! snapshot file make, behind a trait, so the same storage code runs on the real disk
//! ([`StdFs`]) and, in the deterministic simulation, on an in-memory disk that loses, tears and
//! reorders unsynced writes, flips bits and crashes between any two calls
//! ([`MemFs`](super::memfs::MemFs)).
//!
//! Files are named by path and written by offset; nothing here buffers. Durability is what
//! the callers ask for: [`FsFile::sync`] for a file's data, [`Fs::sync_dir`] for the names in
//! a directory (a create, rename or remove is durable only after it).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A file system: names, whole-file reads and open files.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents when absent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Size of the file at `path`.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// The whole content of the file at `path` (`NotFound` when there is none).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates the file at `path`, or empties it when it exists, and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens the existing file at `path` for reading and writing (`NotFound` when absent).
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames `from` over `to`, atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the creates, renames and removes done in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file.
pub trait FsFile: Send + fmt::Debug {
    /// Writes all of `bytes` at `offset` (extending the file when needed).
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Fills `buf` from `offset` (an error if the file ends before).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// fsync: makes the file's data durable; with `metadata`, its size too (`sync_all`, for a
    /// size change fdatasync may not cover), otherwise `sync_data`.
    fn sync(&mut self, metadata: bool) -> io::Result<()>;
}

/// The real file system (std::fs).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl StdFs {
    /// A shared handle, as storage holds it.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(StdFs)
    }
}

impl Fs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(StdFile(fs::File::create(path)?)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }
}

/// An open file of [`StdFs`].
#[derive(Debug)]
struct StdFile(fs::File);

impl FsFile for StdFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&mut self, metadata: bool) -> io::Result<()> {
        if metadata {
            self.0.sync_all()
        } else {
            self.0.sync_data()
        }
    }
}
