//! Unit tests of the core rules: elections and the vote rule, terms, the consistency check and
//! backtracking (Raft's Figure 7), commit of current-term entries only (Figure 8), a bogus
//! follower log, ReadIndex, pre-vote and check-quorum, leadership transfer, and log compaction
//! with InstallSnapshot, and membership changes (learners, one change at a time, a leader
//! removing itself, configurations in snapshots). A small in-process cluster delivers messages on demand, so each test
//! decides exactly which messages arrive. Its state machine is the list of applied entries, and
//! its snapshots that list in JSON, so a restored state is checked entry by entry.

use std::collections::{BTreeMap, VecDeque};

use super::*;

/// An entry whose payload names its position, so different entries never compare equal.
fn ent(index: LogIndex, term: Term) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Command(format!("{index}@{term}").into_bytes()),
    }
}

/// A log with one entry per given term, indices from 1.
fn log_of_terms(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| ent(i as LogIndex + 1, term))
        .collect()
}

fn terms_of(entries: &[Entry]) -> Vec<Term> {
    entries.iter().map(|e| e.term).collect()
}

/// Classic Raft (pre-vote and check-quorum off), so the scenarios of the paper play out as
/// written; the pre-vote and check-quorum tests turn them on (`settled_robust_cluster`).
fn test_config(id: NodeId, members: &[NodeId]) -> Config {
    let mut config = Config::new(id, members.to_vec());
    config.seed = 1000 + id;
    config.pre_vote = false;
    config.check_quorum = false;
    // Compaction right up to the snapshot, so the snapshot tests reach its edge; the window
    // tests set their own.
    config.compaction_keep_entries = 0;
    config
}

/// Decides the fate of a message in flight: true drops it; it may also rewrite it.
type DropRule = Box<dyn Fn(&mut Message) -> bool>;

/// Nodes, their disks and a message queue, all driven by hand.
struct Cluster {
    members: Vec<NodeId>,
    configs: BTreeMap<NodeId, Config>,
    nodes: BTreeMap<NodeId, RaftNode>,
    disks: BTreeMap<NodeId, DurableState>,
    /// What each node's state machine applied, in order (reset on restart).
    applied: BTreeMap<NodeId, Vec<Entry>>,
    read_states: BTreeMap<NodeId, Vec<ReadState>>,
    failed_reads: BTreeMap<NodeId, Vec<u64>>,
    queue: VecDeque<Message>,
    /// Crashed nodes: messages to them are lost.
    down: Vec<NodeId>,
    /// Messages matching this rule are lost.
    drop_rule: DropRule,
    /// Every entry any node applied, by index: two different ones at an index is a violation
    /// of state-machine safety.
    applied_anywhere: BTreeMap<LogIndex, Entry>,
    safety_violations: Vec<String>,
    /// InstallSnapshot chunks delivered, by receiver.
    chunks_delivered: BTreeMap<NodeId, usize>,
}

impl Cluster {
    fn new(members: &[NodeId]) -> Cluster {
        let durable = members.iter().map(|_| DurableState::default()).collect();
        Cluster::with_state(members, durable, |_| {})
    }

    /// A cluster restarted from the given durable states, with a config tweak.
    fn with_state(
        members: &[NodeId],
        durable: Vec<DurableState>,
        tweak: impl Fn(&mut Config),
    ) -> Cluster {
        let mut cluster = Cluster {
            members: members.to_vec(),
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            failed_reads: BTreeMap::new(),
            queue: VecDeque::new(),
            down: Vec::new(),
            drop_rule: Box::new(|_| false),
            applied_anywhere: BTreeMap::new(),
            safety_violations: Vec::new(),
            chunks_delivered: BTreeMap::new(),
        };
        for (&id, durable) in members.iter().zip(durable) {
            let mut config = test_config(id, members);
            tweak(&mut config);
            cluster.configs.insert(id, config);
            cluster.disks.insert(id, durable);
            cluster.restart(id);
        }
        cluster
    }

    fn node(&self, id: NodeId) -> &RaftNode {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut RaftNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn log(&self, id: NodeId) -> Vec<Entry> {
        self.node(id).entries().to_vec()
    }

    fn crash(&mut self, id: NodeId) {
        self.down.push(id);
    }

    /// Restarts a node from its disk only: the state machine from the snapshot, if any.
    fn restart(&mut self, id: NodeId) {
        self.down.retain(|&d| d != id);
        let disk = self.disks[&id].clone();
        let mut config = self.configs[&id].clone();
        let applied = disk.snapshot.as_ref().map_or_else(Vec::new, restore);
        config.applied = applied.len() as LogIndex;
        self.nodes.insert(id, RaftNode::new(config, disk));
        self.applied.insert(id, applied);
    }

    /// The driver's log compaction: a snapshot of the state machine at `index` (which must be
    /// applied), made durable, handed to the core, and the durable log prefix dropped.
    fn compact(&mut self, id: NodeId, index: LogIndex) -> Result<(), CompactError> {
        let data = serde_json::to_vec(&self.applied[&id][..index as usize]).unwrap();
        let term = self.node(id).term_at(index).unwrap_or(0);
        let snapshot = Snapshot {
            meta: SnapshotMeta { index, term },
            membership: self.node(id).membership_at(index),
            data,
        };
        self.node_mut(id).compact(snapshot.clone())?;
        let disk = self.disks.get_mut(&id).unwrap();
        disk.log.retain(|e| e.index > index);
        disk.snapshot = Some(snapshot);
        Ok(())
    }

    /// Runs the driver loop of one node until it has nothing to do.
    fn process(&mut self, id: NodeId) {
        if self.down.contains(&id) {
            return;
        }
        while self.node(id).has_ready() {
            let ready = self.node_mut(id).ready();
            let disk = self.disks.get_mut(&id).unwrap();
            if let Some(snapshot) = &ready.snapshot {
                disk.snapshot = Some(snapshot.clone());
                disk.log.clear();
                let applied = restore(snapshot);
                assert_eq!(applied.len() as LogIndex, snapshot.meta.index);
                self.applied.insert(id, applied);
            }
            if let Some(hard_state) = ready.hard_state {
                disk.hard_state = hard_state;
            }
            if let Some(first) = ready.entries.first() {
                let snapshot_index = disk.snapshot.as_ref().map_or(0, |s| s.meta.index);
                disk.log
                    .truncate((first.index - snapshot_index - 1) as usize);
                disk.log.extend(ready.entries.iter().cloned());
            }
            self.queue.extend(ready.messages);
            for entry in ready.committed_entries {
                let seen = self
                    .applied_anywhere
                    .entry(entry.index)
                    .or_insert_with(|| entry.clone());
                if *seen != entry {
                    self.safety_violations.push(format!(
                        "node {id} applied {entry:?} where {seen:?} was applied"
                    ));
                }
                self.applied.get_mut(&id).unwrap().push(entry);
            }
            self.read_states
                .entry(id)
                .or_default()
                .extend(ready.read_states);
            self.failed_reads
                .entry(id)
                .or_default()
                .extend(ready.failed_reads);
            self.node_mut(id).advance();
        }
    }

    fn process_all(&mut self) {
        for id in self.members.clone() {
            self.process(id);
        }
    }

    /// Delivers one message (unless its link drops it) and runs the receiver's driver loop.
    fn deliver(&mut self, mut msg: Message) {
        if self.down.contains(&msg.to)
            || self.down.contains(&msg.from)
            || (self.drop_rule)(&mut msg)
        {
            return;
        }
        let to = msg.to;
        if matches!(msg.body, MessageBody::InstallSnapshot { .. }) {
            *self.chunks_delivered.entry(to).or_default() += 1;
        }
        self.node_mut(to).step(msg);
        self.process(to);
    }

    /// Delivers every queued message, and the ones they cause, until the network is quiet.
    fn deliver_all(&mut self) {
        self.process_all();
        let mut budget = 100_000;
        while let Some(msg) = self.queue.pop_front() {
            self.deliver(msg);
            budget -= 1;
            assert!(budget > 0, "the cluster never went quiet");
        }
    }

    fn tick(&mut self, id: NodeId) {
        if !self.down.contains(&id) {
            self.node_mut(id).tick();
            self.process(id);
        }
    }

    /// Ticks `id` alone until it campaigns, then lets the election run; repeats (a candidate
    /// behind in term first learns the term) until it leads.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..5 {
            let term = self.node(id).status().term;
            for _ in 0..100 {
                self.tick(id);
                if self.node(id).status().term > term {
                    break;
                }
            }
            self.deliver_all();
            if self.node(id).status().role == Role::Leader {
                return;
            }
        }
        panic!(
            "node {id} did not become leader: {:?}",
            self.node(id).status()
        );
    }

    /// One tick on every live node, then every message delivered.
    fn tick_all(&mut self) {
        for id in self.members.clone() {
            self.tick(id);
        }
        self.deliver_all();
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, node)| !self.down.contains(id) && node.status().role == Role::Leader)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// Every test cluster is held to state-machine safety: no two nodes apply different entries at
/// one index. A test that expects a violation (a planted bug) takes it out of
/// `safety_violations` before the cluster drops. When the test is already failing (a panic
/// unwinds through the drop), the violations are printed with its failure instead: a second
/// panic would abort the whole test binary.
impl Drop for Cluster {
    fn drop(&mut self) {
        if self.safety_violations.is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "state-machine safety violated too: {:?}",
                self.safety_violations
            );
        } else {
            panic!(
                "state-machine safety violated: {:?}",
                self.safety_violations
            );
        }
    }
}

/// The test state machine restored from a snapshot: the entries applied up to its index.
fn restore(snapshot: &Snapshot) -> Vec<Entry> {
    serde_json::from_slice(&snapshot.data).unwrap()
}

fn durable(term: Term, terms: &[Term]) -> DurableState {
    DurableState {
        hard_state: HardState {
            term,
            voted_for: None,
            commit: 0,
        },
        snapshot: None,
        log: log_of_terms(terms),
    }
}

// ---------------------------------------------------------------------------------------------
// Elections and terms

#[test]
fn a_fresh_cluster_elects_exactly_one_leader_which_commits_a_noop() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    for _ in 0..100 {
        for id in 1..=3 {
            cluster.tick(id);
        }
        cluster.deliver_all();
        if !cluster.leaders().is_empty() {
            break;
        }
    }
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    let leader = leaders[0];
    let term = cluster.node(leader).status().term;
    for _ in 0..2 {
        cluster.tick(leader);
        cluster.deliver_all();
    }
    for id in 1..=3 {
        let status = cluster.node(id).status();
        assert_eq!(status.term, term);
        assert_eq!(status.leader, Some(leader));
        assert_eq!(
            status.commit_index, 1,
            "the leader's no-op commits everywhere"
        );
        assert_eq!(cluster.applied[&id].len(), 1);
        assert_eq!(cluster.applied[&id][0].payload, EntryPayload::Noop);
        assert_eq!(cluster.applied[&id][0].term, term);
    }
}

#[test]
fn election_timeouts_are_randomized_in_one_to_two_election_timeouts() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut config = Config::new(1, vec![1, 2, 3]);
        config.seed = seed;
        config.election_ticks = 10;
        let mut node = RaftNode::new(config, DurableState::default());
        let mut ticks = 0;
        while node.status().role == Role::Follower {
            node.tick();
            ticks += 1;
            assert!(ticks < 20, "timeout past 2 * election_ticks");
        }
        assert!(ticks >= 10, "timeout before election_ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts are not random: {seen:?}");
}

fn vote_request(from: NodeId, to: NodeId, term: Term, last: (LogIndex, Term)) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::RequestVote {
            last_log_index: last.0,
            last_log_term: last.1,
            transfer: false,
        },
    }
}

fn vote_answer(ready: &Ready) -> Option<bool> {
    ready.messages.iter().find_map(|m| match m.body {
        MessageBody::RequestVoteResponse { granted } => Some(granted),
        _ => None,
    })
}

#[test]
fn votes_go_only_to_candidates_at_least_as_up_to_date() {
    // The voter's log ends with (index 3, term 2).
    let voter = |term| RaftNode::new(test_config(1, &[1, 2, 3]), durable(term, &[1, 2, 2]));
    let cases = [
        ((2, 2), false, "same last term, shorter log"),
        ((9, 1), false, "older last term, however long"),
        ((3, 2), true, "same last entry"),
        ((4, 2), true, "same last term, longer log"),
        ((1, 3), true, "newer last term, however short"),
    ];
    for (last, expected, why) in cases {
        let mut node = voter(2);
        node.step(vote_request(2, 1, 3, last));
        let ready = node.ready();
        assert_eq!(vote_answer(&ready), Some(expected), "{why}");
        assert_eq!(
            node.status().term,
            3,
            "the higher term is adopted either way"
        );
        if expected {
            // The vote is durable before it leaves: it is in the same Ready as the answer.
            let hard_state = ready.hard_state.expect("vote must be persisted");
            assert_eq!((hard_state.term, hard_state.voted_for), (3, Some(2)));
        }
    }
}

#[test]
fn a_node_votes_once_per_term_even_after_restarting() {
    let mut node = RaftNode::new(test_config(1, &[1, 2, 3]), DurableState::default());
    node.step(vote_request(2, 1, 1, (0, 0)));
    let ready = node.ready();
    assert_eq!(vote_answer(&ready), Some(true));
    node.step(vote_request(3, 1, 1, (0, 0)));
    assert_eq!(
        vote_answer(&node.ready()),
        Some(false),
        "already voted for 2"
    );
    node.step(vote_request(2, 1, 1, (0, 0)));
    assert_eq!(vote_answer(&node.ready()), Some(true), "a repeated request");
    // Restart from what was persisted: the vote survives.
    let durable = DurableState {
        hard_state: ready.hard_state.unwrap(),
        snapshot: None,
        log: Vec::new(),
    };
    let mut node = RaftNode::new(test_config(1, &[1, 2, 3]), durable);
    node.step(vote_request(3, 1, 1, (0, 0)));
    assert_eq!(
        vote_answer(&node.ready()),
        Some(false),
        "vote forgotten on restart"
    );
}

#[test]
fn a_higher_term_in_any_message_makes_a_leader_follow() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let term = cluster.node(1).status().term;
    cluster.node_mut(1).step(Message {
        from: 3,
        to: 1,
        term: term + 1,
        body: MessageBody::AppendEntriesResponse {
            success: false,
            match_index: 0,
            conflict_term: None,
            conflict_index: 0,
            read_round: 0,
        },
    });
    let status = cluster.node(1).status();
    assert_eq!(status.role, Role::Follower);
    assert_eq!(status.term, term + 1);
    assert_eq!(
        cluster.node_mut(1).propose(b"x".to_vec()),
        Err(RaftError::NotLeader { leader: None })
    );
}

#[test]
fn stale_terms_are_ignored_but_stale_requests_learn_the_current_term() {
    let mut node = RaftNode::new(test_config(1, &[1, 2, 3]), durable(5, &[1, 1]));
    node.step(Message {
        from: 2,
        to: 1,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: 2,
            prev_log_term: 1,
            entries: vec![ent(3, 3)],
            leader_commit: 3,
            read_round: 0,
        },
    });
    assert_eq!(terms_of(node.entries()), vec![1, 1], "stale entries taken");
    assert_eq!(node.status().commit_index, 0);
    let ready = node.ready();
    assert_eq!(ready.messages.len(), 1);
    assert_eq!(
        ready.messages[0].term, 5,
        "the stale leader must learn term 5"
    );
    assert!(matches!(
        ready.messages[0].body,
        MessageBody::AppendEntriesResponse { success: false, .. }
    ));
    // A stale response and a message to someone else change nothing.
    node.step(Message {
        from: 2,
        to: 1,
        term: 4,
        body: MessageBody::RequestVoteResponse { granted: true },
    });
    node.step(vote_request(2, 3, 9, (9, 9)));
    assert!(!node.has_ready());
    assert_eq!(node.status().term, 5);
}

// ---------------------------------------------------------------------------------------------
// Replication: Figure 7, bogus follower logs

/// The leader's log of Figure 7 (the leader is elected in term 8).
const FIGURE7_LEADER: [Term; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

/// Elects node 1 (log `leader`) with node 3's vote (a copy of its log) while node 2 (log
/// `follower`) is unreachable, then lets 1 and 2 talk; returns the cluster and how many times
/// node 2 rejected an AppendEntries (round trips spent backtracking).
fn converge(leader: &[Term], follower: &[Term], term: Term) -> (Cluster, usize) {
    let durable = vec![
        durable(term, leader),
        durable(term, follower),
        durable(term, leader),
    ];
    let mut cluster = Cluster::with_state(&[1, 2, 3], durable, |_| {});
    cluster.drop_rule = Box::new(|m| m.from == 2 || m.to == 2);
    cluster.elect(1);
    cluster.drop_rule = Box::new(|m| m.from == 3 || m.to == 3);
    cluster.tick(1);
    let mut rejections = 0;
    let mut budget = 1000;
    while let Some(msg) = cluster.queue.pop_front() {
        if let MessageBody::AppendEntriesResponse { success: false, .. } = msg.body {
            if msg.from == 2 {
                rejections += 1;
            }
        }
        cluster.deliver(msg);
        budget -= 1;
        assert!(budget > 0);
    }
    (cluster, rejections)
}

#[test]
fn figure7_followers_converge_with_one_round_trip_per_conflicting_term() {
    let cases: [(&str, &[Term], usize); 6] = [
        ("(a) missing one entry", &[1, 1, 1, 4, 4, 5, 5, 6, 6], 1),
        ("(b) missing many entries", &[1, 1, 1, 4], 1),
        ("(c) one extra entry", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),
        (
            "(d) extra entries of a later term",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
            0,
        ),
        ("(e) missing and extra of term 4", &[1, 1, 1, 4, 4, 4, 4], 2),
        (
            "(f) extra of terms 2 and 3",
            &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
            2,
        ),
    ];
    for (name, follower, expected_rejections) in cases {
        let (mut cluster, rejections) = converge(&FIGURE7_LEADER, follower, 7);
        assert_eq!(rejections, expected_rejections, "{name}: round trips");
        assert_eq!(cluster.log(2), cluster.log(1), "{name}: logs differ");
        let mut expected = FIGURE7_LEADER.to_vec();
        expected.push(8);
        assert_eq!(
            terms_of(&cluster.log(1)),
            expected,
            "{name}: leader log changed"
        );
        // The no-op commits everything, and the follower's disk holds exactly the leader's log.
        cluster.tick(1);
        cluster.deliver_all();
        assert_eq!(cluster.node(2).status().commit_index, 11, "{name}");
        assert_eq!(
            cluster.disks[&2].log,
            cluster.log(1),
            "{name}: disk differs"
        );
        assert_eq!(cluster.applied[&2].len(), 11, "{name}");
    }
}

#[test]
fn a_bogus_follower_log_is_replaced_and_new_writes_replicate() {
    // Follower tails of other terms than the leader's: older (the follower votes for the
    // leader) and newer (it must be outvoted by node 3).
    let leader: &[Term] = &[1, 1, 3, 3, 3];
    for follower in [&[1, 1, 2, 2, 2, 2, 2][..], &[1, 1, 4, 4][..]] {
        let (mut cluster, _) = converge(leader, follower, 4);
        assert_eq!(cluster.log(2), cluster.log(1));
        for i in 0..3 {
            cluster
                .node_mut(1)
                .propose(format!("write {i}").into_bytes())
                .unwrap();
        }
        cluster.process(1);
        cluster.deliver_all();
        cluster.tick(1);
        cluster.deliver_all();
        assert_eq!(cluster.log(2), cluster.log(1));
        assert_eq!(cluster.log(2).len(), 9);
        assert_eq!(cluster.node(2).status().commit_index, 9);
        let applied: Vec<_> = cluster.applied[&2].iter().map(|e| &e.payload).collect();
        assert_eq!(
            applied.last(),
            Some(&&EntryPayload::Command(b"write 2".to_vec()))
        );
    }
}

#[test]
fn a_duplicated_old_append_never_truncates_matching_entries() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(2, &[1, 1, 2, 2]));
    let old = Message {
        from: 1,
        to: 2,
        term: 2,
        body: MessageBody::AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![ent(2, 1), ent(3, 2)],
            leader_commit: 1,
            read_round: 0,
        },
    };
    node.step(old);
    assert_eq!(node.entries(), log_of_terms(&[1, 1, 2, 2]).as_slice());
    let ready = node.ready();
    assert!(ready.entries.is_empty(), "nothing to rewrite on disk");
    assert!(ready.messages.iter().any(|m| matches!(
        m.body,
        MessageBody::AppendEntriesResponse {
            success: true,
            match_index: 3,
            ..
        }
    )));
}

#[test]
fn followers_acknowledge_and_commit_only_what_the_leader_proved() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(2, &[1, 1, 2, 2]));
    // A heartbeat proving entries up to 2 only, with the leader's commit at 4.
    node.step(Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: 2,
            prev_log_term: 1,
            entries: Vec::new(),
            leader_commit: 4,
            read_round: 0,
        },
    });
    assert_eq!(
        node.status().commit_index,
        2,
        "entries 3 and 4 may still be replaced"
    );
}

// ---------------------------------------------------------------------------------------------
// Commit: Figure 8

/// Figure 8 up to (c): S1 leads term 4 and replicates its term-2 entry at index 2 to a
/// majority (S1, S2, S3) while its term-4 no-op reaches no one; S5, down, holds (2, term 3).
fn figure8(bugs: CoreBugs) -> Cluster {
    let durable = vec![
        durable(3, &[1, 2]),
        durable(3, &[1]),
        durable(3, &[1]),
        durable(3, &[1]),
        durable(3, &[1, 3]),
    ];
    let mut cluster = Cluster::with_state(&[1, 2, 3, 4, 5], durable, |config| {
        config.max_entries_per_message = 1;
        config.bugs = bugs;
    });
    cluster.crash(5);
    // Entries of term 4 are cut out of every message (as if the leader sent fewer), and S4
    // hears nothing from the leader.
    cluster.drop_rule = Box::new(|m| {
        let to = m.to;
        match &mut m.body {
            MessageBody::AppendEntries { entries, .. } => {
                entries.retain(|e| e.term != 4);
                to == 4
            }
            _ => false,
        }
    });
    cluster.elect(1);
    assert_eq!(cluster.node(1).status().term, 4);
    for _ in 0..3 {
        cluster.tick(1);
        cluster.deliver_all();
    }
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.log(id)[1],
            ent(2, 2),
            "S{id} holds the term-2 entry"
        );
    }
    cluster
}

/// Figure 8 (d): S1 crashes, S5 comes back and is elected with (2, term 3): it overwrites
/// index 2 on the others. That is only safe if nobody committed (2, term 2).
fn figure8_overwrite(cluster: &mut Cluster) {
    cluster.crash(1);
    cluster.restart(5);
    cluster.drop_rule = Box::new(|_| false);
    cluster.elect(5);
    cluster.tick(5);
    cluster.deliver_all();
}

#[test]
fn figure8_an_entry_of_an_earlier_term_is_not_committed_by_counting_replicas() {
    let mut cluster = figure8(CoreBugs::default());
    assert_eq!(cluster.node(1).status().commit_index, 0);
    figure8_overwrite(&mut cluster);
    for id in [2, 3, 4, 5] {
        assert_eq!(cluster.applied[&id][1].term, 3, "S{id}");
    }
}

#[test]
fn figure8_an_earlier_term_entry_commits_with_the_first_current_term_entry() {
    let mut cluster = figure8(CoreBugs::default());
    assert_eq!(cluster.node(1).status().commit_index, 0);
    // (e): the term-4 entry reaches a majority; it commits, and index 2 with it.
    cluster.drop_rule = Box::new(|_| false);
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(cluster.node(1).status().commit_index, 3);
    assert_eq!(cluster.applied[&1][1], ent(2, 2));
    assert_eq!(cluster.applied[&1][2].term, 4);
}

#[test]
fn planted_commit_old_term_bug_loses_a_committed_entry_in_figure8() {
    let mut cluster = figure8(CoreBugs {
        commit_old_term: true,
        ..CoreBugs::default()
    });
    assert_eq!(
        cluster.node(1).status().commit_index,
        2,
        "the bug commits by counting"
    );
    figure8_overwrite(&mut cluster);
    assert!(
        !std::mem::take(&mut cluster.safety_violations).is_empty(),
        "the planted bug went unnoticed"
    );
}

/// The check on drop is what holds every other test to state-machine safety: a violation
/// nobody took out fails the test that made it.
#[test]
#[should_panic(expected = "state-machine safety violated")]
fn a_cluster_dropped_with_a_safety_violation_fails_its_test() {
    let mut cluster = figure8(CoreBugs {
        commit_old_term: true,
        ..CoreBugs::default()
    });
    figure8_overwrite(&mut cluster);
    // No assertion here: the drop must find the entry the bug committed and (d) replaced.
}

#[test]
fn planted_skip_log_check_bug_breaks_log_matching() {
    let run = |bugs: CoreBugs| {
        let durable = vec![
            durable(4, &[1, 1, 3, 3]),
            durable(4, &[1, 2, 2]),
            durable(4, &[1, 1, 3, 3]),
        ];
        let mut cluster = Cluster::with_state(&[1, 2, 3], durable, |c| c.bugs = bugs);
        cluster.elect(1);
        cluster.tick(1);
        cluster.deliver_all();
        let violations = std::mem::take(&mut cluster.safety_violations);
        (cluster.log(1), cluster.log(2), violations)
    };
    let (leader, follower, violations) = run(CoreBugs::default());
    assert_eq!(leader, follower);
    assert!(violations.is_empty(), "{violations:?}");
    let (leader, follower, violations) = run(CoreBugs {
        skip_log_check: true,
        ..CoreBugs::default()
    });
    assert!(
        !violations.is_empty(),
        "the follower applies entries it never matched"
    );
    assert_eq!(
        follower.last().map(|e| e.term),
        leader.last().map(|e| e.term)
    );
    assert_ne!(
        leader, follower,
        "same last entry, different logs: log matching broken"
    );
}

// ---------------------------------------------------------------------------------------------
// ReadIndex

/// A 3-node cluster whose leader (node 1) has committed its no-op everywhere.
fn settled_cluster(bugs: CoreBugs) -> Cluster {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |config| {
        config.bugs = bugs
    });
    cluster.elect(1);
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(cluster.node(1).status().commit_index, 1);
    cluster
}

fn reads_of(cluster: &Cluster, id: NodeId) -> Vec<ReadState> {
    cluster.read_states.get(&id).cloned().unwrap_or_default()
}

#[test]
fn a_read_waits_for_a_majority_to_acknowledge_a_round_sent_after_it_arrived() {
    let mut cluster = settled_cluster(CoreBugs::default());
    // A heartbeat sent before the read arrives, delivered after: it proves nothing.
    cluster.tick(1);
    let early: Vec<Message> = cluster.queue.drain(..).collect();
    cluster.node_mut(1).read_index(7).unwrap();
    cluster.process(1);
    let round: Vec<Message> = cluster.queue.drain(..).collect();
    assert_eq!(
        round.len(),
        2,
        "one heartbeat per follower starts the read's round"
    );
    for msg in early {
        cluster.deliver(msg);
    }
    let answers: Vec<Message> = cluster.queue.drain(..).collect();
    for msg in answers {
        cluster.deliver(msg);
    }
    assert!(
        reads_of(&cluster, 1).is_empty(),
        "confirmed by an older round"
    );
    // The round reaches node 2 only; its answer makes a majority with the leader.
    cluster.deliver(round[0].clone());
    assert!(
        reads_of(&cluster, 1).is_empty(),
        "confirmed before any answer"
    );
    let answer = cluster.queue.pop_front().unwrap();
    assert_eq!(answer.from, 2);
    cluster.deliver(answer);
    assert_eq!(reads_of(&cluster, 1), vec![ReadState { id: 7, index: 1 }]);
}

#[test]
fn one_round_confirms_every_read_that_arrived_before_it() {
    let mut cluster = settled_cluster(CoreBugs::default());
    for id in 10..15 {
        cluster.node_mut(1).read_index(id).unwrap();
    }
    cluster.process(1);
    assert_eq!(cluster.queue.len(), 2, "one round for five reads");
    cluster.deliver_all();
    let ids: Vec<u64> = reads_of(&cluster, 1).iter().map(|r| r.id).collect();
    assert_eq!(ids, (10..15).collect::<Vec<_>>());
}

#[test]
fn a_read_before_the_new_leaders_first_commit_waits_for_the_noop() {
    let durable = vec![durable(1, &[1, 1]), durable(1, &[1, 1]), durable(1, &[1])];
    let mut cluster = Cluster::with_state(&[1, 2, 3], durable, |_| {});
    cluster.drop_rule = Box::new(|m| matches!(m.body, MessageBody::AppendEntries { .. }));
    cluster.elect(1);
    cluster.node_mut(1).read_index(3).unwrap();
    cluster.process(1);
    cluster.drop_rule = Box::new(|_| false);
    // A heartbeat round is acknowledged, but the commit index is not known yet.
    cluster.tick(1);
    let heartbeat_round: Vec<Message> = cluster.queue.drain(..).collect();
    assert!(reads_of(&cluster, 1).is_empty());
    for msg in heartbeat_round {
        cluster.deliver(msg);
    }
    cluster.deliver_all();
    let status = cluster.node(1).status();
    assert_eq!(status.commit_index, 3, "the no-op committed");
    assert_eq!(reads_of(&cluster, 1), vec![ReadState { id: 3, index: 3 }]);
}

#[test]
fn a_deposed_leader_fails_its_pending_reads() {
    let mut cluster = settled_cluster(CoreBugs::default());
    cluster.node_mut(1).read_index(5).unwrap();
    cluster.process(1);
    cluster.queue.clear();
    let term = cluster.node(1).status().term;
    cluster
        .node_mut(1)
        .step(vote_request(2, 1, term + 1, (1, term)));
    cluster.process(1);
    assert!(reads_of(&cluster, 1).is_empty());
    assert_eq!(cluster.failed_reads[&1], vec![5]);
    assert!(matches!(
        cluster.node_mut(1).read_index(6),
        Err(RaftError::NotLeader { .. })
    ));
}

/// Node 1 leads and is cut off; 2 and 3 elect 2 and commit a write; then 1 gets a read.
fn partitioned_old_leader_read(bugs: CoreBugs) -> (Cluster, LogIndex) {
    let mut cluster = settled_cluster(bugs);
    cluster.drop_rule = Box::new(|m| m.from == 1 || m.to == 1);
    cluster.elect(2);
    let (index, _) = cluster.node_mut(2).propose(b"new".to_vec()).unwrap();
    cluster.process(2);
    cluster.deliver_all();
    cluster.tick(2);
    cluster.deliver_all();
    assert!(cluster.node(2).status().commit_index >= index);
    cluster.node_mut(1).read_index(1).unwrap();
    cluster.process(1);
    for _ in 0..5 {
        cluster.tick(1);
        cluster.deliver_all();
    }
    (cluster, index)
}

#[test]
fn a_partitioned_old_leader_never_confirms_a_read() {
    let (cluster, _) = partitioned_old_leader_read(CoreBugs::default());
    assert!(reads_of(&cluster, 1).is_empty());
}

#[test]
fn planted_leader_local_reads_bug_serves_a_stale_read() {
    let (cluster, write_index) = partitioned_old_leader_read(CoreBugs {
        leader_local_reads: true,
        ..CoreBugs::default()
    });
    let reads = reads_of(&cluster, 1);
    assert_eq!(reads.len(), 1);
    assert!(
        reads[0].index < write_index,
        "the stale read misses a committed write"
    );
}

#[test]
fn a_single_node_cluster_commits_and_reads_alone() {
    let mut cluster = Cluster::new(&[1]);
    cluster.elect(1);
    let (index, term) = cluster.node_mut(1).propose(b"solo".to_vec()).unwrap();
    cluster.node_mut(1).read_index(9).unwrap();
    cluster.process(1);
    assert_eq!(cluster.node(1).status().commit_index, index);
    assert_eq!(cluster.applied[&1].last().unwrap().term, term);
    assert_eq!(reads_of(&cluster, 1), vec![ReadState { id: 9, index: 1 }]);
}

#[test]
fn the_leader_counts_and_applies_its_own_entries_only_once_durable() {
    let mut cluster = settled_cluster(CoreBugs::default());
    let (index, _) = cluster.node_mut(1).propose(b"w".to_vec()).unwrap();
    // The leader's Ready is taken but not yet fsynced.
    let ready = cluster.node_mut(1).ready();
    assert_eq!(ready.entries.len(), 1);
    let mut acks = Vec::new();
    for follower in [2, 3] {
        let msg = ready.messages.iter().find(|m| m.to == follower).unwrap();
        cluster.node_mut(follower).step(msg.clone());
        cluster.process(follower);
        acks.push(cluster.queue.pop_front().unwrap());
    }
    cluster.node_mut(1).step(acks.remove(0));
    assert_eq!(
        cluster.node(1).status().commit_index,
        index - 1,
        "one durable copy out of three, the leader's own not counted yet"
    );
    cluster.node_mut(1).step(acks.remove(0));
    assert_eq!(
        cluster.node(1).status().commit_index,
        index,
        "2 and 3 are a majority"
    );
    let ready = cluster.node_mut(1).ready();
    assert!(
        ready.committed_entries.is_empty(),
        "applied before the leader's own copy is durable"
    );
    cluster.node_mut(1).advance();
    let ready = cluster.node_mut(1).ready();
    assert_eq!(ready.committed_entries.last().map(|e| e.index), Some(index));
}

#[test]
fn a_matched_follower_gets_pipelined_appends_up_to_the_inflight_window() {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |config| {
        config.max_entries_per_message = 1;
        config.max_inflight_messages = 3;
    });
    cluster.elect(1);
    cluster.tick(1);
    cluster.deliver_all();
    for i in 0..5 {
        cluster.node_mut(1).propose(vec![i]).unwrap();
    }
    let ready = cluster.node_mut(1).ready();
    let to_2: Vec<_> = ready.messages.iter().filter(|m| m.to == 2).collect();
    assert_eq!(
        to_2.len(),
        3,
        "three messages in flight without waiting for answers"
    );
    let firsts: Vec<LogIndex> = to_2
        .iter()
        .map(|m| match &m.body {
            MessageBody::AppendEntries { entries, .. } => entries[0].index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(firsts, vec![2, 3, 4], "next_index advances optimistically");
    cluster.node_mut(1).advance();
    cluster.queue.extend(ready.messages);
    cluster.deliver_all();
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(
        cluster.log(2),
        cluster.log(1),
        "the window refills as acks arrive"
    );
    assert_eq!(cluster.node(2).status().commit_index, 6);
}

#[test]
fn a_stale_request_answered_in_a_later_term_confirms_no_read() {
    // Node 1 leads, sending many heartbeat rounds; one of its AppendEntries is delayed.
    let mut cluster = settled_cluster(CoreBugs::default());
    for _ in 0..30 {
        cluster.tick(1);
        cluster.deliver_all();
    }
    cluster.tick(1);
    let delayed = cluster.queue.iter().find(|m| m.to == 2).unwrap().clone();
    let MessageBody::AppendEntries { read_round, .. } = delayed.body else {
        panic!("{delayed:?}");
    };
    assert!(read_round > 30);
    cluster.queue.clear();
    // It restarts (numbering its rounds from 0 again) and leads a later term.
    cluster.crash(1);
    cluster.restart(1);
    cluster.elect(1);
    assert!(cluster.node(1).status().term > delayed.term);
    // A read whose round reaches nobody.
    cluster.node_mut(1).read_index(9).unwrap();
    cluster.process(1);
    cluster.queue.clear();
    // Node 2 answers the delayed request of the old term with the current term.
    cluster.deliver(delayed);
    let answer = cluster.queue.pop_front().unwrap();
    assert_eq!(answer.term, cluster.node(1).status().term);
    cluster.deliver(answer);
    assert!(
        reads_of(&cluster, 1).is_empty(),
        "a stale request's answer confirmed a read"
    );
}

// ---------------------------------------------------------------------------------------------
// Pre-vote and check-quorum

/// A 3-node cluster with pre-vote and check-quorum on (or both off), led by node 1, which has
/// committed its no-op everywhere.
fn settled_robust_cluster(on: bool) -> Cluster {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |c| {
        c.pre_vote = on;
        c.check_quorum = on;
    });
    cluster.elect(1);
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(cluster.node(1).status().commit_index, 1);
    cluster
}

/// Cuts node 3 off for ten election timeouts while everyone ticks, then heals; returns the
/// cluster, the leader's term before and node 3's highest term while cut off.
fn partition_and_rejoin_node3(on: bool) -> (Cluster, Term, Term) {
    let mut cluster = settled_robust_cluster(on);
    let term_before = cluster.node(1).status().term;
    cluster.drop_rule = Box::new(|m| m.from == 3 || m.to == 3);
    let mut isolated_term = 0;
    for _ in 0..100 {
        cluster.tick_all();
        isolated_term = isolated_term.max(cluster.node(3).status().term);
    }
    cluster.drop_rule = Box::new(|_| false);
    for _ in 0..60 {
        cluster.tick_all();
    }
    (cluster, term_before, isolated_term)
}

#[test]
fn a_rejoining_partitioned_node_does_not_bump_the_leaders_term() {
    let (cluster, term_before, isolated_term) = partition_and_rejoin_node3(true);
    // Cut off, node 3 only ever asked for pre-votes: its term never moved.
    assert_eq!(isolated_term, term_before);
    assert_eq!(cluster.leaders(), vec![1]);
    for id in [1, 2, 3] {
        let status = cluster.node(id).status();
        assert_eq!(status.term, term_before, "node {id}: {status:?}");
        assert_eq!(status.leader, Some(1), "node {id}: {status:?}");
    }
}

#[test]
fn without_pre_vote_a_rejoining_partitioned_node_deposes_the_leader() {
    // The contrast that shows the test above can fail: classic Raft lets the cut-off node
    // campaign its term up, and on rejoining that term forces a new election.
    let (cluster, term_before, isolated_term) = partition_and_rejoin_node3(false);
    assert!(isolated_term > term_before + 1);
    assert!(cluster.node(1).status().term > term_before);
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down_within_two_election_timeouts() {
    let mut cluster = settled_robust_cluster(true);
    cluster.node_mut(1).read_index(7).unwrap();
    cluster.process(1);
    cluster.drop_rule = Box::new(|m| m.from == 1 || m.to == 1);
    let election_ticks = cluster.configs[&1].election_ticks;
    let mut stepped_down_after = None;
    for tick in 1..=2 * election_ticks {
        cluster.tick(1);
        cluster.deliver_all();
        if cluster.node(1).status().role != Role::Leader {
            stepped_down_after = Some(tick);
            break;
        }
    }
    let stepped_down_after = stepped_down_after.expect("the cut-off leader kept leading");
    // It led for at least one full check-quorum period (it had heard from everyone before).
    assert!(stepped_down_after >= election_ticks);
    let status = cluster.node(1).status();
    assert_eq!(status.leader, None);
    assert_eq!(cluster.failed_reads[&1], vec![7]);
    assert!(matches!(
        cluster.node_mut(1).propose(b"x".to_vec()),
        Err(RaftError::NotLeader { leader: None })
    ));
}

#[test]
fn a_leader_that_hears_from_a_majority_keeps_leading() {
    let mut cluster = settled_robust_cluster(true);
    // Node 3 is gone, node 2 still answers: 2 of 3 is a majority.
    cluster.crash(3);
    let term = cluster.node(1).status().term;
    for _ in 0..100 {
        cluster.tick_all();
    }
    assert_eq!(cluster.leaders(), vec![1]);
    assert_eq!(cluster.node(1).status().term, term);
}

/// The answer `from` sent to `to` in `ready`, if any: (pre-vote?, granted, term).
fn vote_answer_to(ready: &Ready, to: NodeId) -> Option<(bool, bool, Term)> {
    ready
        .messages
        .iter()
        .filter(|m| m.to == to)
        .find_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted } => Some((false, granted, m.term)),
            MessageBody::PreVoteResponse { granted } => Some((true, granted, m.term)),
            _ => None,
        })
}

fn pre_vote_request(from: NodeId, to: NodeId, term: Term, last: (LogIndex, Term)) -> Message {
    Message {
        body: MessageBody::PreVote {
            last_log_index: last.0,
            last_log_term: last.1,
        },
        ..vote_request(from, to, term, last)
    }
}

#[test]
fn a_follower_that_heard_from_the_leader_within_an_election_timeout_refuses_votes() {
    let mut cluster = settled_robust_cluster(true);
    cluster.queue.clear();
    let term = cluster.node(2).status().term;
    let last = (
        cluster.node(2).status().last_index,
        cluster.node(2).entries().last().unwrap().term,
    );
    // Node 3 asks with a log as good as node 2's; node 2 heard from leader 1 just now.
    cluster
        .node_mut(2)
        .step(pre_vote_request(3, 2, term + 1, last));
    let ready = cluster.node_mut(2).ready();
    assert_eq!(vote_answer_to(&ready, 3), Some((true, false, term)));
    cluster.node_mut(2).step(vote_request(3, 2, term + 1, last));
    let ready = cluster.node_mut(2).ready();
    assert_eq!(vote_answer_to(&ready, 3), Some((false, false, term)));
    // Neither request moved node 2's term or made it forget its leader.
    assert_eq!(cluster.node(2).status().term, term);
    assert_eq!(cluster.node(2).status().leader, Some(1));
    cluster.node_mut(2).advance();

    // One election timeout without the leader: the lease is over, the pre-vote is granted
    // (with the term asked about) and changes nothing on node 2.
    for _ in 0..cluster.configs[&2].election_ticks {
        cluster.node_mut(2).tick();
    }
    let _ = cluster.node_mut(2).ready();
    cluster.node_mut(2).advance();
    cluster
        .node_mut(2)
        .step(pre_vote_request(3, 2, term + 1, last));
    let ready = cluster.node_mut(2).ready();
    assert_eq!(vote_answer_to(&ready, 3), Some((true, true, term + 1)));
    assert_eq!(cluster.node(2).status().term, term);
    assert_eq!(ready.hard_state, None);
}

#[test]
fn a_pre_vote_is_refused_to_a_node_whose_log_is_behind() {
    let mut cluster = settled_robust_cluster(true);
    cluster.queue.clear();
    let term = cluster.node(2).status().term;
    for _ in 0..cluster.configs[&2].election_ticks {
        cluster.node_mut(2).tick();
    }
    let _ = cluster.node_mut(2).ready();
    cluster.node_mut(2).advance();
    // Node 3 claims an empty log; node 2 holds the no-op of `term`.
    cluster
        .node_mut(2)
        .step(pre_vote_request(3, 2, term + 1, (0, 0)));
    let ready = cluster.node_mut(2).ready();
    assert_eq!(vote_answer_to(&ready, 3), Some((true, false, term)));
}

#[test]
fn a_pre_candidate_campaigns_only_after_a_majority_of_pre_votes() {
    let mut cluster = settled_robust_cluster(true);
    let term = cluster.node(1).status().term;
    // Leader 1 crashes; node 2 times out and asks for pre-votes without bumping its term.
    cluster.crash(1);
    for _ in 0..100 {
        cluster.tick(2);
        if cluster.node(2).status().role != Role::Follower {
            break;
        }
    }
    assert_eq!(cluster.node(2).status().role, Role::PreCandidate);
    assert_eq!(cluster.node(2).status().term, term);
    assert!(cluster
        .queue
        .iter()
        .all(|m| matches!(m.body, MessageBody::PreVote { .. }) && m.term == term + 1));
    // Node 3 (no leader for long enough: it never ticked, so make it forget the lease) grants.
    for _ in 0..cluster.configs[&3].election_ticks {
        cluster.node_mut(3).tick();
        if cluster.node(3).status().role != Role::Follower {
            break;
        }
    }
    cluster.node_mut(3).ready();
    cluster.node_mut(3).advance();
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![2]);
    assert_eq!(cluster.node(2).status().term, term + 1);
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer

#[test]
fn a_leader_hands_over_to_an_up_to_date_follower_without_an_election_timeout() {
    let mut cluster = settled_robust_cluster(true);
    let term = cluster.node(1).status().term;
    let (index, _) = cluster.node_mut(1).propose(b"before".to_vec()).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    assert!(cluster.node(1).status().commit_index >= index);
    let transferee = cluster.node_mut(1).transfer_leadership().unwrap();
    // Proposals are refused while handing over.
    assert!(matches!(
        cluster.node_mut(1).propose(b"during".to_vec()),
        Err(RaftError::NotLeader { leader: None })
    ));
    cluster.process(1);
    // No tick at all: the handover needs messages only (and the followers' leases are
    // waived for it).
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![transferee]);
    assert_eq!(cluster.node(transferee).status().term, term + 1);
    cluster.tick(transferee);
    cluster.deliver_all();
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.node(id).status().leader,
            Some(transferee),
            "node {id}"
        );
    }
    // Nothing committed was lost, and the new leader takes writes.
    assert!(cluster
        .log(transferee)
        .iter()
        .any(|e| e.payload == EntryPayload::Command(b"before".to_vec())));
    assert!(cluster
        .node_mut(transferee)
        .propose(b"after".to_vec())
        .is_ok());
}

#[test]
fn a_transfer_to_a_lagging_follower_first_brings_it_up_to_date() {
    let mut cluster = settled_robust_cluster(true);
    let term = cluster.node(1).status().term;
    // Both followers miss three writes.
    cluster.drop_rule = Box::new(|m| m.from == 1);
    for i in 0..3 {
        cluster.node_mut(1).propose(vec![i]).unwrap();
        cluster.process(1);
        cluster.deliver_all();
    }
    cluster.drop_rule = Box::new(|_| false);
    let last_index = cluster.node(1).status().last_index;
    let transferee = cluster.node_mut(1).transfer_leadership().unwrap();
    cluster.process(1);
    cluster.deliver_all();
    // Heartbeats repair the pipeline; the transferee campaigns only once it holds everything.
    for _ in 0..cluster.configs[&1].election_ticks {
        if cluster.leaders() == vec![transferee] {
            break;
        }
        cluster.tick(1);
        cluster.deliver_all();
    }
    assert_eq!(cluster.leaders(), vec![transferee]);
    assert_eq!(cluster.node(transferee).status().term, term + 1);
    assert!(
        cluster.log(transferee)[..last_index as usize] == cluster.log(1)[..last_index as usize]
    );
}

#[test]
fn an_unreachable_transferee_is_given_up_after_an_election_timeout() {
    let mut cluster = settled_robust_cluster(true);
    let transferee = cluster.node_mut(1).transfer_leadership().unwrap();
    cluster.drop_rule = Box::new(move |m| m.to == transferee);
    cluster.process(1);
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![1]);
    for _ in 0..cluster.configs[&1].election_ticks {
        cluster.tick(1);
        cluster.deliver_all();
    }
    // Still leading (the other follower answers), and taking writes again.
    assert_eq!(cluster.leaders(), vec![1]);
    assert!(cluster.node_mut(1).propose(b"again".to_vec()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Log compaction and InstallSnapshot

/// A 3-node cluster led by node 1 with small snapshot chunks; node 3 is down while `writes`
/// entries commit on 1 and 2, which then both compact their logs at their applied index.
fn compacted_while_node3_down(writes: usize, chunk_bytes: usize) -> (Cluster, LogIndex) {
    compacted_while_node3_down_keeping(writes, chunk_bytes, 0)
}

/// The same with a catch-up window of `keep` entries.
fn compacted_while_node3_down_keeping(
    writes: usize,
    chunk_bytes: usize,
    keep: u64,
) -> (Cluster, LogIndex) {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |c| {
        c.snapshot_chunk_bytes = chunk_bytes;
        c.compaction_keep_entries = keep;
    });
    cluster.elect(1);
    cluster.tick(1);
    cluster.deliver_all();
    cluster.crash(3);
    for i in 0..writes {
        cluster.node_mut(1).propose(vec![i as u8; 3]).unwrap();
        cluster.process(1);
        cluster.deliver_all();
    }
    cluster.tick(1);
    cluster.deliver_all();
    let applied = cluster.applied[&1].len() as LogIndex;
    assert_eq!(applied, writes as LogIndex + 1, "the no-op and every write");
    assert_eq!(cluster.applied[&2].len() as LogIndex, applied);
    cluster.compact(1, applied).unwrap();
    cluster.compact(2, applied).unwrap();
    (cluster, applied)
}

#[test]
fn compaction_keeps_only_the_suffix_and_the_snapshot_point() {
    let (mut cluster, index) = compacted_while_node3_down(5, 16);
    let node = cluster.node(1);
    assert!(node.entries().is_empty());
    assert_eq!(node.first_index(), index + 1);
    assert_eq!(node.term_at(index), Some(node.status().term));
    assert_eq!(node.term_at(index - 1), None, "compacted");
    assert_eq!(node.status().snapshot_index, index);
    assert_eq!(node.snapshot_meta().map(|m| m.index), Some(index));
    let (next, _) = cluster.node_mut(1).propose(b"after".to_vec()).unwrap();
    assert_eq!(next, index + 1);
    cluster.process(1);
    cluster.deliver_all();
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(cluster.node(2).status().commit_index, next);
    assert_eq!(cluster.log(1), cluster.log(2));
}

#[test]
fn compact_refuses_unapplied_already_compacted_or_mislabelled_snapshots() {
    let (mut cluster, index) = compacted_while_node3_down(3, 16);
    let term = cluster.node(1).status().term;
    let snapshot = |index, term| Snapshot {
        meta: SnapshotMeta { index, term },
        membership: None,
        data: Vec::new(),
    };
    assert_eq!(
        cluster.node_mut(1).compact(snapshot(index - 1, term)),
        Err(CompactError::AlreadyCompacted {
            index: index - 1,
            snapshot_index: index
        })
    );
    cluster.node_mut(1).propose(b"x".to_vec()).unwrap();
    assert_eq!(
        cluster.node_mut(1).compact(snapshot(index + 1, term)),
        Err(CompactError::NotApplied {
            index: index + 1,
            applied: index
        })
    );
    cluster.process(1);
    cluster.deliver_all();
    assert_eq!(
        cluster.node_mut(1).compact(snapshot(index + 1, term + 1)),
        Err(CompactError::TermMismatch {
            index: index + 1,
            term: term + 1,
            log_term: Some(term)
        })
    );
    assert_eq!(
        cluster.node(1).first_index(),
        index + 1,
        "refusals change nothing"
    );
    assert!(cluster.compact(1, index + 1).is_ok());
    assert_eq!(cluster.node(1).first_index(), index + 2);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot_in_chunks() {
    let (mut cluster, index) = compacted_while_node3_down(20, 16);
    let snapshot_len = cluster.disks[&1].snapshot.as_ref().unwrap().data.len();
    cluster.restart(3);
    for _ in 0..3 {
        cluster.tick_all();
    }
    let node3 = cluster.node(3).status();
    assert_eq!(node3.snapshot_index, index);
    assert_eq!(node3.commit_index, index);
    assert_eq!(
        cluster.applied[&3], cluster.applied[&1],
        "the state machine restored from the snapshot"
    );
    assert_eq!(cluster.disks[&3].snapshot, cluster.disks[&1].snapshot);
    assert!(
        cluster.chunks_delivered[&3] >= snapshot_len.div_ceil(16),
        "{} chunks for {snapshot_len} bytes",
        cluster.chunks_delivered[&3]
    );
    // Replication continues after the snapshot.
    let (next, _) = cluster.node_mut(1).propose(b"after".to_vec()).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    cluster.tick_all();
    assert_eq!(cluster.node(3).status().commit_index, next);
    assert_eq!(cluster.log(3), cluster.log(1));
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
}

#[test]
fn a_snapshot_transfer_survives_lost_chunks() {
    let (mut cluster, index) = compacted_while_node3_down(20, 8);
    cluster.restart(3);
    // Every third chunk is lost on the way; the leader resends at heartbeats.
    let lost = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counter = lost.clone();
    cluster.drop_rule = Box::new(move |m| {
        if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            counter.set(counter.get() + 1);
            counter.get().is_multiple_of(3)
        } else {
            false
        }
    });
    for _ in 0..200 {
        cluster.tick_all();
        if cluster.node(3).status().snapshot_index == index {
            break;
        }
    }
    assert_eq!(cluster.node(3).status().snapshot_index, index);
    assert!(lost.get() >= 3, "chunks were lost");
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
}

/// An InstallSnapshot from node 1 to `to`, in `term`.
fn chunk(
    to: NodeId,
    term: Term,
    meta: SnapshotMeta,
    offset: u64,
    data: &[u8],
    done: bool,
) -> Message {
    Message {
        from: 1,
        to,
        term,
        body: MessageBody::InstallSnapshot {
            meta,
            membership: None,
            offset,
            data: data.to_vec(),
            done,
        },
    }
}

/// The InstallSnapshotResponse in a Ready: (next_offset, installed, match_index).
fn snapshot_answer(ready: &Ready) -> Option<(u64, bool, LogIndex)> {
    ready.messages.iter().find_map(|m| match m.body {
        MessageBody::InstallSnapshotResponse {
            next_offset,
            installed,
            match_index,
            ..
        } => Some((next_offset, installed, match_index)),
        _ => None,
    })
}

#[test]
fn chunks_out_of_order_are_ignored_and_offset_zero_restarts_assembly() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(2, &[1, 1]));
    let meta = SnapshotMeta { index: 6, term: 2 };
    let entries = log_of_terms(&[1, 1, 2, 2, 2, 2]);
    let data = serde_json::to_vec(&entries).unwrap();
    let (a, b) = data.split_at(data.len() / 2);
    node.step(chunk(2, 2, meta, 0, a, false));
    assert_eq!(
        snapshot_answer(&node.ready()),
        Some((a.len() as u64, false, 0))
    );
    node.advance();
    // A chunk beyond what was assembled (one was lost): ignored, the expected offset resent.
    node.step(chunk(2, 2, meta, a.len() as u64 + 1, &b[1..], true));
    let ready = node.ready();
    assert_eq!(snapshot_answer(&ready), Some((a.len() as u64, false, 0)));
    assert!(ready.snapshot.is_none());
    node.advance();
    // The leader restarts the transfer: assembly starts again from scratch.
    node.step(chunk(2, 2, meta, 0, a, false));
    node.ready();
    node.advance();
    node.step(chunk(2, 2, meta, a.len() as u64, b, true));
    let ready = node.ready();
    assert_eq!(snapshot_answer(&ready), Some((data.len() as u64, true, 6)));
    let installed = ready.snapshot.expect("installed");
    assert_eq!(installed.meta, meta);
    assert_eq!(installed.data, data, "assembled in order, once");
    node.advance();
    assert_eq!(node.status().commit_index, 6);
    assert_eq!(node.status().last_index, 6);
    assert!(node.entries().is_empty(), "the old log is dropped");
    assert_eq!(node.term_at(6), Some(2));
}

#[test]
fn the_installed_answer_leaves_only_with_the_ready_that_carries_the_snapshot() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(1, &[1]));
    // A Ready taken (being persisted by the driver) when the snapshot arrives.
    node.step(chunk(
        2,
        1,
        SnapshotMeta { index: 1, term: 1 },
        0,
        b"x",
        true,
    ));
    let first = node.ready();
    assert_eq!(first.snapshot, None, "already covered by the log");
    let meta = SnapshotMeta { index: 9, term: 1 };
    node.step(chunk(2, 1, meta, 0, b"state", true));
    node.advance();
    let ready = node.ready();
    assert_eq!(ready.snapshot.as_ref().map(|s| s.meta), Some(meta));
    assert_eq!(snapshot_answer(&ready), Some((5, true, 9)));
    assert!(ready.committed_entries.is_empty());
    node.advance();
    assert!(!node.has_ready());
}

#[test]
fn a_snapshot_the_follower_log_already_holds_is_acknowledged_without_install() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(2, &[1, 1, 2, 2]));
    node.step(chunk(
        2,
        2,
        SnapshotMeta { index: 3, term: 2 },
        0,
        b"abc",
        false,
    ));
    let ready = node.ready();
    assert_eq!(ready.snapshot, None);
    assert_eq!(snapshot_answer(&ready), Some((0, true, 3)));
    assert_eq!(
        terms_of(node.entries()),
        vec![1, 1, 2, 2],
        "entries after the snapshot are kept"
    );
    assert_eq!(node.status().commit_index, 3, "the snapshot is committed");
    assert_eq!(
        ready.committed_entries.len(),
        3,
        "applied from the log, not the snapshot"
    );
}

#[test]
fn a_snapshot_older_than_the_commit_index_never_moves_commit_back() {
    let mut disk = durable(2, &[1, 1, 2, 2, 2]);
    disk.hard_state.commit = 5;
    let mut config = test_config(2, &[1, 2, 3]);
    config.applied = 5;
    let mut node = RaftNode::new(config, disk);
    // A snapshot at 4 whose term the log does not have there (a bogus one, or the log of a
    // deposed leader): older than our commit index, so never installed.
    node.step(chunk(
        2,
        2,
        SnapshotMeta { index: 4, term: 1 },
        0,
        b"old",
        true,
    ));
    let ready = node.ready();
    assert_eq!(ready.snapshot, None);
    assert_eq!(snapshot_answer(&ready), Some((0, true, 4)));
    assert_eq!(node.status().commit_index, 5);
    assert_eq!(node.entries().len(), 5);
}

#[test]
fn a_conflicting_log_is_replaced_by_the_snapshot_without_losing_commits() {
    // Our entries 3..4 are of a deposed leader's term 2; the leader's snapshot ends at 4@3.
    let mut disk = durable(3, &[1, 1, 2, 2]);
    disk.hard_state.commit = 2;
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), disk);
    let meta = SnapshotMeta { index: 4, term: 3 };
    node.step(chunk(2, 3, meta, 0, b"s", true));
    let ready = node.ready();
    assert_eq!(ready.snapshot.map(|s| s.meta), Some(meta));
    assert_eq!(node.status().commit_index, 4);
    assert_eq!(node.term_at(4), Some(3));
    assert_eq!(node.term_at(3), None);
    // The leader continues after the snapshot.
    node.step(Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: 4,
            prev_log_term: 3,
            entries: vec![ent(5, 3)],
            leader_commit: 5,
            read_round: 0,
        },
    });
    let ready = node.ready();
    assert_eq!(ready.entries, vec![ent(5, 3)]);
    node.advance();
    assert_eq!(node.ready().committed_entries, vec![ent(5, 3)]);
}

#[test]
fn an_append_reaching_into_the_followers_snapshot_matches_it() {
    let mut node = RaftNode::new(test_config(2, &[1, 2, 3]), durable(1, &[]));
    node.step(chunk(
        2,
        1,
        SnapshotMeta { index: 5, term: 1 },
        0,
        b"s",
        true,
    ));
    node.ready();
    node.advance();
    // A leader probing from below our snapshot: the compacted part is committed, so matches.
    node.step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_log_index: 3,
            prev_log_term: 1,
            entries: log_of_terms(&[1, 1, 1, 1])[3..].to_vec(),
            leader_commit: 5,
            read_round: 0,
        },
    });
    let ready = node.ready();
    let ack = ready.messages.iter().find_map(|m| match m.body {
        MessageBody::AppendEntriesResponse {
            success,
            match_index,
            ..
        } => Some((success, match_index)),
        _ => None,
    });
    assert_eq!(ack, Some((true, 5)));
    assert!(
        ready.entries.is_empty(),
        "entries inside the snapshot are skipped"
    );
}

#[test]
fn a_node_restarts_from_its_snapshot_and_log_suffix() {
    let (mut cluster, index) = compacted_while_node3_down(6, 16);
    for i in 0..3 {
        cluster.node_mut(1).propose(vec![b'z', i]).unwrap();
        cluster.process(1);
        cluster.deliver_all();
    }
    cluster.tick(1);
    cluster.deliver_all();
    let log_before = cluster.log(1);
    let applied_before = cluster.applied[&1].clone();
    assert_eq!(log_before.first().map(|e| e.index), Some(index + 1));
    cluster.crash(1);
    cluster.crash(2);
    cluster.restart(1);
    cluster.restart(2);
    cluster.restart(3);
    let node = cluster.node(1);
    assert_eq!(node.first_index(), index + 1);
    assert_eq!(node.entries(), log_before.as_slice());
    assert!(node.status().commit_index >= index);
    cluster.elect(2);
    for _ in 0..5 {
        cluster.tick_all();
    }
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.applied[&id][..applied_before.len()],
            applied_before[..]
        );
    }
    assert_eq!(cluster.node(3).status().snapshot_index, index);
}

#[test]
fn stale_snapshot_answers_are_ignored_and_stale_chunks_learn_the_term() {
    let (mut cluster, index) = compacted_while_node3_down(10, 4);
    cluster.restart(3);
    let term = cluster.node(1).status().term;
    // Node 1's heartbeat finds node 3 behind its snapshot and sends the first chunk, whose
    // answer is lost.
    cluster.drop_rule = Box::new(|m| matches!(m.body, MessageBody::InstallSnapshotResponse { .. }));
    cluster.tick(1);
    cluster.deliver_all();
    assert_eq!(cluster.chunks_delivered[&3], 1);
    cluster.drop_rule = Box::new(|_| false);
    let answer = |meta, next_offset, installed, match_index| Message {
        from: 3,
        to: 1,
        term,
        body: MessageBody::InstallSnapshotResponse {
            meta,
            next_offset,
            installed,
            match_index,
        },
    };
    // An answer asking for the chunk already on its way (the answer to a duplicate): it is
    // not sent twice.
    let current = cluster.node(1).snapshot_meta().unwrap();
    cluster.node_mut(1).step(answer(current, 0, false, 0));
    assert!(!cluster.node(1).has_ready());
    // An answer about another snapshot: no chunk is sent for it.
    let other = SnapshotMeta {
        index: index - 1,
        term,
    };
    cluster.node_mut(1).step(answer(other, 4, false, 0));
    assert!(!cluster.node(1).has_ready());
    // An old snapshot installed: proves the prefix only; the transfer goes on.
    cluster.node_mut(1).step(answer(other, 0, true, index - 1));
    let ready = cluster.node_mut(1).ready();
    assert!(!ready
        .messages
        .iter()
        .any(|m| m.to == 3 && matches!(m.body, MessageBody::AppendEntries { .. })));
    cluster.node_mut(1).advance();
    // A request of an older term: answered in ours, so its sender learns it.
    let stale = chunk(3, term - 1, SnapshotMeta { index, term }, 0, b"x", true);
    cluster.node_mut(3).step(Message { from: 1, ..stale });
    let ready = cluster.node_mut(3).ready();
    assert!(ready.snapshot.is_none());
    assert_eq!(snapshot_answer(&ready), Some((0, false, 0)));
    assert!(ready.messages.iter().all(|m| m.term == term));
    cluster.node_mut(3).advance();
    // The real transfer still completes.
    for _ in 0..100 {
        cluster.tick_all();
        if cluster.node(3).status().snapshot_index == index {
            break;
        }
    }
    assert_eq!(cluster.node(3).status().snapshot_index, index);
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
}

/// One write proposed on node 1, committed and applied everywhere reachable.
fn write_through_1(cluster: &mut Cluster, command: &[u8]) -> LogIndex {
    let (index, _) = cluster.node_mut(1).propose(command.to_vec()).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    cluster.tick(1);
    cluster.deliver_all();
    index
}

#[test]
fn a_snapshot_transfer_stays_pinned_across_compactions_and_completes() {
    let (mut cluster, first_snapshot) = compacted_while_node3_down(20, 4);
    let snapshot_len = cluster.disks[&1].snapshot.as_ref().unwrap().data.len() as u64;
    assert!(snapshot_len > 40, "many chunks: {snapshot_len} bytes");
    cluster.restart(3);
    // Record every chunk node 3 receives: (snapshot, offset).
    let chunks = std::rc::Rc::new(std::cell::RefCell::new(Vec::<(SnapshotMeta, u64)>::new()));
    let seen = chunks.clone();
    cluster.drop_rule = Box::new(move |m| {
        if let MessageBody::InstallSnapshot { meta, offset, .. } = m.body {
            if m.to == 3 {
                seen.borrow_mut().push((meta, offset));
            }
        }
        false
    });
    // The leader takes a write and compacts at its applied index after every chunk node 3
    // receives, far more often than the transfer takes: it used to restart at each one.
    let mut installed_first = false;
    for i in 0..20_000u32 {
        let Some(msg) = cluster.queue.pop_front() else {
            cluster.tick(1);
            continue;
        };
        let chunk = matches!(msg.body, MessageBody::InstallSnapshot { .. });
        cluster.deliver(msg);
        if chunk {
            cluster
                .node_mut(1)
                .propose(i.to_be_bytes().to_vec())
                .unwrap();
            cluster.process(1);
            let applied = cluster.applied[&1].len() as LogIndex;
            if applied > cluster.node(1).status().snapshot_index {
                cluster.compact(1, applied).unwrap();
            }
        }
        if cluster.node(3).status().snapshot_index >= first_snapshot {
            installed_first = true;
            break;
        }
    }
    assert!(installed_first, "the first transfer never completed");
    assert_eq!(
        cluster.node(3).status().snapshot_index,
        first_snapshot,
        "node 3 installed the snapshot its transfer started with"
    );
    let chunks = chunks.borrow().clone();
    let first: Vec<u64> = chunks
        .iter()
        .filter(|(meta, _)| meta.index == first_snapshot)
        .map(|&(_, offset)| offset)
        .collect();
    assert!(
        first.windows(2).all(|w| w[0] <= w[1]),
        "the pinned transfer never went back: {first:?}"
    );
    assert!(
        cluster.node(1).snapshot_meta().unwrap().index > first_snapshot + 10,
        "the leader compacted many times meanwhile"
    );
    assert!(
        chunks.iter().all(|(meta, _)| meta.index == first_snapshot),
        "nothing but the pinned snapshot was sent during its transfer"
    );
    // Once the leader stops compacting, node 3 continues after it: with the leader's newer
    // snapshot, since the entries after the first one are compacted.
    for _ in 0..100 {
        cluster.tick_all();
    }
    let leader_snapshot = cluster.node(1).snapshot_meta().unwrap();
    assert_eq!(
        cluster.node(3).status().snapshot_index,
        leader_snapshot.index
    );
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
    assert_eq!(cluster.log(3), cluster.log(1));
}

#[test]
fn a_follower_inside_the_catch_up_window_is_sent_entries_not_the_snapshot() {
    // Node 3 holds only the no-op at 1; the leader compacts at 9 keeping 2..=9.
    let (mut cluster, index) = compacted_while_node3_down_keeping(8, 4, 8);
    let leader = cluster.node(1);
    assert_eq!(leader.snapshot_meta().map(|m| m.index), Some(index));
    assert_eq!(leader.status().snapshot_index, index);
    assert_eq!(
        leader.first_index(),
        index - 7,
        "eight entries kept up to the snapshot's index"
    );
    assert_eq!(leader.entries().len(), 8);
    assert_eq!(
        cluster.disks[&1].log,
        vec![],
        "the durable log still starts after the snapshot"
    );
    cluster.restart(3);
    for _ in 0..3 {
        cluster.tick_all();
    }
    assert_eq!(cluster.chunks_delivered.get(&3), None, "no snapshot sent");
    let node3 = cluster.node(3).status();
    assert_eq!(node3.snapshot_index, 0);
    assert_eq!(node3.commit_index, index);
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
    assert_eq!(
        cluster.log(3)[index as usize - 8..],
        cluster.log(1)[..],
        "the window's entries, replicated"
    );
}

#[test]
fn a_follower_behind_the_catch_up_window_is_sent_the_snapshot() {
    let (mut cluster, index) = compacted_while_node3_down_keeping(20, 16, 10);
    assert_eq!(cluster.node(1).first_index(), index - 9);
    cluster.restart(3);
    for _ in 0..5 {
        cluster.tick_all();
    }
    assert!(cluster.chunks_delivered[&3] > 0);
    let node3 = cluster.node(3);
    assert_eq!(node3.status().snapshot_index, index);
    assert_eq!(
        node3.first_index(),
        index + 1,
        "an installed snapshot keeps no window"
    );
    assert_eq!(cluster.applied[&3], cluster.applied[&1]);
}

#[test]
fn the_catch_up_window_edge_keeps_its_term_for_the_consistency_check() {
    let (mut cluster, index) = compacted_while_node3_down_keeping(8, 4, 4);
    let term = cluster.node(1).status().term;
    let start = index - 4;
    let node = cluster.node(1);
    assert_eq!(node.first_index(), start + 1);
    assert_eq!(node.term_at(start), Some(term), "the edge keeps its term");
    assert_eq!(node.term_at(start - 1), None, "before the edge: compacted");
    assert_eq!(node.term_at(index), Some(term), "the snapshot point's term");
    assert_eq!(node.entry(start), None);
    assert!(node.entry(start + 1).is_some());
    // Node 2 has the same window: an append anchored at its edge matches, one anchored
    // before it is inside its snapshot (committed), so it matches too.
    for prev in [start, start - 2] {
        cluster.node_mut(2).step(Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::AppendEntries {
                prev_log_index: prev,
                prev_log_term: term,
                entries: Vec::new(),
                leader_commit: index,
                read_round: 0,
            },
        });
        let ready = cluster.node_mut(2).ready();
        let ack = ready.messages.iter().find_map(|m| match m.body {
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                ..
            } => Some((success, match_index)),
            _ => None,
        });
        assert_eq!(ack, Some((true, index)), "anchored at {prev}");
        assert!(ready.entries.is_empty());
        cluster.node_mut(2).advance();
    }
    // A second compaction moves the edge; the window never grows back.
    let next = write_through_1(&mut cluster, b"more");
    cluster.compact(1, next).unwrap();
    assert_eq!(cluster.node(1).first_index(), next - 3);
    assert_eq!(cluster.node(1).term_at(next - 4), Some(term));
    // Restarting drops the window: the node has only what its disk has.
    cluster.crash(1);
    cluster.restart(1);
    assert_eq!(cluster.node(1).first_index(), next + 1);
    assert_eq!(cluster.node(1).term_at(next), Some(term));
}

#[test]
fn a_follower_restarted_with_an_empty_data_dir_catches_up_from_the_log() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    for i in 0..5u8 {
        cluster.node_mut(1).propose(vec![i]).unwrap();
    }
    cluster.deliver_all();
    assert_eq!(cluster.log(3), cluster.log(1));
    // Node 3 loses its data dir and restarts empty, before the leader compacted anything: the
    // leader still holds the whole log, and believes node 3 matches all of it.
    cluster.crash(3);
    cluster.disks.insert(3, DurableState::default());
    cluster.restart(3);
    cluster.node_mut(1).propose(b"after".to_vec()).unwrap();
    for _ in 0..3 * cluster.configs[&1].heartbeat_ticks {
        // Panics ("never went quiet") if leader and follower reject each other in a loop.
        cluster.tick_all();
    }
    assert_eq!(cluster.log(3), cluster.log(1));
    assert_eq!(
        cluster.node(3).status().commit_index,
        cluster.node(1).status().commit_index
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 13: pre-candidates, stale handovers, bounded reads

#[test]
fn a_pre_candidate_grants_a_real_vote_in_its_own_term_when_it_has_not_voted() {
    let durable = vec![durable(2, &[1]), durable(2, &[1]), durable(2, &[1])];
    let mut cluster = Cluster::with_state(&[1, 2, 3], durable, |c| c.pre_vote = true);
    for _ in 0..100 {
        cluster.tick(3);
        if cluster.node(3).status().role == Role::PreCandidate {
            break;
        }
    }
    assert_eq!(cluster.node(3).status().role, Role::PreCandidate);
    assert_eq!(
        cluster.node(3).status().term,
        2,
        "a pre-vote changes no term"
    );
    cluster.queue.clear();
    // Node 2 campaigns in term 2 (it got there first): node 3 has voted for no one in it.
    cluster.node_mut(3).step(vote_request(2, 3, 2, (1, 1)));
    let ready = cluster.node_mut(3).ready();
    assert_eq!(vote_answer(&ready), Some(true), "{:?}", ready.messages);
    cluster.node_mut(3).advance();
    // And it keeps to that one vote in term 2.
    cluster.node_mut(3).step(vote_request(1, 3, 2, (1, 1)));
    let ready = cluster.node_mut(3).ready();
    assert_eq!(vote_answer(&ready), Some(false));
    cluster.node_mut(3).advance();
}

#[test]
fn a_timeout_now_delayed_past_an_abandoned_transfer_starts_no_election() {
    let mut cluster = settled_robust_cluster(true);
    let term = cluster.node(1).status().term;
    // Every TimeoutNow is held back in the network.
    let held: std::rc::Rc<std::cell::RefCell<Vec<Message>>> = Default::default();
    let hold = held.clone();
    cluster.drop_rule = Box::new(move |m| {
        let timeout_now = matches!(m.body, MessageBody::TimeoutNow { .. });
        if timeout_now {
            hold.borrow_mut().push(m.clone());
        }
        timeout_now
    });
    let transferee = cluster.node_mut(1).transfer_leadership().unwrap();
    cluster.process(1);
    cluster.deliver_all();
    for _ in 0..=cluster.configs[&1].election_ticks {
        cluster.tick(1);
        cluster.deliver_all();
    }
    assert!(
        cluster.node_mut(1).propose(b"again".to_vec()).is_ok(),
        "the transfer was not abandoned"
    );
    cluster.process(1);
    cluster.deliver_all();
    assert!(!held.borrow().is_empty());
    // The handover's TimeoutNow arrives long after it was given up.
    cluster.drop_rule = Box::new(|_| false);
    let late: Vec<Message> = held.borrow_mut().drain(..).collect();
    for msg in late {
        cluster.deliver(msg);
    }
    cluster.deliver_all();
    assert_eq!(
        cluster.node(transferee).status().term,
        term,
        "needless election"
    );
    assert_eq!(cluster.leaders(), vec![1]);
}

#[test]
fn a_cut_off_leader_holds_a_bounded_number_of_pending_reads() {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |c| {
        c.max_pending_reads = 3
    });
    cluster.elect(1);
    cluster.tick(1);
    cluster.deliver_all();
    // Without check-quorum the leader keeps leading, and its reads are never confirmed.
    cluster.drop_rule = Box::new(|m| m.from == 1 || m.to == 1);
    for id in 0..3 {
        cluster.node_mut(1).read_index(id).unwrap();
    }
    assert_eq!(
        cluster.node_mut(1).read_index(3),
        Err(RaftError::TooManyPendingReads { limit: 3 })
    );
    // A deposed leader fails the three: the bound frees again.
    cluster.process(1);
    let term = cluster.node(1).status().term;
    cluster.drop_rule = Box::new(|_| false);
    cluster
        .node_mut(1)
        .step(vote_request(2, 1, term + 1, (1, term)));
    cluster.process(1);
    assert_eq!(cluster.failed_reads[&1], vec![0, 1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Membership changes: single-server changes with learners (dissertation ch. 4)

impl Cluster {
    /// Starts a node that joins: an empty disk and an empty initial configuration.
    fn add_joining_node(&mut self, id: NodeId) {
        let mut config = test_config(id, &[]);
        config.compaction_keep_entries = self.configs[&self.members[0]].compaction_keep_entries;
        self.members.push(id);
        self.configs.insert(id, config);
        self.disks.insert(id, DurableState::default());
        self.restart(id);
    }

    fn change(&mut self, leader: NodeId, change: ConfChange) -> Result<LogIndex, ConfChangeError> {
        let (index, _) = self.node_mut(leader).propose_conf_change(change)?;
        self.process(leader);
        Ok(index)
    }

    fn voters(&self, id: NodeId) -> Vec<NodeId> {
        self.node(id).membership().voters().collect()
    }
}

fn add_learner(id: NodeId) -> ConfChange {
    ConfChange::AddLearner {
        id,
        context: format!("node {id}").into_bytes(),
    }
}

/// Three voters with a leader (1) that committed its term, plus a learner 4 caught up.
fn cluster_with_learner() -> Cluster {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.add_joining_node(4);
    cluster.change(1, add_learner(4)).unwrap();
    cluster.deliver_all();
    for _ in 0..3 {
        cluster.tick_all();
    }
    assert_eq!(
        cluster.node(4).membership().learners().collect::<Vec<_>>(),
        vec![4]
    );
    cluster
}

#[test]
fn a_joining_node_learns_every_member_from_the_entry_that_adds_it() {
    let cluster = cluster_with_learner();
    let learned = cluster.node(4).membership().clone();
    assert_eq!(&learned, cluster.node(1).membership());
    assert_eq!(cluster.voters(4), vec![1, 2, 3]);
    assert_eq!(
        learned.members[&4].context,
        b"node 4".to_vec(),
        "the context travels with the configuration"
    );
    assert_eq!(
        cluster.node(4).status().commit_index,
        cluster.node(1).status().commit_index
    );
}

#[test]
fn a_configuration_is_in_force_once_appended_and_reverts_when_its_entry_is_replaced() {
    // In force on a follower as soon as appended, before it commits.
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.add_joining_node(4);
    cluster.drop_rule = Box::new(|m| m.to == 1);
    cluster.change(1, add_learner(4)).unwrap();
    assert!(
        cluster.node(1).membership().contains(4),
        "in force on the leader at once"
    );
    cluster.deliver_all();
    let follower = cluster.node(2).status();
    assert!(
        follower.membership.contains(4),
        "in force on a follower once appended"
    );
    assert!(!follower.membership_committed);

    // An uncommitted configuration entry replaced by a new leader's log is no longer in force.
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.add_joining_node(4);
    cluster.drop_rule = Box::new(|m| m.to == 1 || m.from == 1);
    cluster.change(1, add_learner(4)).unwrap();
    assert!(cluster.node(1).membership().contains(4));
    cluster.elect(3);
    cluster.node_mut(3).propose(b"x".to_vec()).unwrap();
    cluster.tick_all();
    cluster.drop_rule = Box::new(|_| false);
    for _ in 0..3 {
        cluster.tick_all();
    }
    assert_eq!(cluster.leaders(), vec![3]);
    assert_eq!(cluster.log(1), cluster.log(3));
    assert!(
        !cluster.node(1).membership().contains(4),
        "node 1's configuration entry was replaced: {:?}",
        cluster.log(1)
    );
    assert_eq!(cluster.voters(1), vec![1, 2, 3]);
    assert_eq!(cluster.node(1).status().membership_index, 0);
}

#[test]
fn a_leader_takes_one_change_at_a_time_and_only_after_committing_in_its_term() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    // Elected, but its no-op not committed yet: no change.
    for _ in 0..100 {
        cluster.tick(1);
        if cluster.node(1).status().role != Role::Follower {
            break;
        }
    }
    let votes: Vec<Message> = cluster.queue.drain(..).collect();
    for m in votes {
        cluster.deliver(m);
    }
    // Deliver vote responses only, holding the no-op's acknowledgements.
    cluster.drop_rule = Box::new(|m| matches!(m.body, MessageBody::AppendEntriesResponse { .. }));
    cluster.deliver_all();
    assert_eq!(cluster.node(1).status().role, Role::Leader);
    assert_eq!(
        cluster.change(1, add_learner(4)),
        Err(ConfChangeError::LeaderNotReady)
    );
    cluster.drop_rule = Box::new(|_| false);
    cluster.tick_all();
    cluster.add_joining_node(4);
    cluster.add_joining_node(5);
    // Hold the change uncommitted: a second one is refused.
    cluster.drop_rule = Box::new(|m| m.from == 1);
    let first = cluster.change(1, add_learner(4)).unwrap();
    assert_eq!(
        cluster.change(1, add_learner(5)),
        Err(ConfChangeError::InFlight { index: first })
    );
    cluster.drop_rule = Box::new(|_| false);
    cluster.tick_all();
    assert!(cluster.node(1).status().membership_committed);
    cluster.change(1, add_learner(5)).unwrap();
    assert!(cluster.node(1).membership().contains(5));
    // Followers refuse with a hint.
    assert_eq!(
        cluster
            .node_mut(2)
            .propose_conf_change(ConfChange::Remove { id: 5 }),
        Err(ConfChangeError::NotLeader { leader: Some(1) })
    );
}

#[test]
fn two_changes_in_flight_are_accepted_only_with_the_planted_bug() {
    let mut cluster = Cluster::with_state(&[1, 2, 3], vec![DurableState::default(); 3], |c| {
        c.bugs.two_changes_in_flight = true
    });
    cluster.elect(1);
    cluster.add_joining_node(4);
    cluster.add_joining_node(5);
    cluster.drop_rule = Box::new(|m| m.from == 1);
    cluster.change(1, add_learner(4)).unwrap();
    assert!(cluster.change(1, add_learner(5)).is_ok());
}

#[test]
fn a_learner_is_promoted_only_once_caught_up_and_never_counts_before() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    // Learner 5 was added but never answers: it cannot be promoted.
    cluster.add_joining_node(5);
    cluster.crash(5);
    cluster.change(1, add_learner(5)).unwrap();
    cluster.tick_all();
    assert!(matches!(
        cluster.change(1, ConfChange::Promote { id: 5 }),
        Err(ConfChangeError::LearnerBehind { id: 5, .. })
    ));
    cluster.change(1, ConfChange::Remove { id: 5 }).unwrap();
    cluster.tick_all();

    let mut cluster = cluster_with_learner();
    // With 2 and 3 cut off, leader 1 and learner 4 hold a write: no commit (4 does not count).
    cluster.drop_rule = Box::new(|m| [2, 3].contains(&m.to) || [2, 3].contains(&m.from));
    let before = cluster.node(1).status().commit_index;
    cluster.node_mut(1).propose(b"w".to_vec()).unwrap();
    cluster.tick_all();
    assert_eq!(cluster.node(4).status().last_index, before + 1);
    assert_eq!(
        cluster.node(1).status().commit_index,
        before,
        "a learner's ack counted"
    );
    // A learner never campaigns, however long it hears nothing.
    cluster.drop_rule = Box::new(|m| m.to == 4 || m.from == 4);
    for _ in 0..200 {
        cluster.tick(4);
    }
    assert_eq!(cluster.node(4).status().role, Role::Follower);
    assert_eq!(cluster.node(4).status().term, cluster.node(1).status().term);
    // Caught up again: promoted, it counts, and the quorum is 3 of 4.
    cluster.drop_rule = Box::new(|_| false);
    for _ in 0..3 {
        cluster.tick_all();
    }
    cluster.change(1, ConfChange::Promote { id: 4 }).unwrap();
    cluster.tick_all();
    assert_eq!(cluster.voters(1), vec![1, 2, 3, 4]);
    assert_eq!(cluster.voters(4), vec![1, 2, 3, 4]);
    cluster.drop_rule = Box::new(|m| [3, 4].contains(&m.to) || [3, 4].contains(&m.from));
    let commit = cluster.node(1).status().commit_index;
    cluster
        .node_mut(1)
        .propose(b"needs three".to_vec())
        .unwrap();
    cluster.tick_all();
    assert_eq!(
        cluster.node(1).status().commit_index,
        commit,
        "2 of 4 is no majority"
    );
}

#[test]
fn a_leader_that_removes_itself_steps_down_once_the_removal_commits_and_hands_over() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let index = cluster.change(1, ConfChange::Remove { id: 1 }).unwrap();
    assert_eq!(
        cluster.node(1).status().role,
        Role::Leader,
        "leads until it commits"
    );
    cluster.tick_all();
    cluster.tick_all();
    assert_ne!(cluster.node(1).status().role, Role::Leader);
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert!([2, 3].contains(&leaders[0]));
    let leader = leaders[0];
    assert!(cluster.node(leader).status().commit_index >= index);
    assert_eq!(cluster.voters(leader), vec![2, 3]);
    // The removed node never campaigns again, and the rest keep committing without it.
    for _ in 0..100 {
        cluster.tick_all();
    }
    assert_eq!(cluster.leaders(), vec![leader]);
    let commit = cluster.node(leader).status().commit_index;
    cluster.node_mut(leader).propose(b"after".to_vec()).unwrap();
    cluster.tick_all();
    assert!(cluster.node(leader).status().commit_index > commit);
}

#[test]
fn a_change_that_leaves_no_active_majority_or_no_voter_is_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.crash(3);
    for _ in 0..30 {
        cluster.tick_all();
    }
    // {1, 3} after removing 2 needs both, and 3 is down.
    assert!(matches!(
        cluster.change(1, ConfChange::Remove { id: 2 }),
        Err(ConfChangeError::WouldLoseQuorum {
            active: 1,
            voters: 2,
            needed: 2
        })
    ));
    // Removing the dead one is fine.
    cluster.change(1, ConfChange::Remove { id: 3 }).unwrap();
    cluster.tick_all();
    cluster.change(1, ConfChange::Remove { id: 2 }).unwrap();
    cluster.tick_all();
    assert_eq!(cluster.voters(1), vec![1]);
    assert_eq!(
        cluster.change(1, ConfChange::Remove { id: 1 }),
        Err(ConfChangeError::LastVoter { id: 1 })
    );
}

#[test]
fn a_joining_node_far_behind_gets_the_configuration_with_the_snapshot() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    for i in 0..10 {
        cluster
            .node_mut(1)
            .propose(format!("w{i}").into_bytes())
            .unwrap();
        cluster.tick_all();
    }
    cluster.add_joining_node(4);
    cluster.change(1, add_learner(4)).unwrap();
    cluster.crash(4);
    for _ in 0..3 {
        cluster.tick_all();
    }
    // Every node compacts past the change: the configuration lives only in the snapshots.
    for id in [1, 2, 3] {
        let applied = cluster.node(id).status().commit_index;
        cluster.compact(id, applied).unwrap();
        let snapshot = cluster.disks[&id].snapshot.clone().unwrap();
        assert_eq!(
            snapshot.membership.as_ref(),
            Some(cluster.node(id).membership())
        );
    }
    cluster.restart(4);
    for _ in 0..5 {
        cluster.tick_all();
    }
    assert!(
        cluster.node(4).status().snapshot_index > 0,
        "caught up by snapshot"
    );
    assert_eq!(cluster.node(4).membership(), cluster.node(1).membership());
    // And a restart keeps it (from the snapshot file, not the initial configuration).
    cluster.restart(1);
    assert!(cluster.node(1).membership().contains(4));
}
