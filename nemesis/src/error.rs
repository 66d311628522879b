//! The one error type of the nemesis library: what went wrong, on which node or link, and why.

use std::path::PathBuf;

/// Every failure the nemesis library reports to its caller.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// A node index outside the supervisor or network.
    #[error("unknown node index {node} (cluster has {count} nodes)")]
    UnknownNode { node: usize, count: usize },

    /// The log file for a child could not be opened.
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The OS refused to start the child process.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },

    /// The dedicated spawner thread is gone (it never exits, so this means a panic inside it).
    #[error("the process spawner thread is gone")]
    SpawnerGone,

    /// The operation needs a live process but the node is not running.
    #[error("node {node} is not running")]
    NotRunning { node: usize },

    /// The node was asked to start while it is still running.
    #[error("node {node} is already running (pid {pid})")]
    AlreadyRunning { node: usize, pid: u32 },

    /// Sending a signal failed.
    #[error("cannot send {signal} to node {node} (pid {pid}): {source}")]
    Signal {
        node: usize,
        pid: u32,
        signal: &'static str,
        source: nix::errno::Errno,
    },

    /// The process did not exit in time after a signal that should have ended it.
    #[error("node {node} (pid {pid}) did not exit within {waited_ms} ms")]
    ExitTimeout {
        node: usize,
        pid: u32,
        waited_ms: u64,
    },

    /// The readiness probe never succeeded before the deadline.
    #[error("node {node} was not ready before the deadline (log: {log})")]
    NotReady { node: usize, log: PathBuf },

    /// The process exited while we waited for it to become ready.
    #[error("node {node} exited before it was ready ({status}; log: {log})")]
    ExitedBeforeReady {
        node: usize,
        status: String,
        log: PathBuf,
    },

    /// A proxy could not bind its loopback listener.
    #[error("cannot bind a link proxy on 127.0.0.1: {0}")]
    ProxyBind(std::io::Error),

    /// A topology that needs more nodes than the cluster has.
    #[error("{topology} needs at least {needed} nodes, the cluster has {count}")]
    TooFewNodes {
        topology: &'static str,
        needed: usize,
        count: usize,
    },

    /// A schedule that cannot be generated as asked.
    #[error("bad schedule: {0}")]
    BadSchedule(String),

    /// A fault that takes more than one step, handed to [`crate::apply`] instead of the schedule
    /// driver.
    #[error("{0} takes more than one step: play it with run_schedule, not apply")]
    NeedsScheduleDriver(&'static str),

    /// Fault kinds that need something the cluster was not given (see
    /// [`crate::FaultKind::requires`]).
    #[error("cannot play {kinds}: {reason}")]
    Unsupported { kinds: String, reason: &'static str },

    /// The filesystem layer failed a disk fault.
    #[error("{fault} on node {node}: {source}")]
    Disk {
        node: usize,
        fault: &'static str,
        source: crate::disk::DiskError,
    },

    /// A fault name that is not in the vocabulary.
    /// The harness could not carry out a membership fault's step on a node (start or stop it).
    #[error("membership fault on node {node}: {source}")]
    Membership {
        node: usize,
        source: crate::membership::MembershipError,
    },

    #[error("unknown fault {0:?} (known: {known})", known = crate::fault::known_names())]
    UnknownFault(String),
}
