//! The FUSE filesystem: a passthrough of the backing directory whose file data goes through the
//! volatile [`Cache`] instead of straight to disk.
//!
//! Metadata operations (create, mkdir, rename, unlink, rmdir, chmod, chown) go to the backing
//! directory at once and so are durable at once, as in LazyFS; only file contents and sizes
//! (write, truncate) wait in memory for an fsync. Inode numbers are the mount's own (the root is
//! 1), mapped to paths relative to the backing directory. Attribute and entry TTLs are zero, so
//! the kernel asks again after a fault changed a file under it; locks (`flock`, `fcntl`) are left
//! to the kernel, which keeps them locally for the mount.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::cache::{self, Cache, DirtyFile};

/// Entries and attributes are never cached by the kernel: a fault may change them at any time.
const TTL: Duration = Duration::ZERO;

/// What the filesystem threads and the [`crate::FaultFs`] handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) backing: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) nodes: Nodes,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pub(crate) cache: Cache,
}

/// An open file: the backing file descriptor and whether writes go to the end.
#[derive(Debug)]
struct Handle {
    ino: u64,
    file: Arc<File>,
    append: bool,
}

/// The mount's inode numbers and the backing paths (relative) they stand for.
#[derive(Debug)]
pub(crate) struct Nodes {
    by_ino: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Default for Nodes {
    fn default() -> Self {
        let mut nodes = Nodes {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: INodeNo::ROOT.0 + 1,
        };
        nodes.by_ino.insert(INodeNo::ROOT.0, PathBuf::new());
        nodes.by_path.insert(PathBuf::new(), INodeNo::ROOT.0);
        nodes
    }
}

impl Nodes {
    /// The path of `ino` relative to the backing directory (its last name, if it was unlinked).
    pub(crate) fn path(&self, ino: u64) -> Option<&Path> {
        self.by_ino.get(&ino).map(PathBuf::as_path)
    }

    fn ino_for(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.by_path.get(path) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(ino, path.to_path_buf());
        self.by_path.insert(path.to_path_buf(), ino);
        ino
    }

    /// Forgets the name `path` (unlink, or the target of a rename); returns its inode.
    fn unlink(&mut self, path: &Path) -> Option<u64> {
        self.by_path.remove(path)
    }

    /// Moves `from` and everything under it to `to`.
    fn rename(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, ino)| (path.clone(), *ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            self.by_ino.insert(ino, new.clone());
            self.by_path.insert(new, ino);
        }
    }
}

impl Shared {
    pub(crate) fn new(backing: PathBuf) -> Shared {
        Shared {
            backing,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one request handler must not wedge the mount for the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn full_path(&self, relative: &Path) -> PathBuf {
        self.backing.join(relative)
    }

    /// Writes a file's pending ops to its backing file and fsyncs it (for a clean unmount and
    /// for a torn write's persisted part).
    pub(crate) fn persist(&self, relative: &Path, ops: &[cache::PendingOp]) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.full_path(relative))?;
        cache::apply(&file, ops)?;
        file.sync_all()
    }
}

/// The [`Filesystem`] fuser drives; a thin wrapper so [`Shared`] can also be held by the handle.
pub(crate) struct FaultFilesystem {
    pub(crate) shared: Arc<Shared>,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs < 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
}

/// The attributes of `ino` as the mount shows them: the backing file's, with the size readers see.
fn attr(ino: u64, md: &Metadata, dirty: Option<&DirtyFile>) -> FileAttr {
    let size = dirty.map_or(md.size(), |d| d.len);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: md.blocks().max(size.div_ceil(512)),
        atime: system_time(md.atime(), md.atime_nsec()),
        mtime: system_time(md.mtime(), md.mtime_nsec()),
        ctime: system_time(md.ctime(), md.ctime_nsec()),
        crtime: system_time(md.ctime(), md.ctime_nsec()),
        kind: FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

/// `pread` until `buf` is full or the file ends; the number of bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Opens a backing file for reading and, where allowed, writing (fsync persists through it).
/// `O_TRUNC`, `O_APPEND` and `O_CREAT` are the mount's business, never passed on.
fn open_backing(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok(file),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS)) => File::open(path),
        Err(e) => Err(e),
    }
}

impl FaultFilesystem {
    /// The backing path of `ino`, or ENOENT.
    fn path_of(&self, state: &State, ino: INodeNo) -> Result<PathBuf, Errno> {
        state
            .nodes
            .path(ino.0)
            .map(Path::to_path_buf)
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, state: &State, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path_of(state, parent)?.join(name))
    }

    /// Stats `relative`, gives it an inode number and returns its attributes.
    fn entry(&self, state: &mut State, relative: &Path) -> Result<FileAttr, Errno> {
        let md = fs::symlink_metadata(self.shared.full_path(relative)).map_err(|e| errno(&e))?;
        let ino = state.nodes.ino_for(relative);
        Ok(attr(ino, &md, state.cache.get(ino)))
    }

    /// The size of `ino`'s backing file, through an open handle when there is one.
    fn backing_len(&self, state: &State, ino: u64) -> io::Result<u64> {
        if let Some(handle) = state.handles.values().find(|h| h.ino == ino) {
            return Ok(handle.file.metadata()?.len());
        }
        let path = state.nodes.path(ino).ok_or(io::ErrorKind::NotFound)?;
        Ok(fs::metadata(self.shared.full_path(path))?.len())
    }

    fn add_handle(&self, state: &mut State, ino: u64, file: File, flags: i32) -> u64 {
        state.next_fh += 1;
        let fh = state.next_fh;
        state.handles.insert(
            fh,
            Handle {
                ino,
                file: Arc::new(file),
                append: flags & libc::O_APPEND != 0,
            },
        );
        fh
    }
}

impl Filesystem for FaultFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.shared.lock();
        let result = self
            .child(&state, parent, name)
            .and_then(|path| self.entry(&mut state, &path));
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.shared.lock();
        let md = match fh.and_then(|fh| state.handles.get(&fh.0)) {
            Some(handle) => handle.file.metadata(),
            None => match self.path_of(&state, ino) {
                Ok(path) => fs::symlink_metadata(self.shared.full_path(&path)),
                Err(e) => return reply.error(e),
            },
        };
        match md {
            Ok(md) => reply.attr(&TTL, &attr(ino.0, &md, state.cache.get(ino.0))),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.shared.lock();
        let path = match self.path_of(&state, ino) {
            Ok(path) => self.shared.full_path(&path),
            Err(e) => return reply.error(e),
        };
        let result = (|| -> io::Result<()> {
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid)?;
            }
            if let Some(len) = size {
                // A truncation is a data change: volatile until fsync, like a write.
                let backing_len = self.backing_len(&state, ino.0)?;
                state.cache.truncate(ino.0, backing_len, len);
            }
            Ok(())
        })();
        if let Err(e) = result {
            return reply.error(errno(&e));
        }
        let md = match fh.and_then(|fh| state.handles.get(&fh.0)) {
            Some(handle) => handle.file.metadata(),
            None => fs::symlink_metadata(&path),
        };
        match md {
            Ok(md) => reply.attr(&TTL, &attr(ino.0, &md, state.cache.get(ino.0))),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.shared.lock();
        let path = match self.child(&state, parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let made = fs::DirBuilder::new()
            .mode(mode & !umask & 0o7777)
            .create(self.shared.full_path(&path));
        match made
            .map_err(|e| errno(&e))
            .and_then(|()| self.entry(&mut state, &path))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.shared.lock();
        let path = match self.child(&state, parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        match fs::remove_file(self.shared.full_path(&path)) {
            Ok(()) => {
                if let Some(ino) = state.nodes.unlink(&path) {
                    // Data of a file that no longer has a name can never become durable.
                    state.cache.take(ino);
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.shared.lock();
        let path = match self.child(&state, parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        match fs::remove_dir(self.shared.full_path(&path)) {
            Ok(()) => {
                state.nodes.unlink(&path);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / RENAME_EXCHANGE: not needed by the store, refused plainly.
            return reply.error(Errno::EINVAL);
        }
        let mut state = self.shared.lock();
        let (from, to) = match (
            self.child(&state, parent, name),
            self.child(&state, newparent, newname),
        ) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        match fs::rename(self.shared.full_path(&from), self.shared.full_path(&to)) {
            Ok(()) => {
                if let Some(replaced) = state.nodes.unlink(&to) {
                    state.cache.take(replaced);
                }
                state.nodes.rename(&from, &to);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.shared.lock();
        let path = match self.path_of(&state, ino) {
            Ok(path) => self.shared.full_path(&path),
            Err(e) => return reply.error(e),
        };
        match open_backing(&path) {
            Ok(file) => {
                let fh = self.add_handle(&mut state, ino.0, file, flags.0);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.shared.lock();
        let path = match self.child(&state, parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & !umask & 0o7777);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = match options.open(self.shared.full_path(&path)) {
            Ok(file) => file,
            Err(e) => return reply.error(errno(&e)),
        };
        let md = match file.metadata() {
            Ok(md) => md,
            Err(e) => return reply.error(errno(&e)),
        };
        let ino = state.nodes.ino_for(&path);
        if flags & libc::O_TRUNC != 0 && md.len() > 0 {
            state.cache.truncate(ino, md.len(), 0);
        }
        let attr = attr(ino, &md, state.cache.get(ino));
        let fh = self.add_handle(&mut state, ino, file, flags);
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty(),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.shared.lock();
        let Some(handle) = state.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0; size as usize];
        let read = match read_full_at(&handle.file, &mut buf, offset) {
            Ok(read) => read,
            Err(e) => return reply.error(errno(&e)),
        };
        match state.cache.get(ino.0) {
            Some(dirty) => dirty.overlay(offset, &mut buf),
            None => buf.truncate(read),
        }
        reply.data(&buf);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.shared.lock();
        let Some(handle) = state.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let append = handle.append;
        let backing_len = match state.cache.get(ino.0) {
            Some(dirty) => dirty.len,
            None => match handle.file.metadata() {
                Ok(md) => md.len(),
                Err(e) => return reply.error(errno(&e)),
            },
        };
        // O_APPEND writes land at the end the mount knows, not where the kernel guessed it.
        let offset = if append { backing_len } else { offset };
        state.cache.write(ino.0, backing_len, offset, data);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is not fsync: nothing becomes durable here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The pending ops are written to the backing file under the lock (so a concurrent read
        // sees either the cache or the backing file, never neither); the fsync itself runs
        // outside it, so a slow disk does not stall other files.
        let file = {
            let mut state = self.shared.lock();
            let file = match state.handles.get(&fh.0) {
                Some(handle) => Arc::clone(&handle.file),
                None => return reply.error(Errno::EBADF),
            };
            if let Some(dirty) = state.cache.take(ino.0) {
                if let Err(e) = cache::apply(&file, &dirty.ops) {
                    state.cache.restore(ino.0, dirty);
                    return reply.error(errno(&e));
                }
            }
            file
        };
        let synced = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        match synced {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.shared.lock();
        let path = match self.path_of(&state, ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let listing = match fs::read_dir(self.shared.full_path(&path)) {
            Ok(listing) => listing,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        let mut children: Vec<_> = listing.filter_map(Result::ok).collect();
        children.sort_by_key(|entry| entry.file_name());
        for child in children {
            let kind = child
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            let name = child.file_name();
            let child_ino = state.nodes.ino_for(&path.join(&name));
            entries.push((child_ino, kind, name));
        }
        for (index, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let path = {
            let state = self.shared.lock();
            match self.path_of(&state, ino) {
                Ok(path) => self.shared.full_path(&path),
                Err(e) => return reply.error(e),
            }
        };
        match File::open(&path).and_then(|dir| dir.sync_all()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.shared.backing) {
            Ok(st) => reply.statfs(
                st.blocks(),
                st.blocks_free(),
                st.blocks_available(),
                st.files(),
                st.files_free(),
                st.block_size() as u32,
                st.name_max() as u32,
                st.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The mount is the owner's (allow_other is on only so fusermount3 can auto-unmount);
        // permission checks are the backing directory's, done when the file is opened.
        reply.ok();
    }
}
