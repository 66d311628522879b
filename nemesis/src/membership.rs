//! The seam to a system's membership API and to the spare node slots the `membership` faults
//! need.
//!
//! The nemesis knows nothing of Raft configurations. The harness implements
//! [`MembershipControl`] over the system's own API (add a learner, promote it, remove a member,
//! following redirects and retrying while another change is in flight) and over the spare slots
//! it set up beside the cluster's first nodes (ports, data directories and link proxies ready, the
//! process not started); it hands it to [`crate::run_schedule`] through
//! [`crate::Targets::membership`]. The `membership` faults are refused without one.
//!
//! Nodes are slots, 0-based, as everywhere in this crate: the first `N` are the cluster's initial
//! nodes, the spares follow. A schedule names initial nodes only; once `replace-node` put a new
//! node (a spare slot) in the place of one, [`MembershipControl::stand_in`] says so and every later
//! fault planned for the old node hits the new one.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the trait's async methods (it is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configuration change, asked of whatever node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add the node of this slot as a learner (it must be running, or start later).
    AddLearner(usize),
    /// Promote the learner of this slot to voter (retried while it is not caught up).
    Promote(usize),
    /// Remove the node of this slot from the configuration.
    Remove(usize),
}

/// How a change ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The configuration with the change is committed.
    Applied,
    /// The system refused the change as invalid (the last voter, a lost quorum, an unknown or
    /// already present member): recorded, not an error.
    Refused(String),
    /// The system did not take it within the bounded time (another change kept it busy, no
    /// leader, the learner never caught up): recorded, not an error of the system under test.
    GaveUp(String),
}

impl ChangeOutcome {
    pub fn applied(&self) -> bool {
        matches!(self, ChangeOutcome::Applied)
    }
}

/// `committed`, `refused (WHY)`, `not applied (WHY)`: as the history's steps say it.
impl std::fmt::Display for ChangeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeOutcome::Applied => f.write_str("committed"),
            ChangeOutcome::Refused(why) => write!(f, "refused ({why})"),
            ChangeOutcome::GaveUp(why) => write!(f, "not applied ({why})"),
        }
    }
}

/// An error of the harness side (a process that cannot be started), in its own terms.
pub type MembershipError = Box<dyn std::error::Error + Send + Sync>;

/// What the `membership` faults ask of the harness.
pub trait MembershipControl: Send + Sync {
    /// How many initial nodes the cluster has (the schedule's nodes).
    fn initial_nodes(&self) -> usize;

    /// The slot that stands for initial node `node` now: `node` itself, or the slot of the node
    /// that replaced it.
    fn stand_in(&self, node: usize) -> usize;

    /// Takes a spare slot that was never used, for good; `None` when none is left.
    fn take_spare(&self) -> Option<usize>;

    /// Records that `slot` now stands for initial node `node`.
    fn set_stand_in(&self, node: usize, slot: usize);

    /// Carries out one change, following redirects and retrying while the system says it is
    /// busy, for a bounded time.
    fn change(&self, change: MemberChange) -> BoxFuture<'_, ChangeOutcome>;

    /// Starts the never-used spare `slot` so that it joins the cluster by itself: as a learner
    /// that stays one (`learner_only`), or as a learner that promotes itself once caught up.
    fn start_joining(
        &self,
        slot: usize,
        learner_only: bool,
    ) -> BoxFuture<'_, Result<(), MembershipError>>;

    /// Stops the node of `slot` for good: the harness never starts it again.
    fn retire(&self, slot: usize) -> BoxFuture<'_, Result<(), MembershipError>>;

    /// Waits (bounded) until the configuration holds `slot` as a voter (`voter`) or at least as
    /// a learner; whether it did.
    fn wait_member(&self, slot: usize, voter: bool) -> BoxFuture<'_, bool>;

    /// Waits (bounded) until the node of `slot` has applied what the leader had committed when
    /// asked, so that a promotion is not refused for a learner still catching up; whether it
    /// did.
    fn wait_caught_up(&self, slot: usize) -> BoxFuture<'_, bool>;
}
