//! The process supervisor: runs each node of a cluster as a child process and breaks it on demand.
//!
//! A [`Supervisor`] holds one slot per node (0-based index). Each slot remembers how to start its
//! process ([`ProcessSpec`]: program, arguments, environment, working directory, log file), so
//! `restart` starts it again exactly as before, with the same data directory.
//!
//! # No orphans, ever
//! A test harness that leaks `riptide-server` processes poisons every later run (ports taken, data
//! directories written to). Three mechanisms together make sure every child dies with us:
//! - **Kill on drop.** Dropping the [`Supervisor`] (also while unwinding from a panic) sends `SIGKILL`
//!   to every child that is still alive.
//! - **Process groups.** Each child leads its own process group (`process_group(0)`), and every
//!   signal goes to the whole group, so helpers a node forks (a shell wrapper, `sleep`) share its fate.
//!   It also keeps a terminal's Ctrl-C (sent to the harness's group) from reaching nodes directly.
//! - **Parent-death signal.** In the child, between `fork` and `exec`, we call
//!   `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the child when its parent dies, even when the
//!   harness itself is killed with `SIGKILL` and runs no destructor. Then we check that `getppid()`
//!   still is the harness: if the harness died between `fork` and `prctl`, the signal would never come,
//!   so the child refuses to `exec`.
//!
//! The parent-death signal fires when the *thread* that forked the child exits, not the process.
//! Tokio's worker and blocking threads come and go, so children are never forked from them: every
//! spawn is handed to one dedicated thread (`riptide-nemesis-spawner`), started on first use and
//! blocked on its request channel for the rest of the process's life. Its sender lives in a
//! `static`, so the thread never sees the channel close and never exits before the process does.
//!
//! # Knowing who killed whom
//! Each running child has a reaper thread that waits for it with `waitid(WEXITED | WNOWAIT)`, which
//! observes the exit *without* reaping. It then takes the child's lock, reaps it and records the
//! status. Signals are sent while holding the same lock and only to a child not yet reaped, so a
//! signal can never hit an unrelated process that reused the PID. Every signal the supervisor sends is
//! recorded in [`ExitInfo::signals_sent`], so the harness can tell a node that crashed on its own from
//! one the nemesis killed ([`ExitInfo::ended_by_supervisor`]).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::error::NemesisError;

/// How long `kill` waits for the kernel to deliver `SIGKILL` and the reaper to collect the child.
/// `SIGKILL` cannot be caught, so this only runs out on a badly overloaded machine.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often [`Supervisor::wait_ready`] re-runs the caller's probe.
const READY_POLL: Duration = Duration::from_millis(50);

/// Everything needed to start (and later restart) one child process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The executable; looked up in `PATH` when it has no slash, like [`std::process::Command`].
    pub program: PathBuf,
    /// Arguments, without the program name.
    pub args: Vec<OsString>,
    /// Extra environment variables, on top of the harness's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory of the child; the harness's when `None`.
    pub cwd: Option<PathBuf>,
    /// File that receives both stdout and stderr (its directory is created if missing). Opened in
    /// append mode, so the output of every incarnation of the node ends up in one file, each
    /// preceded by a header line `=== riptide-nemesis: start #N: <command> ===`.
    pub log_path: PathBuf,
}

impl ProcessSpec {
    /// A spec with no arguments, no extra environment and the harness's working directory.
    pub fn new(program: impl Into<PathBuf>, log_path: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log_path: log_path.into(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// What a node's process is doing, as far as the supervisor knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum ProcessState {
    /// Registered with [`Supervisor::add`] but never started.
    NotStarted,
    /// Alive and not paused by the supervisor.
    Running { pid: u32 },
    /// Alive but stopped with `SIGSTOP` by [`Supervisor::pause`].
    Paused { pid: u32 },
    /// Dead and reaped.
    Exited(ExitInfo),
}

/// How one incarnation of a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The PID it had (now free for the OS to reuse).
    pub pid: u32,
    /// 1 for the first start of the node, 2 after the first restart, and so on.
    pub incarnation: u32,
    /// Exit code when it exited normally.
    pub code: Option<i32>,
    /// Number of the signal that ended it, when a signal did.
    pub signal: Option<i32>,
    /// Names of the signals the supervisor sent to this incarnation, in order (`"SIGKILL"`,
    /// `"SIGTERM"`, `"SIGSTOP"`, `"SIGCONT"`): the evidence of whether *we* caused the exit.
    pub signals_sent: Vec<String>,
}

impl ExitInfo {
    /// True when the supervisor sent `SIGTERM` or `SIGKILL` to this incarnation, i.e. the nemesis or
    /// the harness ended it. False means the process exited (or crashed) on its own.
    pub fn ended_by_supervisor(&self) -> bool {
        self.signals_sent
            .iter()
            .any(|s| s == "SIGKILL" || s == "SIGTERM")
    }

    /// A short human-readable status, e.g. `exit code 1` or `killed by SIGKILL (sent by supervisor)`.
    pub fn describe(&self) -> String {
        let cause = if self.ended_by_supervisor() {
            " (sent by supervisor)"
        } else {
            ""
        };
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}{cause}"),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig).map_or("unknown signal", Signal::as_str);
                format!("killed by {name}{cause}")
            }
            (None, None) => format!("ended with unknown status{cause}"),
        }
    }
}

/// Runs the processes of a cluster, one slot per node, and kills them all when dropped.
///
/// Must be used from within a tokio runtime (its waits are async). Methods that take a node index
/// return [`NemesisError::UnknownNode`] for an index that was never added.
#[derive(Debug, Default)]
pub struct Supervisor {
    /// One slot per node, indexed by node number.
    slots: Vec<Slot>,
}

/// One node: how to start it and its current incarnation, if any.
#[derive(Debug)]
struct Slot {
    /// How to start it; reused verbatim by `restart`.
    spec: ProcessSpec,
    /// Number of times it has been started so far.
    incarnations: u32,
    /// The most recently started incarnation (alive or already reaped).
    current: Option<Arc<Incarnation>>,
}

/// One running (or reaped) child process.
#[derive(Debug)]
struct Incarnation {
    /// Its PID, which is also its process group id (it leads its own group).
    pid: u32,
    /// Its number among the starts of this node, from 1.
    number: u32,
    /// State shared with the reaper thread; signals are sent while holding this lock.
    life: Mutex<Life>,
    /// Becomes `Some` once the reaper has collected the child, waking every waiter.
    exit: watch::Sender<Option<ExitInfo>>,
}

/// The mutable part of an incarnation.
#[derive(Debug, Default)]
struct Life {
    /// Set while the supervisor has it stopped with `SIGSTOP`.
    paused: bool,
    /// Every signal the supervisor sent it, for [`ExitInfo::signals_sent`].
    signals_sent: Vec<String>,
    /// `Some` once reaped: from then on its PID belongs to nobody we may signal.
    exit: Option<ExitInfo>,
}

impl Incarnation {
    fn life(&self) -> MutexGuard<'_, Life> {
        // A poisoned lock only means another thread panicked while holding it; the data (flags and
        // a list of names) stays meaningful, so keep going rather than leak a child.
        self.life
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `signal` to the child's process group, unless the child has already been reaped.
    fn signal(&self, signal: Signal) -> Result<(), SignalError> {
        let mut life = self.life();
        if life.exit.is_some() {
            return Err(SignalError::Exited);
        }
        let pid = Pid::from_raw(self.pid as i32);
        // The group can only be empty when the leader changed its own group (it never should);
        // fall back to the process itself then.
        match killpg(pid, signal) {
            Err(Errno::ESRCH) => kill(pid, signal).map_err(SignalError::Os)?,
            other => other.map_err(SignalError::Os)?,
        }
        life.signals_sent.push(signal.as_str().to_owned());
        match signal {
            Signal::SIGSTOP => life.paused = true,
            Signal::SIGCONT => life.paused = false,
            _ => {}
        }
        Ok(())
    }

    fn state(&self) -> ProcessState {
        let life = self.life();
        match (&life.exit, life.paused) {
            (Some(exit), _) => ProcessState::Exited(exit.clone()),
            (None, true) => ProcessState::Paused { pid: self.pid },
            (None, false) => ProcessState::Running { pid: self.pid },
        }
    }

    fn is_alive(&self) -> bool {
        self.life().exit.is_none()
    }

    /// Waits until the child has been reaped, up to `timeout`.
    async fn wait_exit(&self, timeout: Duration) -> Option<ExitInfo> {
        let mut exit = self.exit.subscribe();
        let waited = tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(info)) => info.clone(),
            // The sender lives in `self`, so it cannot be dropped while we borrow it.
            Ok(Err(_)) | Err(_) => self.life().exit.clone(),
        }
    }
}

/// Why a signal could not be sent.
enum SignalError {
    /// The child was already reaped.
    Exited,
    /// The OS refused.
    Os(Errno),
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(current) = &slot.current {
                if current.signal(Signal::SIGKILL).is_ok() {
                    tracing::debug!(pid = current.pid, "killed child on supervisor drop");
                }
            }
        }
    }
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new() -> Self {
        Supervisor::default()
    }

    /// Registers a node without starting it; returns its index.
    pub fn add(&mut self, spec: ProcessSpec) -> usize {
        self.slots.push(Slot {
            spec,
            incarnations: 0,
            current: None,
        });
        self.slots.len() - 1
    }

    /// Registers a node and starts it; returns its index. When the start fails the node stays
    /// registered (index `len() - 1`), not started.
    pub async fn spawn(&mut self, spec: ProcessSpec) -> Result<usize, NemesisError> {
        let node = self.add(spec);
        self.start(node).await?;
        Ok(node)
    }

    /// Number of registered nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no node is registered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How the node is started.
    pub fn spec(&self, node: usize) -> Result<&ProcessSpec, NemesisError> {
        Ok(&self.slot(node)?.spec)
    }

    /// Changes how the node will be started next time (it does not touch a running process).
    pub fn spec_mut(&mut self, node: usize) -> Result<&mut ProcessSpec, NemesisError> {
        Ok(&mut self.slot_mut(node)?.spec)
    }

    /// The node's log file.
    pub fn log_path(&self, node: usize) -> Result<&Path, NemesisError> {
        Ok(&self.slot(node)?.spec.log_path)
    }

    /// PID of the node's live process (running or paused); `None` when not started or exited.
    pub fn pid(&self, node: usize) -> Result<Option<u32>, NemesisError> {
        Ok(self
            .slot(node)?
            .current
            .as_ref()
            .filter(|c| c.is_alive())
            .map(|c| c.pid))
    }

    /// Current state of the node's process.
    pub fn state(&self, node: usize) -> Result<ProcessState, NemesisError> {
        Ok(match &self.slot(node)?.current {
            None => ProcessState::NotStarted,
            Some(current) => current.state(),
        })
    }

    /// True when the node's process is alive (running or paused).
    pub fn is_alive(&self, node: usize) -> Result<bool, NemesisError> {
        Ok(self.pid(node)?.is_some())
    }

    /// A receiver that turns `Some` when the node's *current* incarnation exits, for callers that
    /// want to notice crashes as they happen. `None` when the node was never started.
    pub fn exit_watch(
        &self,
        node: usize,
    ) -> Result<Option<watch::Receiver<Option<ExitInfo>>>, NemesisError> {
        Ok(self
            .slot(node)?
            .current
            .as_ref()
            .map(|c| c.exit.subscribe()))
    }

    /// Starts the node's process. Fails with [`NemesisError::AlreadyRunning`] if it is alive.
    /// Returns the new PID.
    pub async fn start(&mut self, node: usize) -> Result<u32, NemesisError> {
        let slot = self.slot_mut(node)?;
        if let Some(current) = slot.current.as_ref().filter(|c| c.is_alive()) {
            return Err(NemesisError::AlreadyRunning {
                node,
                pid: current.pid,
            });
        }
        let number = slot.incarnations + 1;
        let command = build_command(&slot.spec, number)?;
        let child =
            spawn_on_spawner_thread(command)
                .await?
                .map_err(|source| NemesisError::Spawn {
                    program: slot.spec.program.clone(),
                    source,
                })?;
        slot.incarnations = number;
        let pid = child.id();
        let (exit, _) = watch::channel(None);
        let incarnation = Arc::new(Incarnation {
            pid,
            number,
            life: Mutex::new(Life::default()),
            exit,
        });
        start_reaper(Arc::clone(&incarnation), child);
        slot.current = Some(incarnation);
        tracing::info!(node, pid, incarnation = number, "started process");
        Ok(pid)
    }

    /// Polls `probe` until it returns true, the process exits, or `deadline` passes.
    ///
    /// The probe is the caller's (typically an HTTP GET on `/status`); each call is also cut off at
    /// the deadline, so a probe that hangs cannot make this overrun.
    pub async fn wait_ready<F, Fut>(
        &self,
        node: usize,
        mut probe: F,
        deadline: Instant,
    ) -> Result<(), NemesisError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let log = self.log_path(node)?.to_path_buf();
        loop {
            if let ProcessState::Exited(info) = self.state(node)? {
                return Err(NemesisError::ExitedBeforeReady {
                    node,
                    status: info.describe(),
                    log,
                });
            }
            if matches!(tokio::time::timeout_at(deadline, probe()).await, Ok(true)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NemesisError::NotReady { node, log });
            }
            tokio::time::sleep(READY_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Waits until the node's current process exits on its own (or by anyone's hand), up to
    /// `timeout`. Returns `None` on timeout or when the node was never started.
    pub async fn wait_exit(
        &self,
        node: usize,
        timeout: Duration,
    ) -> Result<Option<ExitInfo>, NemesisError> {
        match &self.slot(node)?.current {
            None => Ok(None),
            Some(current) => Ok(current.wait_exit(timeout).await),
        }
    }

    /// Sends `SIGKILL` to the node's process group and waits until the process is reaped (so no
    /// zombie stays behind and its ports are free again).
    pub async fn kill(&mut self, node: usize) -> Result<ExitInfo, NemesisError> {
        let current = self.live(node)?;
        send(node, &current, Signal::SIGKILL)?;
        current
            .wait_exit(KILL_WAIT)
            .await
            .ok_or(NemesisError::ExitTimeout {
                node,
                pid: current.pid,
                waited_ms: KILL_WAIT.as_millis() as u64,
            })
    }

    /// Asks the node to stop with `SIGTERM` (resuming it first if paused, or it could not act on
    /// the signal); after `grace` without an exit, sends `SIGKILL`. Waits until reaped.
    pub async fn stop(&mut self, node: usize, grace: Duration) -> Result<ExitInfo, NemesisError> {
        let current = self.live(node)?;
        send(node, &current, Signal::SIGTERM)?;
        if current.life().paused {
            send(node, &current, Signal::SIGCONT)?;
        }
        if let Some(info) = current.wait_exit(grace).await {
            return Ok(info);
        }
        tracing::warn!(
            node,
            pid = current.pid,
            ?grace,
            "no exit after SIGTERM, sending SIGKILL"
        );
        self.kill(node).await
    }

    /// Stops the node's process group with `SIGSTOP`: it keeps its sockets and memory but runs no
    /// instruction until [`Supervisor::resume`], like a long GC pause or a frozen VM.
    pub fn pause(&mut self, node: usize) -> Result<(), NemesisError> {
        let current = self.live(node)?;
        send(node, &current, Signal::SIGSTOP)
    }

    /// Lets a paused node run again with `SIGCONT`.
    pub fn resume(&mut self, node: usize) -> Result<(), NemesisError> {
        let current = self.live(node)?;
        send(node, &current, Signal::SIGCONT)
    }

    /// Kills the node if it is alive (waiting until reaped) and starts it again with the same
    /// program, arguments, environment and working directory. Returns the new PID.
    pub async fn restart(&mut self, node: usize) -> Result<u32, NemesisError> {
        if self.is_alive(node)? {
            match self.kill(node).await {
                Ok(_) | Err(NemesisError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.start(node).await
    }

    /// Stops every live node (`SIGTERM`, then `SIGKILL` after `grace`), all at once.
    pub async fn shutdown(&mut self, grace: Duration) {
        let live: Vec<(usize, Arc<Incarnation>)> = (0..self.slots.len())
            .filter_map(|node| self.live(node).ok().map(|c| (node, c)))
            .collect();
        for (node, current) in &live {
            let _ = send(*node, current, Signal::SIGTERM);
            if current.life().paused {
                let _ = send(*node, current, Signal::SIGCONT);
            }
        }
        let deadline = Instant::now() + grace;
        for (node, current) in &live {
            let left = deadline.saturating_duration_since(Instant::now());
            if current.wait_exit(left).await.is_none() {
                let _ = send(*node, current, Signal::SIGKILL);
                let _ = current.wait_exit(KILL_WAIT).await;
            }
        }
    }

    fn slot(&self, node: usize) -> Result<&Slot, NemesisError> {
        let count = self.slots.len();
        self.slots
            .get(node)
            .ok_or(NemesisError::UnknownNode { node, count })
    }

    fn slot_mut(&mut self, node: usize) -> Result<&mut Slot, NemesisError> {
        let count = self.slots.len();
        self.slots
            .get_mut(node)
            .ok_or(NemesisError::UnknownNode { node, count })
    }

    /// The node's current incarnation if it is alive.
    fn live(&self, node: usize) -> Result<Arc<Incarnation>, NemesisError> {
        self.slot(node)?
            .current
            .as_ref()
            .filter(|c| c.is_alive())
            .cloned()
            .ok_or(NemesisError::NotRunning { node })
    }
}

fn send(node: usize, current: &Incarnation, signal: Signal) -> Result<(), NemesisError> {
    current.signal(signal).map_err(|e| match e {
        SignalError::Exited => NemesisError::NotRunning { node },
        SignalError::Os(source) => NemesisError::Signal {
            node,
            pid: current.pid,
            signal: signal.as_str(),
            source,
        },
    })
}

/// Builds the command for one incarnation: output to the log, own process group, parent-death
/// signal. Writes a header line into the log first so incarnations are easy to tell apart.
fn build_command(spec: &ProcessSpec, incarnation: u32) -> Result<Command, NemesisError> {
    let log_error = |source| NemesisError::LogFile {
        path: spec.log_path.clone(),
        source,
    };
    if let Some(dir) = spec.log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(log_error)?;
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(log_error)?;
    writeln!(
        log,
        "=== riptide-nemesis: start #{incarnation}: {} {} ===",
        spec.program.display(),
        spec.args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .map_err(log_error)?;
    let stderr = log.try_clone().map_err(log_error)?;

    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed; prctl and getppid are plain system calls, and the error path allocates
    // nothing (`from_raw_os_error` builds an inline value).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The harness may have died between fork and prctl: then no death signal will ever
            // come, and we would be an orphan. Refuse to exec.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(command)
}

/// A request to the spawner thread: the command to fork and where to send the child.
struct SpawnRequest {
    command: Command,
    reply: oneshot::Sender<std::io::Result<Child>>,
}

/// Sender to the dedicated spawner thread. It is never dropped, so the thread never exits, so the
/// parent-death signal of its children only fires when the whole process dies.
static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("riptide-nemesis-spawner".into())
            .spawn(move || {
                for SpawnRequest { mut command, reply } in incoming {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = started {
            // `incoming` was dropped with the closure: every spawn will report SpawnerGone.
            tracing::error!(error = %e, "cannot start the process spawner thread");
        }
        requests
    })
}

async fn spawn_on_spawner_thread(command: Command) -> Result<std::io::Result<Child>, NemesisError> {
    let (reply, child) = oneshot::channel();
    spawner()
        .send(SpawnRequest { command, reply })
        .map_err(|_| NemesisError::SpawnerGone)?;
    child.await.map_err(|_| NemesisError::SpawnerGone)
}

/// Starts the thread that waits for the child to exit, reaps it and publishes its status.
fn start_reaper(incarnation: Arc<Incarnation>, mut child: Child) {
    let pid = incarnation.pid;
    let reaper = move || {
        // Wait for the exit without reaping, so the PID stays ours while we take the lock.
        loop {
            match waitid(
                Id::Pid(Pid::from_raw(pid as i32)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Err(Errno::EINTR) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(pid, error = %e, "waitid failed; reaping directly");
                    break;
                }
            }
        }
        let mut life = incarnation.life();
        let status = child.wait();
        let (code, signal) = match &status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        let info = ExitInfo {
            pid,
            incarnation: incarnation.number,
            code,
            signal,
            signals_sent: life.signals_sent.clone(),
        };
        life.exit = Some(info.clone());
        life.paused = false;
        drop(life);
        tracing::info!(pid, status = info.describe(), "process exited");
        incarnation.exit.send_replace(Some(info));
    };
    let started = std::thread::Builder::new()
        .name(format!("riptide-nemesis-reaper-{pid}"))
        .spawn(reaper);
    if let Err(e) = started {
        // Without a reaper the child would never be collected; the supervisor can still signal it,
        // but waits on it would time out. Say so loudly.
        tracing::error!(pid, error = %e, "cannot start reaper thread");
    }
}
