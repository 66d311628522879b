//! A watchdog process per mount that detaches the mount when its owner ends without unmounting
//! it (`kill -9`, `std::process::exit`, an abort), so no mount outlives its owner.
//!
//! `fusermount3`'s `auto_unmount` is not enough on its own. When the owner's end of its socket
//! closes, `fusermount3` unmounts only if opening the mount point fails with `ENOTCONN`, that is
//! once the FUSE connection is already dead. fuser opens that socket before it receives the
//! `/dev/fuse` descriptor, so the socket has the lower descriptor number, and a dying process
//! closes its descriptors in order: `fusermount3` can wake and open the mount point while the
//! device descriptors are still open, see the connection aborted under it (`ECONNABORTED`) and
//! leave the mount in place. The guard does not depend on that ordering: it waits on a pipe whose
//! only write end the owner holds, and a lazy detach works whether or not the connection is alive.
//!
//! The guard is a `fork` of the owner that calls only async-signal-safe functions (everything it
//! needs is prepared before the fork), in a session of its own so that a Ctrl-C at the terminal
//! does not end it before the owner has cleaned up.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The byte that tells the guard the owner unmounted cleanly: exit without touching the path
/// (a later mount there is not its business).
const DISARM: u8 = b'd';

/// The owner's side of a guard: the pipe's write end and the guard's PID, to reap it.
#[derive(Debug)]
pub(crate) struct MountGuard {
    pid: libc::pid_t,
    pipe: Option<OwnedFd>,
}

/// What the forked guard needs, built before the fork (the child must not allocate).
struct Prepared {
    mountpoint: CString,
    fusermount: CString,
    argv: Vec<CString>,
}

impl MountGuard {
    /// Forks a guard for the mount at `mountpoint` (made or about to be made by this process).
    pub(crate) fn spawn(mountpoint: &Path, fusermount: &Path) -> io::Result<MountGuard> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let prepared = Prepared {
            mountpoint: c(mountpoint.as_os_str().as_bytes())?,
            fusermount: c(fusermount.as_os_str().as_bytes())?,
            argv: vec![
                c(b"fusermount3")?,
                c(b"-u")?,
                c(b"-z")?,
                c(b"-q")?,
                c(b"--")?,
                c(mountpoint.as_os_str().as_bytes())?,
            ],
        };
        let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];

        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

        // SAFETY: the child runs only `guard`, which calls async-signal-safe functions on data
        // prepared above and never returns; the parent continues as usual.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => unsafe {
                guard(
                    read.as_raw_fd(),
                    &prepared.mountpoint,
                    &prepared.fusermount,
                    &argv,
                    &envp,
                )
            },
            pid => {
                drop(read);
                Ok(MountGuard {
                    pid,
                    pipe: Some(write),
                })
            }
        }
    }

    /// The owner unmounted cleanly: the guard exits without touching the mount point.
    pub(crate) fn disarm(mut self) {
        if let Some(pipe) = &self.pipe {
            let byte = [DISARM];
            // SAFETY: pipe is open and byte is one readable byte. A failed write leaves the
            // guard armed, and it then finds nothing mounted to detach.
            unsafe { libc::write(pipe.as_raw_fd(), byte.as_ptr().cast(), 1) };
        }
        self.end();
    }

    /// Closes the pipe (an armed guard detaches the mount if it is still there) and reaps the
    /// guard.
    fn end(&mut self) {
        let Some(pipe) = self.pipe.take() else {
            return;
        };
        drop(pipe);
        let mut status = 0;
        // SAFETY: pid is this process's child, and status is a valid place to write to.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } == -1 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
}

impl Drop for MountGuard {
    /// Not disarmed: the owner is giving the mount up without a clean unmount, so the guard
    /// detaches it now.
    fn drop(&mut self) {
        self.end();
    }
}

/// The guard process: waits until the owner writes [`DISARM`] (exit) or is gone (the pipe's
/// write end closed without it: detach the mount, then exit).
///
/// # Safety
/// Call only in the child of a fork; it uses nothing but async-signal-safe calls on the given
/// data and ends the process.
unsafe fn guard(
    pipe: RawFd,
    mountpoint: &CStr,
    fusermount: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    libc::setsid();
    libc::chdir(c"/".as_ptr());
    // Named for `ps -o comm` and `top`; its command line is still its owner's.
    libc::prctl(libc::PR_SET_NAME, c"faultfs-guard".as_ptr());
    // The owner's handlers mean nothing here, and a signal meant for the owner's group or
    // cgroup (Ctrl-C, a CI job's SIGTERM) must not end the guard before it has detached.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        libc::signal(signal, libc::SIG_IGN);
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    // Hold nothing of the owner's: no other descriptor (another mount's /dev/fuse, another
    // guard's pipe, a node's socket) may outlive the owner through the guard.
    close_all_but(pipe);
    // Standard descriptors on /dev/null, so that nothing the helper opens lands on them.
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    for fd in 0..3 {
        if null >= 0 && fd != pipe && fd != null {
            libc::dup2(null, fd);
        }
    }
    if null > 2 {
        libc::close(null);
    }
    let mut byte = 0u8;
    loop {
        match libc::read(pipe, (&mut byte as *mut u8).cast(), 1) {
            1 if byte == DISARM => libc::_exit(0),
            -1 if errno() == libc::EINTR => continue,
            _ => break,
        }
    }
    // NOFOLLOW: a symlink put where the mount point was must not lead the guard elsewhere.
    if libc::umount2(
        mountpoint.as_ptr(),
        libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW,
    ) == 0
        || matches!(errno(), libc::EINVAL | libc::ENOENT)
    {
        libc::_exit(0);
    }
    // Not root: the setuid helper may detach a mount its user made.
    match libc::fork() {
        0 => {
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(signal, libc::SIG_DFL);
            }
            libc::execve(fusermount.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
        -1 => libc::_exit(1),
        helper => {
            let mut status = 0;
            libc::waitpid(helper, &mut status, 0);
            libc::_exit(0)
        }
    }
}

/// This thread's `errno` (async-signal-safe, unlike anything that might allocate).
unsafe fn errno() -> libc::c_int {
    *libc::__errno_location()
}

/// Closes every descriptor but `keep` (async-signal-safe).
unsafe fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    if keep > 0 {
        close_range(0, keep - 1);
    }
    close_range(keep + 1, libc::c_uint::MAX);
}

unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) {
    let (from, to) = (libc::c_ulong::from(first), libc::c_ulong::from(last));
    if libc::syscall(libc::SYS_close_range, from, to, 0 as libc::c_ulong) == 0 {
        return;
    }
    // Kernels before 5.9 lack close_range: close one by one up to the descriptor limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let end = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        1024
    };
    for fd in first..end.min(last.saturating_add(1)) {
        libc::close(fd as libc::c_int);
    }
}
