//! Playing a whole [`Schedule`] against a live cluster: the one driver a harness needs.
//!
//! [`run_schedule`] waits for each fault's window (times relative to the run's start instant, quiet
//! periods included: they are in the schedule), asks the system under test who leads when a fault
//! is aimed at the leader ([`Primary`]), carries the fault out, and tells an [`Observer`] of every
//! start, step, stop and error as it happens, so the harness writes the history events at the
//! moment they are true. It returns a [`ScheduleReport`] of what was done when.
//!
//! How each family fills its window `[start, end]`:
//!
//! ```text
//! partition/link/kill/pause  start ██████████████████ heal at end
//! crash-restart-one/-leader  kill ▇▇ start again after the seeded downtime (0-300 ms); rest quiet
//! crash-restart-election     kill leader ▇ voter ▇ voter ▇ voter ▇ (each back before the next)
//! crash-restart-voter        isolate leader, slow the rest │ voter voted: crash-restart it,
//!                            reconnect the old leader to it only │ ... heal at end
//! leader-churn               isolate leader │ new leader, dwell, isolate it │ ... │ heal at end
//! disk                       kill ▇ filesystem layer acts ▇ start again; rest quiet
//! power-cut, corrupt-all     kill every node ▇ filesystem layer acts on each ▇ start all; rest quiet
//! remove-voter/-leader       remove it ─────────────────── add it back as learner, promote
//! add-learner                start a spare, joins as learner ─────────────── promote it
//! replace-node               remove it, stop it, start a spare that joins ──── (stays replaced)
//! promote-split              two learners; cut leader+them | other voters; promote both ── heal,
//!                            remove both (added back as learners by the next promote-split)
//! ```
//!
//! With a [`MembershipControl`], every other fault is played on the nodes that stand for the
//! schedule's nodes now ([`FaultPlan::remap`] through [`MembershipControl::stand_in`]): after
//! `replace-node` put `n4` in the place of `n1`, `kill n1` kills `n4`.
//!
//! A stop signal ends the schedule early: the fault in effect is healed at once (links healed,
//! crashed nodes started again), so the cluster is never left broken. A fault that cannot be
//! applied, or healed only in part, is reported and the schedule goes on.
//!
//! The supervisor sits behind a mutex so the harness can keep using it while the schedule runs
//! (readiness, crash checks); the driver holds the lock only while it signals or starts a process,
//! never across a sleep.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::disk::DiskControl;
use crate::error::NemesisError;
use crate::fault::{
    node_list, node_name, FaultFamily, FaultKind, FaultPlan, NemesisEvent, Requirement,
};
use crate::membership::{ChangeOutcome, MemberChange, MembershipControl};
use crate::nemesis::{apply, heal, kill, resolve_leader, resume, ActiveFault};
use crate::network::{Cuts, Network};
use crate::proxy::LinkFault;
use crate::schedule::{Schedule, ScheduledFault};
use crate::supervisor::Supervisor;

#[path = "figure8.rs"]
mod figure8;
pub use figure8::LogView;

/// How often `leader-churn` asks who leads while it waits for the next leader.
const CHURN_POLL: Duration = Duration::from_millis(50);

/// How many entries a new leader commits before `stall-leader` resumes the old one: a few
/// client writes beyond its no-op (see `wait_new_leader_writes`).
const STALL_NEW_WRITES: u64 = 5;

/// How long `stall-leader` keeps the old leader paused once the new leader took those writes
/// (never past the latest resume): reads sent to the old leader meanwhile are still waiting
/// when it resumes (a client's attempt lasts 500 ms by default), and those invoked after a new
/// write completed are stale if it answers them from its own state. Resumed at once after the
/// writes, the reads queued on it were nearly all older than every new write (measured: two
/// default runs in ten whose only stall gave no stale read).
const STALL_QUEUE: Duration = Duration::from_millis(200);

/// How often `crash-restart-voter` asks the nodes where they stand: well within the window
/// between a vote and the new leader's first entry (twice the added link latency).
const VOTER_POLL: Duration = Duration::from_millis(5);

/// The system under test, as far as the nemesis needs to know it: who leads right now.
///
/// Implemented by any `Fn() -> impl Future<Output = Option<usize>>`, e.g.
/// `|| async { Some(0) }` in a test, or by the harness's handle on the system under test.
pub trait Primary {
    /// The node (0-based) the system under test names as its leader or primary right now, `None`
    /// when it names none or cannot be asked.
    fn primary(&self) -> impl Future<Output = Option<usize>> + Send;

    /// What node `node` (0-based) says of its term and leader right now, for the faults timed on
    /// an election (`crash-restart-voter`); `None` when it cannot be asked. A system that cannot
    /// say keeps this default, and those faults then only cut and slow links.
    fn view(&self, node: usize) -> impl Future<Output = Option<NodeView>> + Send {
        let _ = node;
        async { None }
    }

    /// What node `node` (0-based) says of its log right now, for `figure-8`; `None` when it
    /// cannot be asked. A system that cannot say keeps this default, and `figure-8` then does
    /// nothing.
    fn log_view(&self, node: usize) -> impl Future<Output = Option<LogView>> + Send {
        let _ = node;
        async { None }
    }
}

/// Where one node stands in the elections, in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Its term (or epoch).
    pub term: u64,
    /// It is a plain follower (neither leading nor campaigning).
    pub follower: bool,
    /// It knows a leader of its term.
    pub knows_leader: bool,
}

impl<F, Fut> Primary for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<usize>> + Send,
{
    fn primary(&self) -> impl Future<Output = Option<usize>> + Send {
        self()
    }
}

/// What the nemesis acts on.
pub struct Targets<'a, P> {
    /// The nodes' processes.
    pub supervisor: &'a Mutex<Supervisor>,
    /// The proxies of every link between nodes.
    pub network: &'a Network,
    /// Who leads, for the faults aimed at the leader.
    pub primary: &'a P,
    /// The filesystem layer under the data directories, when there is one; the `disk` faults are
    /// refused without it.
    pub disk: Option<&'a dyn DiskControl>,
    /// The system's membership API and the spare slots, when there are some; the `membership`
    /// faults are refused without it.
    pub membership: Option<&'a dyn MembershipControl>,
}

/// Refuses, naming them, the kinds in `kinds` that need what the cluster lacks (`disk`: whether a
/// [`DiskControl`] will be given; `membership`: whether a [`MembershipControl`] will). Call it
/// when the run is planned, before anything starts; [`run_schedule`] calls it again before it
/// plays anything.
pub fn check_supported(
    kinds: &[FaultKind],
    disk: bool,
    membership: bool,
) -> Result<(), NemesisError> {
    let lacks = |requirement: Requirement| match requirement {
        Requirement::Disk => !disk,
        Requirement::Membership => !membership,
    };
    let missing = kinds
        .iter()
        .filter_map(|kind| kind.requires())
        .find(|&requirement| lacks(requirement));
    let Some(requirement) = missing else {
        return Ok(());
    };
    let refused: Vec<&str> = kinds
        .iter()
        .filter(|kind| kind.requires() == Some(requirement))
        .map(|kind| kind.name())
        .collect();
    Err(NemesisError::Unsupported {
        kinds: refused.join(", "),
        reason: requirement.explain(),
    })
}

/// Something that happened while the schedule played.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The fault's index in [`Schedule::faults`].
    pub fault: usize,
    /// Its kind.
    pub kind: FaultKind,
    /// When, since the run's start instant.
    pub at: Duration,
    /// What happened.
    pub what: NoticeKind,
}

/// The kinds of [`Notice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// The fault took effect; the event goes into the history.
    Started(NemesisEvent),
    /// A step within a fault that acts over time (`leader-churn` cut off the next leader,
    /// `crash-restart-election` crashed a voter, a disk fault changed files), for logs and the
    /// report; not a history event.
    Step(String),
    /// The fault ended; the event (same `value` as the start's) goes into the history.
    Stopped(NemesisEvent),
    /// The fault could not be applied (no start or stop follows), or not fully healed (a stop
    /// follows), or a step failed.
    Failed(String),
}

impl Notice {
    /// The history event of a start or a stop.
    pub fn history_event(&self) -> Option<&NemesisEvent> {
        match &self.what {
            NoticeKind::Started(event) | NoticeKind::Stopped(event) => Some(event),
            NoticeKind::Step(_) | NoticeKind::Failed(_) => None,
        }
    }
}

/// Told of every [`Notice`] as it happens. Implemented by closures `FnMut(&Notice)` and by an
/// unbounded tokio channel sender (a closed channel drops notices).
pub trait Observer {
    /// Called from the task that plays the schedule: keep it short.
    fn notice(&mut self, notice: &Notice);
}

impl<F: FnMut(&Notice)> Observer for F {
    fn notice(&mut self, notice: &Notice) {
        self(notice)
    }
}

impl Observer for tokio::sync::mpsc::UnboundedSender<Notice> {
    fn notice(&mut self, notice: &Notice) {
        // The receiver gone means nobody listens any more; the schedule still heals what it broke.
        let _ = self.send(notice.clone());
    }
}

/// One fault as it was played.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInterval {
    /// Its index in [`Schedule::faults`].
    pub fault: usize,
    /// Its kind; `kind.name()` is its `--nemesis` name.
    pub kind: FaultKind,
    /// What it did, leader resolved: the `value` of its history events.
    pub description: String,
    /// When it took effect, since the run's start instant.
    pub start: Duration,
    /// When it was healed (or its nodes were all back), since the run's start instant.
    pub end: Duration,
    /// The nodes it acted on: killed, paused, crashed, or cut off by `leader-churn`.
    pub nodes: Vec<usize>,
    /// Its steps, in order, for faults that act over time.
    pub steps: Vec<String>,
}

/// A fault that could not be applied, healed or carried out in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultFailure {
    /// Its index in [`Schedule::faults`].
    pub fault: usize,
    /// Its kind.
    pub kind: FaultKind,
    /// Which fault, as described when it failed.
    pub description: String,
    /// What went wrong.
    pub error: String,
    /// When, since the run's start instant.
    pub at: Duration,
}

/// What [`run_schedule`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// Every fault that took effect, in order.
    pub faults: Vec<FaultInterval>,
    /// Every failure, in order (a fault may appear here and in `faults`).
    pub errors: Vec<FaultFailure>,
    /// True when the stop signal ended the schedule before its last fault was done.
    pub interrupted: bool,
}

/// Plays `schedule` against the cluster in `targets`, fault windows relative to `started` (a tokio or
/// a std instant), telling
/// `observer` of everything as it happens. Returns when the schedule is done, or early when `stop`
/// completes (healing the fault in effect first).
///
/// Fails before playing anything when the schedule holds a kind the targets cannot carry out (see
/// [`check_supported`]); once it plays, failures of single faults are reported, not returned.
pub async fn run_schedule<P, O, S>(
    schedule: &Schedule,
    started: impl Into<Instant>,
    targets: &Targets<'_, P>,
    observer: &mut O,
    stop: S,
) -> Result<ScheduleReport, NemesisError>
where
    P: Primary,
    O: Observer,
    S: Future<Output = ()>,
{
    check_supported(
        &schedule.kinds(),
        targets.disk.is_some(),
        targets.membership.is_some(),
    )?;
    let started = started.into();
    tokio::pin!(stop);
    let mut player = Player {
        targets,
        started,
        observer,
        stop,
        stopped: false,
        report: ScheduleReport::default(),
        split_learners: None,
    };
    for (index, fault) in schedule.faults.iter().enumerate() {
        if !player.sleep_until(started + fault.start()).await {
            break;
        }
        player.play(index, fault).await;
        if player.stopped {
            break;
        }
    }
    let mut report = player.report;
    report.interrupted = player.stopped;
    Ok(report)
}

/// The error of a disk fault played without a [`DiskControl`].
fn no_disk(kind: FaultKind) -> NemesisError {
    NemesisError::Unsupported {
        kinds: kind.name().to_owned(),
        reason: Requirement::Disk.explain(),
    }
}

/// What a membership change's outcome adds to a fault's description: nothing when applied.
fn outcome_note(outcome: &ChangeOutcome) -> String {
    match outcome {
        ChangeOutcome::Applied => String::new(),
        ChangeOutcome::Refused(why) => format!(" (refused: {why})"),
        ChangeOutcome::GaveUp(why) => format!(" (not applied: {why})"),
    }
}

/// A membership change's outcome as a step.
fn outcome_step(what: String, outcome: &ChangeOutcome) -> String {
    format!("{what}: {outcome}")
}

/// The state of one [`run_schedule`].
struct Player<'t, 'a, P, O, S> {
    targets: &'t Targets<'a, P>,
    /// The instant every offset is measured from.
    started: Instant,
    observer: &'t mut O,
    /// The caller's stop signal, polled only until it fires once.
    stop: Pin<&'t mut S>,
    /// Whether it has fired.
    stopped: bool,
    report: ScheduleReport,
    /// The two spare slots `promote-split` started, once it did: later ones add them back.
    split_learners: Option<[usize; 2]>,
}

/// What a `disk` fault asks of the [`DiskControl`].
#[derive(Clone, Copy, Debug)]
enum DiskAction {
    LoseUnsynced,
    Tear(u64),
    Corrupt(u64),
}

/// One process action of `crash-restart-election`'s timeline.
#[derive(Clone, Copy, Debug)]
enum Crash {
    Kill { node: usize, down_ms: u64 },
    Start { node: usize },
}

impl<P: Primary, O: Observer, S: Future<Output = ()>> Player<'_, '_, P, O, S> {
    /// Sleeps until `deadline`; false (at once) when the stop signal fired, before or meanwhile.
    async fn sleep_until(&mut self, deadline: Instant) -> bool {
        if self.stopped {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => true,
            _ = self.stop.as_mut() => {
                self.stopped = true;
                false
            }
        }
    }

    /// For `stall-leader`: waits until a node outside `stalled` leads and has committed
    /// [`STALL_NEW_WRITES`] entries more than any of them had when asked first, or until
    /// `latest`. Clients may still be waiting on the stalled leader (an attempt can last as
    /// long as the stall), and a read the old leader answers is stale only after the new
    /// leader took writes. Returns that leader and its term; `None` when none did in time, or
    /// at once when the system cannot say where its log stands.
    async fn wait_new_leader_writes(
        &mut self,
        stalled: &[usize],
        latest: Instant,
    ) -> Option<(usize, u64)> {
        let others: Vec<usize> = (0..self.nodes()).filter(|n| !stalled.contains(n)).collect();
        let first = self.f8_views(&others).await;
        let base = first.iter().flatten().map(|v| v.commit_index).max()?;
        self.f8_wait(latest, &others, |views| {
            views.iter().enumerate().find_map(|(n, v)| {
                v.filter(|v| v.leader && v.commit_index >= base + STALL_NEW_WRITES)
                    .map(|v| (n, v.term))
            })
        })
        .await
    }

    /// Asks the system under test who leads; `None` at once when the stop signal fires first.
    async fn ask_primary(&mut self) -> Option<usize> {
        if self.stopped {
            return None;
        }
        tokio::select! {
            primary = self.targets.primary.primary() => primary,
            _ = self.stop.as_mut() => {
                self.stopped = true;
                None
            }
        }
    }

    fn nodes(&self) -> usize {
        self.targets.network.len()
    }

    /// How many voters the cluster is meant to have: its initial nodes (the network also has
    /// the spare slots).
    fn voters(&self) -> usize {
        self.targets
            .membership
            .map_or(self.nodes(), |m| m.initial_nodes())
    }

    fn notice(&mut self, fault: usize, kind: FaultKind, what: NoticeKind) {
        let notice = Notice {
            fault,
            kind,
            at: self.started.elapsed(),
            what,
        };
        self.observer.notice(&notice);
    }

    fn fail(&mut self, fault: usize, kind: FaultKind, description: &str, error: &NemesisError) {
        tracing::warn!(fault = description, %error, "nemesis fault failed");
        self.report.errors.push(FaultFailure {
            fault,
            kind,
            description: description.to_owned(),
            error: error.to_string(),
            at: self.started.elapsed(),
        });
        self.notice(fault, kind, NoticeKind::Failed(error.to_string()));
    }

    /// Records that a fault took effect and returns its interval, to be closed by [`Self::close`].
    fn open(
        &mut self,
        fault: usize,
        kind: FaultKind,
        description: String,
        nodes: Vec<usize>,
    ) -> FaultInterval {
        let event = NemesisEvent {
            f: format!("start-{}", kind.family().name()),
            value: description.clone(),
        };
        self.notice(fault, kind, NoticeKind::Started(event));
        FaultInterval {
            fault,
            kind,
            description,
            start: self.started.elapsed(),
            end: Duration::ZERO,
            nodes,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, interval: &mut FaultInterval, step: String) {
        tracing::info!(fault = %interval.description, step, "nemesis step");
        interval.steps.push(step.clone());
        self.notice(interval.fault, interval.kind, NoticeKind::Step(step));
    }

    fn close(&mut self, mut interval: FaultInterval) {
        let event = NemesisEvent {
            f: format!("stop-{}", interval.kind.family().name()),
            value: interval.description.clone(),
        };
        self.notice(interval.fault, interval.kind, NoticeKind::Stopped(event));
        interval.end = self.started.elapsed();
        self.report.faults.push(interval);
    }

    async fn play(&mut self, index: usize, fault: &ScheduledFault) {
        let remapped;
        let plan = match self.targets.membership {
            Some(m) if fault.plan.kind().family() != FaultFamily::Membership => {
                remapped = fault.plan.remap(|n| m.stand_in(n));
                &remapped
            }
            _ => &fault.plan,
        };
        let end = self.started + fault.end();
        let leader = if plan.kind().targets_leader() {
            self.ask_primary().await
        } else {
            None
        };
        if self.stopped {
            return;
        }
        match plan {
            FaultPlan::CrashRestartElection { .. } => {
                self.crash_election(index, plan, leader, end).await
            }
            FaultPlan::CrashRestartVoter { delay_ms, .. } => {
                self.crash_voter(index, plan, leader, *delay_ms, end).await
            }
            FaultPlan::Figure8 { .. } => self.figure8(index, plan, leader, end).await,
            FaultPlan::LoseUnsynced { node } => {
                self.disk_fault(index, plan, *node, DiskAction::LoseUnsynced)
                    .await
            }
            FaultPlan::PowerCut => self.power_cut(index, plan, None).await,
            FaultPlan::TornWrite { node, seed } => {
                self.disk_fault(index, plan, *node, DiskAction::Tear(*seed))
                    .await
            }
            FaultPlan::Corrupt { node, seed } => {
                self.disk_fault(index, plan, *node, DiskAction::Corrupt(*seed))
                    .await
            }
            FaultPlan::CorruptAll { seed } => self.power_cut(index, plan, Some(*seed)).await,
            FaultPlan::RemoveVoter { .. }
            | FaultPlan::RemoveLeader { .. }
            | FaultPlan::AddLearner
            | FaultPlan::ReplaceNode { .. }
            | FaultPlan::PromoteSplit { .. } => {
                self.membership_fault(index, plan, leader, end).await
            }
            _ => self.one_step(index, plan, leader, end).await,
        }
    }

    /// The faults [`apply`] and [`heal`] carry out, healed at the end of the window, after the
    /// downtime (crash-restart), or after the churn (leader-churn).
    async fn one_step(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        leader: Option<usize>,
        end: Instant,
    ) {
        let applied = {
            let mut supervisor = self.targets.supervisor.lock().await;
            apply(plan, &mut supervisor, self.targets.network, leader).await
        };
        let active = match applied {
            Ok(active) => active,
            Err(e) => return self.fail(index, plan.kind(), &plan.describe(), &e),
        };
        let mut interval = self.open(
            index,
            plan.kind(),
            active.description.clone(),
            active.nodes.clone(),
        );
        if plan.kind().kills() {
            self.crash_disks(&mut interval, &active.nodes);
        }
        match plan {
            FaultPlan::CrashRestartOne { down_ms, .. }
            | FaultPlan::CrashRestartLeader { down_ms, .. } => {
                if !active.nodes.is_empty() {
                    let back = Instant::now() + Duration::from_millis(*down_ms);
                    self.sleep_until(back.min(end)).await;
                }
            }
            FaultPlan::StallLeader { cut_off_ms, .. } => {
                // Resume it still cut off, at most half-way through the window.
                let window = end.saturating_duration_since(Instant::now());
                let cut_off = Duration::from_millis(*cut_off_ms).min(window / 2);
                if self
                    .sleep_until(end.checked_sub(cut_off).unwrap_or(end))
                    .await
                    && !active.nodes.is_empty()
                {
                    let latest = end.checked_sub(cut_off / 2).unwrap_or(end);
                    let new_leader = self.wait_new_leader_writes(&active.nodes, latest).await;
                    if new_leader.is_some() {
                        self.sleep_until((Instant::now() + STALL_QUEUE).min(latest))
                            .await;
                    }
                    let cut_off = end.saturating_duration_since(Instant::now());
                    let mut failed = None;
                    {
                        let mut supervisor = self.targets.supervisor.lock().await;
                        resume(&mut supervisor, &active.nodes, &mut failed);
                    }
                    match failed {
                        None => {
                            let after = match new_leader {
                                Some((n, term)) => format!(
                                    " up to {} ms after {} (term {term}) had committed {STALL_NEW_WRITES} more entries",
                                    STALL_QUEUE.as_millis(),
                                    node_name(n)
                                ),
                                None => String::new(),
                            };
                            let step = format!(
                                "resumed {}{after}, still cut off for {} ms",
                                node_list(&active.nodes),
                                cut_off.as_millis()
                            );
                            self.step(&mut interval, step);
                        }
                        Some(e) => self.fail(index, plan.kind(), &active.description, &e),
                    }
                    self.sleep_until(end).await;
                }
            }
            FaultPlan::LeaderChurn { dwell_ms, .. } => {
                if let Some(&first) = active.nodes.first() {
                    self.churn(&mut interval, first, Duration::from_millis(*dwell_ms), end)
                        .await;
                }
            }
            _ => {
                self.sleep_until(end).await;
            }
        }
        self.heal_and_close(interval, &active).await;
    }

    async fn heal_and_close(&mut self, interval: FaultInterval, active: &ActiveFault) {
        let healed = {
            let mut supervisor = self.targets.supervisor.lock().await;
            heal(active, &mut supervisor, self.targets.network).await
        };
        if let Err(e) = healed {
            self.fail(interval.fault, interval.kind, &interval.description, &e);
        }
        self.close(interval);
    }

    /// `leader-churn` after its first cut: waits for the next leader among the nodes still
    /// connected, lets it lead for `dwell`, cuts it off too (the longest cut off rejoins when a
    /// minority is already cut off, so a majority can always elect), and so on until `end`.
    async fn churn(
        &mut self,
        interval: &mut FaultInterval,
        first: usize,
        dwell: Duration,
        end: Instant,
    ) {
        let nodes = self.nodes();
        let most_cut_off = (self.voters().saturating_sub(1) / 2).max(1);
        let mut isolated = vec![first];
        let mut candidate: Option<usize> = None;
        loop {
            let wait = if candidate.is_some() {
                dwell
            } else {
                CHURN_POLL
            };
            if !self.sleep_until((Instant::now() + wait).min(end)).await || Instant::now() >= end {
                return;
            }
            let primary = self
                .ask_primary()
                .await
                .filter(|p| *p < nodes && !isolated.contains(p));
            // A leader is cut off only once it has led for `dwell`: the first sighting starts
            // the dwell, the next look cuts it off if it still leads.
            let Some(next) = primary else {
                candidate = None;
                continue;
            };
            if candidate != Some(next) {
                candidate = Some(next);
                continue;
            }
            candidate = None;
            isolated.push(next);
            let rejoined = (isolated.len() > most_cut_off).then(|| isolated.remove(0));
            self.targets
                .network
                .apply_cuts(&Cuts::isolate_each(nodes, &isolated));
            interval.nodes.push(next);
            let step = match rejoined {
                Some(back) => format!(
                    "cut off leader {}, {} rejoins",
                    node_name(next),
                    node_name(back)
                ),
                None => format!("cut off leader {}", node_name(next)),
            };
            self.step(interval, step);
        }
    }

    /// `crash-restart-election`: crashes the leader, then the planned voters one after the other
    /// while the others elect; every crashed node is started again after its downtime, also when
    /// the window ends or the stop signal fires (then at once).
    async fn crash_election(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        leader: Option<usize>,
        end: Instant,
    ) {
        let FaultPlan::CrashRestartElection {
            down_ms,
            voters,
            crashes,
            ..
        } = plan
        else {
            return;
        };
        let kind = plan.kind();
        let nodes = self.nodes();
        let (target, description) = resolve_leader(plan, nodes, leader);
        let Some(mut interval) = self.kill_and_open(index, kind, target, description).await else {
            return;
        };
        self.crash_disks(&mut interval, &[target]);
        let crashed_at = Instant::now();

        // The timeline: the leader back after its downtime, each voter crash and its restart.
        let voters: Vec<usize> = voters
            .iter()
            .copied()
            .filter(|&v| v != target && v < nodes)
            .collect();
        let mut timeline = vec![(*down_ms, Crash::Start { node: target })];
        for (k, crash) in crashes.iter().enumerate() {
            let Some(&node) = voters.get(k % voters.len().max(1)) else {
                break;
            };
            timeline.push((
                crash.after_ms,
                Crash::Kill {
                    node,
                    down_ms: crash.down_ms,
                },
            ));
            timeline.push((crash.after_ms + crash.down_ms, Crash::Start { node }));
        }
        timeline.sort_by_key(|(at, _)| *at);

        let mut down = vec![target];
        for (at_ms, action) in timeline {
            let on_time = self
                .sleep_until(crashed_at + Duration::from_millis(at_ms))
                .await;
            match action {
                // No new crash once the window is over or the schedule is stopping.
                Crash::Kill { node, down_ms } if on_time && Instant::now() < end => {
                    if self.kill_within(&mut interval, node).await {
                        down.push(node);
                        let step = format!(
                            "crash-restart voter {} at +{at_ms} ms (down {down_ms} ms)",
                            node_name(node)
                        );
                        self.step(&mut interval, step);
                        self.crash_disks(&mut interval, &[node]);
                    }
                }
                Crash::Kill { .. } => {}
                Crash::Start { node } => {
                    if let Some(pos) = down.iter().position(|&n| n == node) {
                        down.remove(pos);
                        self.start(index, kind, &interval.description, node).await;
                    }
                }
            }
        }
        self.close(interval);
    }

    /// `crash-restart-voter`: cuts the old leader off and slows every other link, watches the
    /// others, and crash-restarts each one the moment it follows a higher term without knowing
    /// its leader (it has just voted, and the new leader's first entry is still on the slow
    /// link); then lets the old leader reach the restarted nodes, and only them. A correct node
    /// remembers its vote and refuses the old leader; one that forgot it elects a second leader
    /// of the same term. Everything heals at the end.
    async fn crash_voter(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        leader: Option<usize>,
        delay_ms: u64,
        end: Instant,
    ) {
        let kind = plan.kind();
        let nodes = self.nodes();
        let (old, description) = resolve_leader(plan, nodes, leader);
        let others: Vec<usize> = (0..nodes).filter(|&n| n != old).collect();
        let mut term_before = 0;
        for &node in &others {
            if let Some(view) = self.targets.primary.view(node).await {
                term_before = term_before.max(view.term);
            }
        }
        let slow = LinkFault::Delay {
            latency: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
        };
        let network = self.targets.network;
        let links: Vec<(usize, usize)> = network.links().map(|(f, t, _)| (f, t)).collect();
        for &(from, to) in &links {
            let fault = if from == old || to == old {
                LinkFault::Blackhole
            } else {
                slow
            };
            if let Err(e) = network.set_link(from, to, fault) {
                network.heal_all();
                return self.fail(index, kind, &description, &e);
            }
        }
        let mut interval = self.open(index, kind, description, vec![old]);
        let mut crashed: Vec<usize> = Vec::new();
        while self
            .sleep_until((Instant::now() + VOTER_POLL).min(end))
            .await
            && Instant::now() < end
        {
            for &node in &others {
                if crashed.contains(&node) {
                    continue;
                }
                let voted = match self.targets.primary.view(node).await {
                    Some(view) => view.term > term_before && view.follower && !view.knows_leader,
                    None => false,
                };
                if !voted || Instant::now() >= end {
                    continue;
                }
                if !self.kill_within(&mut interval, node).await {
                    continue;
                }
                crashed.push(node);
                self.crash_disks(&mut interval, &[node]);
                self.start(index, kind, &interval.description.clone(), node)
                    .await;
                // The old leader may now reach the restarted voters, and only them.
                let back = [(old, node), (node, old)];
                if let Err(e) = network.set_links(&back, LinkFault::Heal) {
                    self.fail(index, kind, &interval.description.clone(), &e);
                }
                let step = format!(
                    "crash-restart voter {} (voted in a term above {term_before}, no leader \
                     heard yet); {} reconnected to it",
                    node_name(node),
                    node_name(old)
                );
                self.step(&mut interval, step);
            }
        }
        // Nodes crashed here are running again (started at once); links heal now.
        network.heal_all();
        self.close(interval);
    }

    /// The `membership` family, through the [`MembershipControl`]: each fault makes its first
    /// change before it opens (its description says when the system refused it), and undoes it
    /// at the end of its window, or at once on the stop signal (`replace-node` is not undone).
    async fn membership_fault(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        leader: Option<usize>,
        end: Instant,
    ) {
        let kind = plan.kind();
        let Some(m) = self.targets.membership else {
            let error = NemesisError::Unsupported {
                kinds: kind.name().to_owned(),
                reason: Requirement::Membership.explain(),
            };
            return self.fail(index, kind, &plan.describe(), &error);
        };
        match plan {
            FaultPlan::RemoveVoter { node } => {
                let slot = m.stand_in(*node);
                let what = format!("remove voter {}", node_name(slot));
                self.remove_and_add_back(m, index, kind, slot, what, end)
                    .await
            }
            FaultPlan::RemoveLeader { fallback } => {
                let (slot, who) = self.leader_slot(m, leader, *fallback);
                let what = format!("remove leader {who}");
                self.remove_and_add_back(m, index, kind, slot, what, end)
                    .await
            }
            FaultPlan::AddLearner => self.add_learner(m, index, kind, end).await,
            FaultPlan::ReplaceNode { node } => self.replace(m, index, kind, *node, end).await,
            FaultPlan::PromoteSplit { fallback } => {
                let (slot, who) = self.leader_slot(m, leader, *fallback);
                self.promote_split(m, index, kind, slot, who, end).await
            }
            _ => {}
        }
    }

    /// The slot a membership fault aimed at the leader hits, and how to name it: the leader,
    /// else the node standing for the plan's fallback.
    fn leader_slot(
        &self,
        m: &dyn MembershipControl,
        leader: Option<usize>,
        fallback: usize,
    ) -> (usize, String) {
        match leader.filter(|&l| l < self.nodes()) {
            Some(l) => (l, node_name(l)),
            None => {
                let slot = m.stand_in(fallback);
                (
                    slot,
                    format!("{} (leader unknown, fallback)", node_name(slot)),
                )
            }
        }
    }

    /// Opens and at once closes a fault that did nothing, saying why in its description.
    fn nothing_done(&mut self, index: usize, kind: FaultKind, description: String) {
        let interval = self.open(index, kind, description, Vec::new());
        self.close(interval);
    }

    /// `remove-voter` and `remove-leader`: remove `slot`, and at the end add it back as a
    /// learner (same id, its own data) and promote it.
    async fn remove_and_add_back(
        &mut self,
        m: &dyn MembershipControl,
        index: usize,
        kind: FaultKind,
        slot: usize,
        what: String,
        end: Instant,
    ) {
        let removed = m.change(MemberChange::Remove(slot)).await;
        if !removed.applied() {
            return self.nothing_done(index, kind, format!("{what}{}", outcome_note(&removed)));
        }
        let description = format!("{what}, add it back as a learner and promote it at the end");
        let mut interval = self.open(index, kind, description, vec![slot]);
        self.step(&mut interval, format!("removed {}", node_name(slot)));
        self.sleep_until(end).await;
        self.add_back(m, &mut interval, slot).await;
        self.close(interval);
    }

    /// Adds `slot` as a learner and promotes it, one step each.
    async fn add_back(
        &mut self,
        m: &dyn MembershipControl,
        interval: &mut FaultInterval,
        slot: usize,
    ) {
        let added = m.change(MemberChange::AddLearner(slot)).await;
        let step = outcome_step(format!("add {} back as a learner", node_name(slot)), &added);
        self.step(interval, step);
        if added.applied() {
            let promoted = m.change(MemberChange::Promote(slot)).await;
            let step = outcome_step(format!("promote {}", node_name(slot)), &promoted);
            self.step(interval, step);
        }
    }

    /// `add-learner`: start a spare that joins as a learner; promote it at the end.
    async fn add_learner(
        &mut self,
        m: &dyn MembershipControl,
        index: usize,
        kind: FaultKind,
        end: Instant,
    ) {
        let Some(slot) = m.take_spare() else {
            let description = "add a learner (no spare slot left: nothing done)".to_owned();
            return self.nothing_done(index, kind, description);
        };
        let description = format!(
            "add learner {} on a spare slot, promote it at the end",
            node_name(slot)
        );
        if let Err(source) = m.start_joining(slot, true).await {
            let error = NemesisError::Membership { node: slot, source };
            return self.fail(index, kind, &description, &error);
        }
        let mut interval = self.open(index, kind, description, vec![slot]);
        let step = if m.wait_member(slot, false).await {
            format!("{} joined as a learner", node_name(slot))
        } else {
            format!("{} is not a learner yet", node_name(slot))
        };
        self.step(&mut interval, step);
        self.sleep_until(end).await;
        let promoted = m.change(MemberChange::Promote(slot)).await;
        let step = outcome_step(format!("promote {}", node_name(slot)), &promoted);
        self.step(&mut interval, step);
        self.close(interval);
    }

    /// `replace-node`: remove the node standing for `node`, stop it for good, and start a spare
    /// (new id, empty data) that joins and promotes itself; it stands for `node` from then on.
    async fn replace(
        &mut self,
        m: &dyn MembershipControl,
        index: usize,
        kind: FaultKind,
        node: usize,
        end: Instant,
    ) {
        let old = m.stand_in(node);
        let Some(new) = m.take_spare() else {
            let description = format!(
                "replace {} (no spare slot left: nothing done)",
                node_name(old)
            );
            return self.nothing_done(index, kind, description);
        };
        let what = format!(
            "replace {} by {} (new id, empty data dir)",
            node_name(old),
            node_name(new)
        );
        let removed = m.change(MemberChange::Remove(old)).await;
        if !removed.applied() {
            return self.nothing_done(index, kind, format!("{what}{}", outcome_note(&removed)));
        }
        let mut interval = self.open(index, kind, what.clone(), vec![old, new]);
        self.step(&mut interval, format!("removed {}", node_name(old)));
        match m.retire(old).await {
            Ok(()) => self.step(
                &mut interval,
                format!("stopped {} for good", node_name(old)),
            ),
            Err(source) => {
                let error = NemesisError::Membership { node: old, source };
                self.fail(index, kind, &what, &error);
            }
        }
        if let Err(source) = m.start_joining(new, false).await {
            let error = NemesisError::Membership { node: new, source };
            self.fail(index, kind, &what, &error);
            return self.close(interval);
        }
        m.set_stand_in(node, new);
        let mut voter = m.wait_member(new, true).await;
        if !voter && self.sleep_until(end).await {
            voter = m.wait_member(new, true).await;
        }
        let step = if voter {
            format!("{} joined and is a voter", node_name(new))
        } else {
            format!("{} is not a voter yet", node_name(new))
        };
        self.step(&mut interval, step);
        self.sleep_until(end).await;
        self.close(interval);
    }

    /// The two learners of `promote-split`, members and caught up: started on two spare slots
    /// the first time, added back (same ids, their own data) after that. `Err` says why not.
    async fn ready_split_learners(
        &mut self,
        m: &dyn MembershipControl,
    ) -> Result<[usize; 2], String> {
        let learners = match self.split_learners {
            Some(pair) => {
                for slot in pair {
                    let added = m.change(MemberChange::AddLearner(slot)).await;
                    if !added.applied() {
                        return Err(format!(
                            "add {} back as a learner: {added}",
                            node_name(slot)
                        ));
                    }
                }
                pair
            }
            None => {
                let (Some(a), Some(b)) = (m.take_spare(), m.take_spare()) else {
                    return Err("fewer than two spare slots left".into());
                };
                self.split_learners = Some([a, b]);
                for slot in [a, b] {
                    if let Err(e) = m.start_joining(slot, true).await {
                        return Err(format!("cannot start {}: {e}", node_name(slot)));
                    }
                }
                for slot in [a, b] {
                    if !m.wait_member(slot, false).await {
                        return Err(format!("{} did not join as a learner", node_name(slot)));
                    }
                }
                [a, b]
            }
        };
        for slot in learners {
            if !m.wait_caught_up(slot).await {
                return Err(format!("{} did not catch up", node_name(slot)));
            }
        }
        Ok(learners)
    }

    /// `promote-split`: the leader and two caught-up learners are cut off from every other
    /// node, and both learners are promoted at once, the moment the cut is made (while the
    /// voters on the other side still count as recently heard from, so the first promotion is
    /// not refused for want of an active majority). At the end the links heal and both
    /// learners are removed, so the cluster has its voters of before.
    async fn promote_split(
        &mut self,
        m: &dyn MembershipControl,
        index: usize,
        kind: FaultKind,
        leader: usize,
        who: String,
        end: Instant,
    ) {
        let [a, b] = match self.ready_split_learners(m).await {
            Ok(pair) => pair,
            Err(why) => {
                let description = format!("promote split from leader {who} ({why}: nothing done)");
                return self.nothing_done(index, kind, description);
            }
        };
        let nodes = self.nodes();
        let side = [leader, a, b];
        let rest: Vec<usize> = (0..nodes).filter(|n| !side.contains(n)).collect();
        let description = format!(
            "promote split: {} | {}, learners {} and {} promoted at once",
            node_list(&side),
            node_list(&rest),
            node_name(a),
            node_name(b)
        );
        self.targets
            .network
            .apply_cuts(&Cuts::between(nodes, &side, &rest));
        let mut interval = self.open(index, kind, description, side.to_vec());
        let promotions = async {
            tokio::join!(
                m.change(MemberChange::Promote(a)),
                m.change(MemberChange::Promote(b))
            )
        };
        let outcomes = if self.stopped {
            None
        } else {
            tokio::select! {
                done = tokio::time::timeout_at(end, promotions) => done.ok(),
                _ = self.stop.as_mut() => {
                    self.stopped = true;
                    None
                }
            }
        };
        let step = match outcomes {
            Some((first, second)) => format!(
                "promote {}: {first}; promote {}: {second}",
                node_name(a),
                node_name(b)
            ),
            None => format!(
                "promotions of {} and {} still pending at the end of the window",
                node_name(a),
                node_name(b)
            ),
        };
        self.step(&mut interval, step);
        self.sleep_until(end).await;
        self.targets.network.heal_all();
        for slot in [a, b] {
            let removed = m.change(MemberChange::Remove(slot)).await;
            let step = outcome_step(format!("remove {}", node_name(slot)), &removed);
            self.step(&mut interval, step);
        }
        self.close(interval);
    }

    /// Kills `node` while `interval`'s fault is in effect; true when it was running and is now
    /// down (it is then listed among the fault's nodes). A failure is reported.
    async fn kill_within(&mut self, interval: &mut FaultInterval, node: usize) -> bool {
        let killed = {
            let mut supervisor = self.targets.supervisor.lock().await;
            kill(&mut supervisor, &[node]).await
        };
        match killed {
            Ok(hit) if !hit.is_empty() => {
                interval.nodes.push(node);
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.fail(interval.fault, interval.kind, &interval.description, &e);
                false
            }
        }
    }

    /// Kills `node` for fault `index` and opens its interval. `None` when there is nothing more to
    /// do: the kill failed (reported), or the node was not running (the fault is recorded as
    /// having done nothing).
    async fn kill_and_open(
        &mut self,
        index: usize,
        kind: FaultKind,
        node: usize,
        mut description: String,
    ) -> Option<FaultInterval> {
        let killed = {
            let mut supervisor = self.targets.supervisor.lock().await;
            kill(&mut supervisor, &[node]).await
        };
        match killed {
            Ok(killed) if !killed.is_empty() => Some(self.open(index, kind, description, killed)),
            Ok(_) => {
                description.push_str(" (not running: nothing done)");
                let interval = self.open(index, kind, description, Vec::new());
                self.close(interval);
                None
            }
            Err(e) => {
                self.fail(index, kind, &description, &e);
                None
            }
        }
    }

    /// Starts `node` again, reporting a failure (a node that is already running is fine).
    async fn start(&mut self, index: usize, kind: FaultKind, description: &str, node: usize) {
        let started = self.targets.supervisor.lock().await.start(node).await;
        match started {
            Ok(_) | Err(NemesisError::AlreadyRunning { .. }) => {}
            Err(e) => self.fail(index, kind, description, &e),
        }
    }

    /// With a filesystem layer under the nodes, a kill is the crash of a machine, not only of a
    /// process: the killed nodes lose every write they had not fsynced, as Jepsen's `--lazyfs`
    /// makes its kill nemesis do. Without one, a kill leaves the page cache as it was.
    fn crash_disks(&mut self, interval: &mut FaultInterval, killed: &[usize]) {
        if let Some(disk) = self.targets.disk {
            self.lose_unsynced_of(disk, interval, killed);
        }
    }

    /// Drops the unsynced writes of every node of `killed`, one step each.
    fn lose_unsynced_of(
        &mut self,
        disk: &dyn DiskControl,
        interval: &mut FaultInterval,
        killed: &[usize],
    ) {
        for &node in killed {
            let effect = disk.lose_unsynced(node);
            self.disk_step(interval, node, effect, true);
        }
    }

    /// `power-cut`: kill every node at once, drop every node's unsynced writes, start them all.
    /// `corrupt-all` (`corrupt` is its seed) also flips bits in one data file of each node
    /// before the start (each node its own seed, [`crate::fault::corrupt_all_seed`]); a node
    /// that refuses its damaged data is left to the harness to repair.
    async fn power_cut(&mut self, index: usize, plan: &FaultPlan, corrupt: Option<u64>) {
        let kind = plan.kind();
        let description = plan.describe();
        let Some(disk) = self.targets.disk else {
            return self.fail(index, kind, &description, &no_disk(kind));
        };
        let all: Vec<usize> = (0..self.nodes()).collect();
        let killed = {
            let mut supervisor = self.targets.supervisor.lock().await;
            kill(&mut supervisor, &all).await
        };
        let killed = match killed {
            Ok(killed) => killed,
            Err(e) => return self.fail(index, kind, &description, &e),
        };
        let mut interval = self.open(index, kind, description, killed.clone());
        self.lose_unsynced_of(disk, &mut interval, &killed);
        if let Some(seed) = corrupt {
            for &node in &killed {
                let damage = disk.corrupt(node, crate::fault::corrupt_all_seed(seed, node));
                self.disk_step(&mut interval, node, damage, true);
            }
        }
        for &node in &killed {
            self.start(index, kind, &interval.description, node).await;
        }
        self.close(interval);
    }

    /// The `disk` family: kill the node, let the filesystem layer act on its files, start it.
    async fn disk_fault(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        node: usize,
        action: DiskAction,
    ) {
        let kind = plan.kind();
        let description = plan.describe();
        let Some(disk) = self.targets.disk else {
            // `run_schedule` refused the schedule up front; kept for a direct call.
            return self.fail(index, kind, &description, &no_disk(kind));
        };
        let Some(mut interval) = self.kill_and_open(index, kind, node, description).await else {
            return;
        };
        let effect = match action {
            DiskAction::LoseUnsynced => disk.lose_unsynced(node),
            DiskAction::Tear(seed) => disk.tear_last_write(node, seed),
            DiskAction::Corrupt(seed) => disk.corrupt(node, seed),
        };
        self.disk_step(&mut interval, node, effect, false);
        self.start(index, kind, &interval.description, node).await;
        self.close(interval);
    }

    /// Records what the filesystem layer did to `node`'s files as a step (named after the node
    /// when the fault hits several), or its failure.
    fn disk_step(
        &mut self,
        interval: &mut FaultInterval,
        node: usize,
        effect: Result<crate::disk::DiskEffect, crate::disk::DiskError>,
        name_node: bool,
    ) {
        match effect {
            Ok(effect) if name_node => {
                self.step(interval, format!("{}: {}", node_name(node), effect.detail))
            }
            Ok(effect) => self.step(interval, effect.detail),
            Err(source) => {
                let error = NemesisError::Disk {
                    node,
                    fault: interval.kind.name(),
                    source,
                };
                self.fail(interval.fault, interval.kind, &interval.description, &error);
            }
        }
    }
}
