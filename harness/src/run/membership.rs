//! The harness's side of the `membership` faults: [`MembershipControl`] over the system's
//! membership API ([`Db::member_request`]) and the cluster's spare slots, and the heal at the
//! end of the run that brings the configuration back to the initial number of voters.
//!
//! A change goes to the node that leads (any running member when none is known), follows
//! redirects, and is retried while the system says it is busy (`409`: another change in
//! flight, no leader ready, a learner behind) for a bounded time. A change the system refuses
//! as invalid (`400`) is an outcome, not an error: whether the history is linearizable is the
//! checker's to say, whatever the membership did.
//!
//! [`Db::member_request`]: crate::system::Db::member_request

use std::time::Duration;

use riptide_nemesis::{BoxFuture, ChangeOutcome, MemberChange, MembershipControl, MembershipError};
use tokio::time::Instant;

use super::cluster::Cluster;
use crate::system::{Member, MemberAnswer, MemberRequest};

/// Spare slots a run with membership faults gets, beyond its nodes.
pub const DEFAULT_SPARES: usize = 2;

/// How long one change is retried (redirects, busy, unreachable nodes).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`MembershipControl::wait_member`] waits.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);

/// Between two attempts.
const RETRY: Duration = Duration::from_millis(100);

/// One attempt of a membership request; a change commits in milliseconds on a healthy
/// cluster, and a slow link may stretch it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

impl Cluster {
    fn members_http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_millis(300))
            .build()
            .unwrap_or_else(|_| self.http.clone())
    }

    /// Where to send a membership request now: the leader, else the `rotation`-th running
    /// slot that is not retired.
    async fn member_url(&self, rotation: usize) -> String {
        if let Some(leader) = self.leader().await {
            return self.nodes[leader].client_url.clone();
        }
        let running: Vec<usize> = {
            let supervisor = self.supervisor.lock().await;
            let book = self.book();
            (0..self.nodes.len())
                .filter(|&i| supervisor.is_alive(i).unwrap_or(false) && !book.retired.contains(&i))
                .collect()
        };
        let slot = running
            .get(rotation % running.len().max(1))
            .copied()
            .unwrap_or(0);
        self.nodes[slot].client_url.clone()
    }

    /// The configuration as the leader (or some member) tells it; `None` when nobody did.
    pub async fn members(&self) -> Option<Vec<Member>> {
        let http = self.members_http();
        for rotation in 0..self.nodes.len() {
            let url = self.member_url(rotation).await;
            if let MemberAnswer::Done(Some(members)) = self
                .db
                .member_request(&url, &http, &MemberRequest::List)
                .await
            {
                return Some(members);
            }
        }
        None
    }

    fn request_of(&self, change: MemberChange) -> MemberRequest {
        match change {
            MemberChange::AddLearner(slot) => MemberRequest::AddLearner {
                id: self.nodes[slot].id,
                peer_addr: self.nodes[slot].peer_addr,
                client_url: self.nodes[slot].client_url.clone(),
            },
            MemberChange::Promote(slot) => MemberRequest::Promote {
                id: self.nodes[slot].id,
            },
            MemberChange::Remove(slot) => MemberRequest::Remove {
                id: self.nodes[slot].id,
            },
        }
    }

    /// Whether the configuration already says what `change` asks for.
    async fn holds(&self, change: MemberChange) -> bool {
        let Some(members) = self.members().await else {
            return false;
        };
        let find = |slot: usize| members.iter().find(|m| m.id == self.nodes[slot].id);
        match change {
            MemberChange::AddLearner(slot) => find(slot).is_some(),
            MemberChange::Promote(slot) => find(slot).is_some_and(|m| m.voter),
            MemberChange::Remove(slot) => find(slot).is_none(),
        }
    }

    fn note_applied(&self, change: MemberChange) {
        let mut book = self.book();
        match change {
            MemberChange::Remove(slot) => {
                book.outside.insert(slot);
            }
            MemberChange::AddLearner(slot) | MemberChange::Promote(slot) => {
                book.outside.remove(&slot);
            }
        }
    }

    async fn change_now(&self, change: MemberChange) -> ChangeOutcome {
        let request = self.request_of(change);
        let http = self.members_http();
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        // A request that timed out may have been applied: a refusal of its retry ("already a
        // member") then means it was.
        let mut ambiguous = false;
        let mut rotation = 0;
        let mut last: String;
        loop {
            let url = self.member_url(rotation).await;
            match self.db.member_request(&url, &http, &request).await {
                MemberAnswer::Done(_) => {
                    self.note_applied(change);
                    tracing::info!(?change, "membership change committed");
                    return ChangeOutcome::Applied;
                }
                MemberAnswer::Refused(why) => {
                    if ambiguous && self.holds(change).await {
                        self.note_applied(change);
                        return ChangeOutcome::Applied;
                    }
                    return ChangeOutcome::Refused(why);
                }
                MemberAnswer::Busy(why) => last = why,
                MemberAnswer::Unreachable(why) => {
                    ambiguous |= why.starts_with("timeout");
                    last = format!("{url}: {why}");
                    rotation += 1;
                }
            }
            if Instant::now() + RETRY >= deadline {
                return ChangeOutcome::GaveUp(format!(
                    "after {} s, last: {last}",
                    CHANGE_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn start_joining_now(
        &self,
        slot: usize,
        learner_only: bool,
    ) -> Result<(), MembershipError> {
        let join_url = self.member_url(0).await;
        let mut proxies = Vec::with_capacity(self.nodes.len());
        for j in 0..self.nodes.len() {
            proxies.push(if j == slot {
                self.nodes[slot].peer_addr
            } else {
                self.network.proxy_addr(slot, j)?
            });
        }
        let spec = self
            .db
            .join_process(
                &self.nodes[slot],
                &self.nodes,
                &|j| proxies[j],
                &join_url,
                learner_only,
            )
            .ok_or_else(|| format!("{} cannot start a node that joins", self.db.name()))?;
        {
            let mut supervisor = self.supervisor.lock().await;
            *supervisor.spec_mut(slot)? = spec;
            supervisor.start(slot).await?;
        }
        let ready = self.wait_ready(slot).await;
        // Clients pick it once it answers, or if it runs but is slow to say it is ready.
        if ready.is_ok() || self.supervisor.lock().await.is_alive(slot).unwrap_or(false) {
            self.client_targets.open(slot);
        }
        ready?;
        Ok(())
    }

    async fn retire_now(&self, slot: usize) -> Result<(), MembershipError> {
        {
            let mut book = self.book();
            book.retired.insert(slot);
            book.outside.insert(slot);
        }
        self.client_targets.close(slot);
        let mut supervisor = self.supervisor.lock().await;
        if supervisor.is_alive(slot)? {
            supervisor.stop(slot, Duration::from_secs(5)).await?;
        }
        Ok(())
    }

    async fn wait_member_now(&self, slot: usize, voter: bool) -> bool {
        let deadline = Instant::now() + MEMBER_TIMEOUT;
        let id = self.nodes[slot].id;
        loop {
            if let Some(members) = self.members().await {
                if members.iter().any(|m| m.id == id && (m.voter || !voter)) {
                    self.book().outside.remove(&slot);
                    return true;
                }
            }
            if Instant::now() + RETRY * 2 >= deadline {
                return false;
            }
            tokio::time::sleep(RETRY * 2).await;
        }
    }

    async fn wait_caught_up_now(&self, slot: usize) -> bool {
        let deadline = Instant::now() + MEMBER_TIMEOUT;
        let mut target = None;
        loop {
            if target.is_none() {
                if let Some(leader) = self.leader().await {
                    target = self.state_of(leader).await.map(|s| s.commit_index);
                }
            }
            if let (Some(target), Some(state)) = (target, self.state_of(slot).await) {
                if state.applied_index >= target {
                    return true;
                }
            }
            if Instant::now() + RETRY >= deadline {
                return false;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// At the end of a run with membership faults, after every other fault is healed: the
    /// nodes standing for the initial ones are voters again (added back and promoted where a
    /// fault left them out) and every other member is removed and stopped, so the cluster
    /// ends with as many voters as it began with. Returns what it did, one line per change,
    /// and whether it got there.
    pub async fn heal_membership(&self) -> (Vec<String>, bool) {
        let mut done = Vec::new();
        if self
            .wait_for_leader(Duration::from_secs(10))
            .await
            .is_none()
        {
            return (
                vec!["no leader within 10 s: membership left as it is".into()],
                false,
            );
        }
        let Some(members) = self.members().await else {
            return (
                vec!["no node told the configuration: left as it is".into()],
                false,
            );
        };
        let wanted: Vec<usize> = self.book().stand_in.clone();
        let slot_of = |id: u64| self.nodes.iter().position(|n| n.id == id);
        for &slot in &wanted {
            let name = riptide_nemesis::node_name(slot);
            let member = members.iter().find(|m| m.id == self.nodes[slot].id);
            if member.is_none() {
                let added = self.change_now(MemberChange::AddLearner(slot)).await;
                done.push(format!("add {name} back as a learner: {added}"));
            }
            if !member.is_some_and(|m| m.voter) {
                let promoted = self.change_now(MemberChange::Promote(slot)).await;
                done.push(format!("promote {name}: {promoted}"));
            }
        }
        for member in &members {
            let Some(slot) = slot_of(member.id) else {
                continue;
            };
            if wanted.contains(&slot) {
                continue;
            }
            let name = riptide_nemesis::node_name(slot);
            let removed = self.change_now(MemberChange::Remove(slot)).await;
            done.push(format!("remove {name}: {removed}"));
            if removed.applied() {
                if let Err(e) = self.retire_now(slot).await {
                    done.push(format!("cannot stop {name}: {e}"));
                }
            }
        }
        let healed = match self.members().await {
            Some(now) => {
                let voters: Vec<u64> = now.iter().filter(|m| m.voter).map(|m| m.id).collect();
                wanted.iter().all(|&s| voters.contains(&self.nodes[s].id))
                    && voters.len() == wanted.len()
            }
            None => false,
        };
        (done, healed)
    }
}

impl MembershipControl for Cluster {
    fn initial_nodes(&self) -> usize {
        self.initial
    }

    fn stand_in(&self, node: usize) -> usize {
        self.book().stand_in.get(node).copied().unwrap_or(node)
    }

    fn take_spare(&self) -> Option<usize> {
        self.book().free_spares.pop_front()
    }

    fn set_stand_in(&self, node: usize, slot: usize) {
        if let Some(s) = self.book().stand_in.get_mut(node) {
            *s = slot;
        }
    }

    fn change(&self, change: MemberChange) -> BoxFuture<'_, ChangeOutcome> {
        Box::pin(self.change_now(change))
    }

    fn start_joining(
        &self,
        slot: usize,
        learner_only: bool,
    ) -> BoxFuture<'_, Result<(), MembershipError>> {
        Box::pin(self.start_joining_now(slot, learner_only))
    }

    fn retire(&self, slot: usize) -> BoxFuture<'_, Result<(), MembershipError>> {
        Box::pin(self.retire_now(slot))
    }

    fn wait_member(&self, slot: usize, voter: bool) -> BoxFuture<'_, bool> {
        Box::pin(self.wait_member_now(slot, voter))
    }

    fn wait_caught_up(&self, slot: usize) -> BoxFuture<'_, bool> {
        Box::pin(self.wait_caught_up_now(slot))
    }
}
