//! `figure-8`: Raft's Figure 8 (§5.4.2) played on a live 5-node cluster with link cuts, timed
//! on what the nodes say of their logs ([`Primary::log_view`]).
//!
//! A new leader appends its no-op at election and ships it with the older entries, so a
//! follower's acknowledgement covers an entry of the leader's term whenever it covers older
//! ones, and a leader that commits entries of earlier terms by counting replicas is wrong only
//! when a follower more than one AppendEntries batch behind acknowledges old entries alone.
//! Random faults almost never produce that; this fault builds it, with the nodes named as in
//! the paper's figure (S1 the leader of term T, S2 its partner, S3-S5 the others, S3 the one
//! with the shortest log and S5 the longest):
//!
//! ```text
//! 1. {S1 S2} | {S3 S4 S5}         S1 appends client writes (term T) that only S2 gets
//! 2. S3-S4 cut, S5->S3/S4 slow    S5 leads term T+1 alone: cut off before its no-op lands
//! 3. {S1 S2 S3}, S1/S2->S3 slow   S1 (or S2) leads T+2; S3 gets a first batch of the
//!                                 term-T suffix: cut off before the rest (and the no-op)
//! 4. {S3 S4 S5}                   S5 (last term T+1) leads T+3, overwrites S3's batch
//! 5. healed                       leaders cut off one by one until S1 or S2 leads again
//! ```
//!
//! A correct leader of T+2 commits nothing in step 3 (its term's no-op is on two nodes only),
//! so nothing is lost. With the Figure 8 bug it commits and applies the batch S3 acknowledged
//! (on S1, S2 and S3, a majority), and step 4 overwrites it: S1 and S2 have applied entries
//! the cluster no longer has. Step 5 makes one of them lead, so its reads show them.
//!
//! Cuts here reset connections (`Reject`): a delayed link's queued bytes are dropped with the
//! connection, so the entries still in flight when a link is cut never arrive.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{FaultInterval, Observer, Player, Primary};
use crate::fault::{node_list, node_name, FaultPlan};
use crate::nemesis::resolve_leader;
use crate::network::Cuts;
use crate::proxy::LinkFault;

/// How often the fault asks the nodes about their logs: well within the added link latency.
const POLL: Duration = Duration::from_millis(5);

/// Time for an acknowledgement seen on a follower to reach the leader (a fast link) and be
/// counted before the follower is cut off.
const ACK_GRACE: Duration = Duration::from_millis(30);

/// Time for the entries in flight to land once the cluster is first cut.
const SETTLE: Duration = Duration::from_millis(50);

/// How long a leader that is not the one wanted leads in step 5 before it is cut off (the
/// wanted nodes catch up meanwhile).
const DWELL: Duration = Duration::from_millis(300);

/// How often step 5 asks who leads.
const LEAD_POLL: Duration = Duration::from_millis(50);

/// What one node says of its log and role, for `figure-8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogView {
    /// Its term.
    pub term: u64,
    /// It says it leads that term.
    pub leader: bool,
    /// The index of the last entry of its log.
    pub last_index: u64,
    /// What it knows to be committed.
    pub commit_index: u64,
}

/// Each node's view (`None`: not asked, or no answer), by node index.
type Views = Vec<Option<LogView>>;

impl<P: Primary, O: Observer, S: Future<Output = ()>> Player<'_, '_, P, O, S> {
    /// Plays `figure-8` (see the module docs) in the window ending at `end`; everything heals
    /// at the end, also when a step did not happen in time (the steps say how far it got).
    pub(super) async fn figure8(
        &mut self,
        index: usize,
        plan: &FaultPlan,
        leader: Option<usize>,
        end: Instant,
    ) {
        let FaultPlan::Figure8 {
            order, delay_ms, ..
        } = plan
        else {
            return;
        };
        let kind = plan.kind();
        let nodes = self.nodes();
        let (s1, description) = resolve_leader(plan, nodes, leader);
        if nodes != 5 {
            let why = format!("{description} (needs exactly 5 nodes, has {nodes}: nothing done)");
            return self.nothing_done(index, kind, why);
        }
        let Some(s2) = order.iter().copied().find(|&n| n != s1 && n < nodes) else {
            return self.nothing_done(index, kind, format!("{description} (no partner)"));
        };
        let all: Vec<usize> = (0..nodes).collect();
        let before = self.f8_views(&all).await;
        let Some(term) = before[s1].map(|v| v.term) else {
            let why = format!("{description} (the leader tells nothing of its log: nothing done)");
            return self.nothing_done(index, kind, why);
        };
        let delay = LinkFault::Delay {
            latency: Duration::from_millis(*delay_ms),
            jitter: Duration::ZERO,
        };
        let mut rest: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&n| n != s1 && n != s2)
            .collect();

        // 1. {S1 S2} | the rest: S1's term-T writes reach S2 only.
        self.f8_cut_between(&[s1, s2], &rest);
        let mut interval = self.open(index, kind, description, vec![s1, s2]);
        let step = format!(
            "cut {} | {}: {} (term {term}) keeps its writes for itself and {}",
            node_list(&[s1, s2]),
            node_list(&rest),
            node_name(s1),
            node_name(s2)
        );
        self.step(&mut interval, step);
        if !self.sleep_until((Instant::now() + SETTLE).min(end)).await {
            return self.f8_close(interval);
        }

        // 2. The longest log of the rest leads term T+1 alone.
        let views = self.f8_views(&rest).await;
        rest.sort_by_key(|&n| views[n].map_or(0, |v| v.last_index));
        let (s3, s4, s5) = (rest[0], rest[1], rest[2]);
        let last = |n: usize| views[n].map_or(0, |v| v.last_index);
        self.f8_cut_between(&[s3], &[s4]);
        self.f8_set(&[(s5, s3), (s5, s4)], delay);
        let step = format!(
            "cut {}-{}, delay {} to them: {} (last index {}; {} {}, {} {}) to lead alone",
            node_name(s3),
            node_name(s4),
            node_name(s5),
            node_name(s5),
            last(s5),
            node_name(s3),
            last(s3),
            node_name(s4),
            last(s4)
        );
        self.step(&mut interval, step);
        let led = self.f8_wait_leader(end, &[s5], term).await;
        let Some((_, term5, _)) = led else {
            return self.f8_gave_up(interval, format!("{} did not lead", node_name(s5)));
        };
        self.f8_cut_between(&[s5], &[s1, s2, s3, s4]);
        let step = format!(
            "{} leads term {term5}: cut it off, its first entries dropped in flight",
            node_name(s5)
        );
        self.step(&mut interval, step);

        // 3. S1 or S2 leads T+2 with S3, which gets a first batch of the term-T suffix only.
        self.f8_set(&[(s3, s1), (s3, s2)], LinkFault::Heal);
        self.f8_set(&[(s1, s3), (s2, s3)], delay);
        let led = self.f8_wait_leader(end, &[s1, s2], term5).await;
        let Some((l2, term2, last2)) = led else {
            let why = format!("neither {} nor {} led", node_name(s1), node_name(s2));
            return self.f8_gave_up(interval, why);
        };
        let base3 = self.f8_view(s3).await.map_or(0, |v| v.last_index);
        let step = format!(
            "{} leads term {term2} (last index {last2}) with {} (last index {base3})",
            node_name(l2),
            node_name(s3)
        );
        self.step(&mut interval, step);
        let got = self
            .f8_wait(end, &[s3], |v| {
                v[s3].filter(|v| v.last_index > base3).map(|v| v.last_index)
            })
            .await;
        let Some(got) = got else {
            return self.f8_gave_up(interval, format!("{} got no entries", node_name(s3)));
        };
        self.sleep_until((Instant::now() + ACK_GRACE).min(end))
            .await;
        self.f8_cut_between(&[s3], &[s1, s2]);
        let commit2 = self.f8_view(l2).await.map_or(0, |v| v.commit_index);
        let step = format!(
            "{} took entries up to {got} of {last2}: cut it off again ({} says commit {commit2})",
            node_name(s3),
            node_name(l2)
        );
        self.step(&mut interval, step);

        // 4. S5 (last term T+1) leads T+3 with S3 and S4 and overwrites S3's batch.
        self.f8_set(
            &[(s3, s4), (s4, s3), (s3, s5), (s5, s3), (s4, s5), (s5, s4)],
            LinkFault::Heal,
        );
        let three = [s3, s4, s5];
        let led = self.f8_wait_leader(end, &three, term2).await;
        let Some((l3, term3, last3)) = led else {
            return self.f8_gave_up(interval, format!("none of {} led", node_list(&three)));
        };
        let committed = self
            .f8_wait(end, &[l3], |v| {
                v[l3]
                    .filter(|v| v.term == term3 && v.commit_index >= last3)
                    .map(|v| v.commit_index)
            })
            .await;
        let Some(commit3) = committed else {
            let why = format!("{} leads term {term3} but did not commit", node_name(l3));
            return self.f8_gave_up(interval, why);
        };
        let step = format!(
            "{} leads term {term3} and committed up to {commit3}",
            node_name(l3)
        );
        self.step(&mut interval, step);

        // 5. Healed; S1 or S2 leads again, so its state is what clients read.
        self.targets.network.heal_all();
        self.step(&mut interval, "healed".to_owned());
        self.f8_lead_again(&mut interval, &[s1, s2], end).await;
        self.sleep_until(end).await;
        self.f8_close(interval);
    }

    /// Cuts off, one after the other, each leader that is not in `wanted` once it has led for
    /// [`DWELL`] (at most two cut off at a time, the longest cut off rejoining), until a node
    /// of `wanted` leads; then heals everything.
    async fn f8_lead_again(
        &mut self,
        interval: &mut FaultInterval,
        wanted: &[usize],
        end: Instant,
    ) {
        let nodes = self.nodes();
        let mut isolated: Vec<usize> = Vec::new();
        let mut seen: Option<(usize, Instant)> = None;
        while self
            .sleep_until((Instant::now() + LEAD_POLL).min(end))
            .await
            && Instant::now() < end
        {
            let Some(leader) = self.ask_primary().await.filter(|&l| l < nodes) else {
                continue;
            };
            if wanted.contains(&leader) {
                self.targets.network.heal_all();
                let step = format!("{} leads again; healed", node_name(leader));
                return self.step(interval, step);
            }
            if isolated.contains(&leader) {
                continue;
            }
            match seen {
                Some((node, since)) if node == leader && since.elapsed() >= DWELL => {}
                Some((node, _)) if node == leader => continue,
                _ => {
                    seen = Some((leader, Instant::now()));
                    continue;
                }
            }
            seen = None;
            isolated.push(leader);
            if isolated.len() > 2 {
                isolated.remove(0);
            }
            self.targets
                .network
                .apply_cuts(&Cuts::isolate_each(nodes, &isolated));
            let step = format!(
                "cut off leader {} so that {} may lead",
                node_name(leader),
                node_list(wanted)
            );
            self.step(interval, step);
        }
    }

    /// What `node` says of its log; `None` when it does not answer or the stop signal fired.
    async fn f8_view(&mut self, node: usize) -> Option<LogView> {
        if self.stopped {
            return None;
        }
        tokio::select! {
            view = self.targets.primary.log_view(node) => view,
            _ = self.stop.as_mut() => {
                self.stopped = true;
                None
            }
        }
    }

    /// The views of `asked` (the others `None`), asked one after the other.
    pub(super) async fn f8_views(&mut self, asked: &[usize]) -> Views {
        let mut views = vec![None; self.nodes()];
        for &node in asked {
            views[node] = self.f8_view(node).await;
        }
        views
    }

    /// Asks `asked` every [`POLL`] until `found` says what it waited for; `None` when the
    /// window ended or the stop signal fired first.
    pub(super) async fn f8_wait<T>(
        &mut self,
        end: Instant,
        asked: &[usize],
        found: impl Fn(&Views) -> Option<T>,
    ) -> Option<T> {
        loop {
            let views = self.f8_views(asked).await;
            if let Some(value) = found(&views) {
                return Some(value);
            }
            if !self.sleep_until((Instant::now() + POLL).min(end)).await || Instant::now() >= end {
                return None;
            }
        }
    }

    /// Waits (as [`Self::f8_wait`]) until one of `among` leads a term above `above`: that node,
    /// its term and its last index.
    async fn f8_wait_leader(
        &mut self,
        end: Instant,
        among: &[usize],
        above: u64,
    ) -> Option<(usize, u64, u64)> {
        self.f8_wait(end, among, |v| {
            among.iter().find_map(|&n| {
                v[n].filter(|v| v.leader && v.term > above)
                    .map(|v| (n, v.term, v.last_index))
            })
        })
        .await
    }

    /// Sets `fault` on each directed link of `links` (node indices are in range: checked).
    fn f8_set(&self, links: &[(usize, usize)], fault: LinkFault) {
        let network = self.targets.network;
        for &(from, to) in links {
            if let Err(e) = network.set_link(from, to, fault) {
                tracing::warn!(from, to, error = %e, "figure-8: cannot set a link");
            }
        }
    }

    /// Cuts every link between `left` and `right`, both ways, resetting their connections.
    fn f8_cut_between(&self, left: &[usize], right: &[usize]) {
        let links: Vec<(usize, usize)> = left
            .iter()
            .flat_map(|&a| right.iter().flat_map(move |&b| [(a, b), (b, a)]))
            .collect();
        self.f8_set(&links, LinkFault::Reject);
    }

    /// Records that a step did not happen before the end of the window, then heals and closes.
    fn f8_gave_up(&mut self, mut interval: FaultInterval, why: String) {
        let step = format!("{why} before the end of the window: gave up");
        self.step(&mut interval, step);
        self.f8_close(interval);
    }

    /// Heals every link and closes the fault.
    fn f8_close(&mut self, interval: FaultInterval) {
        self.targets.network.heal_all();
        self.close(interval);
    }
}
