//! Applying a planned fault to a running cluster, and healing it again.
//!
//! The harness drives the schedule: at a fault's start it calls [`apply`] with the current leader (if
//! it knows one), writes [`ActiveFault::start_event`] into the history; at the end it calls [`heal`]
//! and writes the returned stop event. It never needs to know how a fault is carried out.
//! [`run_schedule`] does exactly that for a whole [`Schedule`], for harnesses that need no more.
//!
//! | family      | start                                      | end (heal)                         |
//! |-------------|--------------------------------------------|------------------------------------|
//! | `partition` | black-hole the cut links, heal the others  | heal every link                    |
//! | `link`      | delay / throttle the chosen links          | heal every link                    |
//! | `kill`      | `SIGKILL` the nodes, wait until reaped     | start the killed nodes again       |
//! | `pause`     | `SIGSTOP` the nodes                        | `SIGCONT` them                     |

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::NemesisError;
use crate::fault::{FaultFamily, FaultPlan, NemesisEvent};
use crate::network::{Cuts, Network};
use crate::proxy::LinkFault;
use crate::schedule::Schedule;
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
    /// The nodes it acted on (killed or paused; empty for network faults).
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
        FaultPlan::IsolateLeader { .. } => Cuts::isolate(nodes, target),
        FaultPlan::MajoritiesRing { ring } => Cuts::majorities_ring(ring)?,
        FaultPlan::Bridge {
            left,
            bridge,
            right,
        } => Cuts::bridge(nodes, left, *bridge, right),
        _ => return Ok(None),
    }))
}

/// Puts `plan` into effect. `leader` is the node the caller believes leads right now; leader faults
/// fall back to the plan's seeded node when it is `None` (or out of range).
///
/// Process faults skip nodes that are not alive (they cannot be killed or paused twice); the
/// returned [`ActiveFault::nodes`] lists only the nodes actually hit.
pub async fn apply(
    plan: &FaultPlan,
    supervisor: &mut Supervisor,
    network: &Network,
    leader: Option<usize>,
) -> Result<ActiveFault, NemesisError> {
    let nodes = network.len().max(supervisor.len());
    let known_leader = leader.filter(|&l| l < nodes);
    let resolve = |fallback: usize| known_leader.unwrap_or(fallback);
    let leader_fact = |fallback: usize| Some((resolve(fallback), known_leader.is_some()));
    let (description, target) = match plan {
        FaultPlan::IsolateLeader { fallback }
        | FaultPlan::KillLeader { fallback }
        | FaultPlan::PauseLeader { fallback } => (
            plan.describe_resolved(leader_fact(*fallback)),
            resolve(*fallback),
        ),
        _ => (plan.describe_resolved(None), 0),
    };

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
            FaultPlan::KillMinority { nodes } => active.nodes = kill(supervisor, nodes).await?,
            FaultPlan::KillLeader { .. } => active.nodes = kill(supervisor, &[target]).await?,
            FaultPlan::PauseOne { node } => active.nodes = pause(supervisor, &[*node])?,
            FaultPlan::PauseLeader { .. } => active.nodes = pause(supervisor, &[target])?,
            // Partitions were handled by `cuts_of` above.
            FaultPlan::PartitionHalves { .. }
            | FaultPlan::IsolateOne { .. }
            | FaultPlan::IsolateLeader { .. }
            | FaultPlan::MajoritiesRing { .. }
            | FaultPlan::Bridge { .. } => {}
        }
    }
    if matches!(active.family(), FaultFamily::Kill | FaultFamily::Pause) && active.nodes.is_empty()
    {
        active.description.push_str(" (not running: nothing done)");
    }
    active.undo = match active.family() {
        FaultFamily::Partition | FaultFamily::Link => Undo::HealLinks,
        FaultFamily::Kill => Undo::Restart {
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
        Undo::Resume { nodes } => {
            for &node in nodes {
                match supervisor.resume(node) {
                    Ok(()) | Err(NemesisError::NotRunning { .. }) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    tracing::info!(fault = %active.description, "nemesis stop");
    match first_error {
        Some(e) => Err(e),
        None => Ok(active.stop_event()),
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
async fn kill(supervisor: &mut Supervisor, nodes: &[usize]) -> Result<Vec<usize>, NemesisError> {
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

/// Runs `schedule` against a live cluster: at each fault's start offset (from `started`) asks
/// `leader` who leads, [`apply`]s the fault and passes the start event to `record`; at its end
/// offset [`heal`]s it and passes the stop event. Returns when the schedule is done, or early when
/// `shutdown` completes, healing the fault in effect first, so the cluster is never left broken.
///
/// The supervisor sits behind a mutex so the caller can keep using it (readiness, crash checks)
/// while the schedule runs; the lock is held only while a fault is applied or healed.
pub async fn run_schedule<L, LFut, R>(
    schedule: &Schedule,
    started: Instant,
    supervisor: &Mutex<Supervisor>,
    network: &Network,
    mut leader: L,
    mut record: R,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NemesisError>
where
    L: FnMut() -> LFut,
    LFut: Future<Output = Option<usize>>,
    R: FnMut(NemesisEvent),
{
    tokio::pin!(shutdown);
    for fault in &schedule.faults {
        tokio::select! {
            _ = tokio::time::sleep_until(started + fault.start()) => {}
            _ = &mut shutdown => return Ok(()),
        }
        let current_leader = leader().await;
        let active = apply(
            &fault.plan,
            &mut *supervisor.lock().await,
            network,
            current_leader,
        )
        .await?;
        record(active.start_event());
        let interrupted = tokio::select! {
            _ = tokio::time::sleep_until(started + fault.end()) => false,
            _ = &mut shutdown => true,
        };
        let stop = heal(&active, &mut *supervisor.lock().await, network).await?;
        record(stop);
        if interrupted {
            return Ok(());
        }
    }
    Ok(())
}
