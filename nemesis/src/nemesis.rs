//! Applying one planned fault to a running cluster, and healing it again: the steps
//! [`crate::run_schedule`] is made of, for the faults that are one step each way.
//!
//! [`apply`] puts a plan into effect with the leader already resolved and returns an
//! [`ActiveFault`] whose start event goes into the history; [`heal`] ends it and returns the stop
//! event. A harness plays whole schedules with [`crate::run_schedule`], which also times the
//! faults, resolves the leader and carries out the faults that act over time.
//!
//! | family      | start                                      | end (heal)                         |
//! |-------------|--------------------------------------------|------------------------------------|
//! | `partition` | black-hole the cut links, heal the others  | heal every link                    |
//! | `link`      | delay / throttle the chosen links          | heal every link                    |
//! | `kill`      | `SIGKILL` the nodes, wait until reaped     | start the killed nodes again       |
//! | `pause`     | `SIGSTOP` the nodes (and cut off a stalled leader) | `SIGCONT` them (heal every link) |
//! | `crash`     | `SIGKILL` the node, wait until reaped      | start it again (after its downtime)|
//! | `churn`     | isolate the leader (the first step)        | heal every link                    |
//!
//! `crash-restart-election`, the `disk` and the `membership` families take more than one step (voters crashed during
//! the election; the filesystem layer acting while the node is down): only
//! [`crate::run_schedule`] plays them, and [`apply`] refuses them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::NemesisError;
use crate::fault::{FaultFamily, FaultPlan, LeaderTarget, NemesisEvent};
use crate::network::{Cuts, Network};
use crate::proxy::LinkFault;
use crate::supervisor::Supervisor;

/// What [`heal`] must undo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "undo")]
pub enum Undo {
    /// Heal every link of the network.
    HealLinks,
    /// Start these (killed) nodes again.
    Restart { nodes: Vec<usize> },
    /// Resume these (paused) nodes.
    Resume { nodes: Vec<usize> },
    /// Resume these nodes (if still paused) and heal every link (`stall-leader`).
    ResumeAndHeal { nodes: Vec<usize> },
}

/// A fault that is in effect, with what it takes to end it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// The plan it came from.
    pub plan: FaultPlan,
    /// What it actually did, leader resolved, e.g. `kill leader n2`.
    pub description: String,
    /// The links it cut (empty for non-partition faults), for logs.
    pub cut_links: Vec<(usize, usize)>,
    /// The nodes it acted on (killed, paused or isolated by `leader-churn`; empty for the other
    /// network faults).
    pub nodes: Vec<usize>,
    /// What `heal` will do.
    pub undo: Undo,
}

impl ActiveFault {
    /// The fault's family, the stem of its history events.
    pub fn family(&self) -> FaultFamily {
        self.plan.kind().family()
    }

    /// The history event of its start, e.g. `f = "start-partition"`.
    pub fn start_event(&self) -> NemesisEvent {
        NemesisEvent {
            f: format!("start-{}", self.family().name()),
            value: self.description.clone(),
        }
    }

    /// The history event of its end, e.g. `f = "stop-partition"`, same `value` as the start.
    pub fn stop_event(&self) -> NemesisEvent {
        NemesisEvent {
            f: format!("stop-{}", self.family().name()),
            value: self.description.clone(),
        }
    }
}

/// The network topology a partition plan stands for, with `target` the resolved node for
/// isolate-leader. `None` for plans that are not partitions.
pub fn cuts_of(
    plan: &FaultPlan,
    nodes: usize,
    target: usize,
) -> Result<Option<Cuts>, NemesisError> {
    Ok(Some(match plan {
        FaultPlan::PartitionHalves { left, right } => Cuts::between(nodes, left, right),
        FaultPlan::IsolateOne { node } => Cuts::isolate(nodes, *node),
        FaultPlan::IsolateLeader { .. }
        | FaultPlan::LeaderChurn { .. }
        | FaultPlan::StallLeader { .. } => Cuts::isolate(nodes, target),
        FaultPlan::DeafenLeader { .. } => Cuts::deafen(nodes, target),
        FaultPlan::MajoritiesRing { ring } => Cuts::majorities_ring(ring)?,
        FaultPlan::Bridge {
            left,
            bridge,
            right,
        } => Cuts::bridge(nodes, left, *bridge, right),
        _ => return Ok(None),
    }))
}

/// The node a leader fault hits and its description: `leader` when the system under test named one
/// in range, else the plan's seeded fallback. For other plans, node 0 and the plain description.
pub(crate) fn resolve_leader(
    plan: &FaultPlan,
    nodes: usize,
    leader: Option<usize>,
) -> (usize, String) {
    match (plan.leader_fallback(), leader.filter(|&l| l < nodes)) {
        (Some(_), Some(known)) => (known, plan.describe_resolved(LeaderTarget::Known(known))),
        (Some(fallback), None) => (
            fallback,
            plan.describe_resolved(LeaderTarget::Fallback(fallback)),
        ),
        (None, _) => (0, plan.describe_resolved(LeaderTarget::Unresolved)),
    }
}

/// Puts `plan` into effect. `leader` is the node the caller believes leads right now; leader faults
/// fall back to the plan's seeded node when it is `None` (or out of range).
///
/// Process faults skip nodes that are not alive (they cannot be killed or paused twice); the
/// returned [`ActiveFault::nodes`] lists only the nodes actually hit. Refuses the faults that take
/// more than one step ([`NemesisError::NeedsScheduleDriver`]).
pub async fn apply(
    plan: &FaultPlan,
    supervisor: &mut Supervisor,
    network: &Network,
    leader: Option<usize>,
) -> Result<ActiveFault, NemesisError> {
    if matches!(
        plan,
        FaultPlan::CrashRestartElection { .. }
            | FaultPlan::CrashRestartVoter { .. }
            | FaultPlan::Figure8 { .. }
    ) || plan.kind().requires().is_some()
    {
        return Err(NemesisError::NeedsScheduleDriver(plan.kind().name()));
    }
    let nodes = network.len().max(supervisor.len());
    let (target, description) = resolve_leader(plan, nodes, leader);

    let mut active = ActiveFault {
        plan: plan.clone(),
        description,
        cut_links: Vec::new(),
        nodes: Vec::new(),
        undo: Undo::HealLinks,
    };

    if let Some(cuts) = cuts_of(plan, network.len(), target)? {
        network.apply_cuts(&cuts);
        active.cut_links = cuts.links().collect();
        match plan {
            FaultPlan::LeaderChurn { .. } => active.nodes = vec![target],
            // Paused after the cut: it never sees a message that would tell it it was deposed.
            FaultPlan::StallLeader { .. } => active.nodes = pause(supervisor, &[target])?,
            _ => {}
        }
    } else {
        match plan {
            FaultPlan::SlowLinks {
                nodes: hit,
                latency_ms,
                jitter_ms,
            } => {
                let fault = LinkFault::Delay {
                    latency: Duration::from_millis(*latency_ms),
                    jitter: Duration::from_millis(*jitter_ms),
                };
                network.set_links(&links_of(network, hit.as_deref()), fault)?;
            }
            FaultPlan::ThrottleLinks {
                nodes: hit,
                bytes_per_sec,
            } => {
                let fault = LinkFault::Bandwidth {
                    bytes_per_sec: *bytes_per_sec,
                };
                network.set_links(&links_of(network, hit.as_deref()), fault)?;
            }
            FaultPlan::KillOne { node } => active.nodes = kill(supervisor, &[*node]).await?,
            FaultPlan::KillMinority { nodes } | FaultPlan::KillMajority { nodes } => {
                active.nodes = kill(supervisor, nodes).await?
            }
            FaultPlan::KillLeader { .. } => active.nodes = kill(supervisor, &[target]).await?,
            FaultPlan::PauseOne { node } => active.nodes = pause(supervisor, &[*node])?,
            FaultPlan::PauseLeader { .. } => active.nodes = pause(supervisor, &[target])?,
            FaultPlan::CrashRestartOne { node, .. } => {
                active.nodes = kill(supervisor, &[*node]).await?;
            }
            FaultPlan::CrashRestartLeader { .. } => {
                active.nodes = kill(supervisor, &[target]).await?;
            }
            // Partitions and the first step of leader-churn were handled by `cuts_of` above; the
            // faults of more than one step were refused at the top.
            FaultPlan::PartitionHalves { .. }
            | FaultPlan::IsolateOne { .. }
            | FaultPlan::IsolateLeader { .. }
            | FaultPlan::DeafenLeader { .. }
            | FaultPlan::MajoritiesRing { .. }
            | FaultPlan::Bridge { .. }
            | FaultPlan::LeaderChurn { .. }
            | FaultPlan::StallLeader { .. }
            | FaultPlan::CrashRestartElection { .. }
            | FaultPlan::CrashRestartVoter { .. }
            | FaultPlan::Figure8 { .. }
            | FaultPlan::LoseUnsynced { .. }
            | FaultPlan::PowerCut
            | FaultPlan::TornWrite { .. }
            | FaultPlan::Corrupt { .. }
            | FaultPlan::CorruptAll { .. }
            | FaultPlan::RemoveVoter { .. }
            | FaultPlan::AddLearner
            | FaultPlan::ReplaceNode { .. }
            | FaultPlan::RemoveLeader { .. }
            | FaultPlan::PromoteSplit { .. } => {}
        }
    }
    if matches!(
        active.family(),
        FaultFamily::Kill | FaultFamily::Pause | FaultFamily::Crash
    ) && active.nodes.is_empty()
    {
        active.description.push_str(" (not running: nothing done)");
    }
    active.undo = match active.family() {
        FaultFamily::Partition
        | FaultFamily::Link
        | FaultFamily::Churn
        | FaultFamily::Membership => Undo::HealLinks,
        FaultFamily::Kill | FaultFamily::Crash | FaultFamily::Disk => Undo::Restart {
            nodes: active.nodes.clone(),
        },
        FaultFamily::Pause if !active.cut_links.is_empty() => Undo::ResumeAndHeal {
            nodes: active.nodes.clone(),
        },
        FaultFamily::Pause => Undo::Resume {
            nodes: active.nodes.clone(),
        },
    };
    tracing::info!(fault = %active.description, cut = ?active.cut_links, "nemesis start");
    Ok(active)
}

/// Ends `active`: heals every link, restarts killed nodes (without waiting for them to be ready;
/// use [`Supervisor::wait_ready`]) or resumes paused ones. Returns the stop event for the history.
///
/// A node that is already alive again (someone restarted it) is left alone, and so is a paused
/// node that died meanwhile; the first real error is returned after trying every node.
pub async fn heal(
    active: &ActiveFault,
    supervisor: &mut Supervisor,
    network: &Network,
) -> Result<NemesisEvent, NemesisError> {
    let mut first_error = None;
    match &active.undo {
        Undo::HealLinks => network.heal_all(),
        Undo::Restart { nodes } => {
            for &node in nodes {
                match supervisor.start(node).await {
                    Ok(_) | Err(NemesisError::AlreadyRunning { .. }) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        Undo::Resume { nodes } => resume(supervisor, nodes, &mut first_error),
        Undo::ResumeAndHeal { nodes } => {
            resume(supervisor, nodes, &mut first_error);
            network.heal_all();
        }
    }
    tracing::info!(fault = %active.description, "nemesis stop");
    match first_error {
        Some(e) => Err(e),
        None => Ok(active.stop_event()),
    }
}

/// Resumes every node of `nodes` that is alive (a paused node that died meanwhile is left alone),
/// keeping the first error.
pub(crate) fn resume(
    supervisor: &mut Supervisor,
    nodes: &[usize],
    first_error: &mut Option<NemesisError>,
) {
    for &node in nodes {
        match supervisor.resume(node) {
            Ok(()) | Err(NemesisError::NotRunning { .. }) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
}

/// Every directed link touching one of `nodes`, or every link when `None`.
fn links_of(network: &Network, nodes: Option<&[usize]>) -> Vec<(usize, usize)> {
    network
        .links()
        .map(|(from, to, _)| (from, to))
        .filter(|(from, to)| nodes.is_none_or(|hit| hit.contains(from) || hit.contains(to)))
        .collect()
}

/// Kills every node of `nodes` that is alive, one after the other (`SIGKILL` is immediate, so a
/// minority dies within milliseconds of the first).
pub(crate) async fn kill(
    supervisor: &mut Supervisor,
    nodes: &[usize],
) -> Result<Vec<usize>, NemesisError> {
    let mut killed = Vec::new();
    for &node in nodes {
        if supervisor.is_alive(node)? {
            supervisor.kill(node).await?;
            killed.push(node);
        }
    }
    Ok(killed)
}

fn pause(supervisor: &mut Supervisor, nodes: &[usize]) -> Result<Vec<usize>, NemesisError> {
    let mut paused = Vec::new();
    for &node in nodes {
        if supervisor.is_alive(node)? {
            supervisor.pause(node)?;
            paused.push(node);
        }
    }
    Ok(paused)
}
