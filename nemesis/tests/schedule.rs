//! `run_schedule` against real child processes (`sleep`) and real link proxies: quiet periods, the
//! stop signal, the observer, crash-restarts, leader churn, the disk seam and the membership seam.
//!
//! Every child is started through a [`Supervisor`], which kills it on drop; every wait is bounded.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use riptide_nemesis::{
    apply, check_supported, corrupt_all_seed, parse_fault_list, run_schedule, BoxFuture,
    ChangeOutcome, Cuts, DiskControl, DiskEffect, DiskError, FaultKind, FaultOptions, FaultPlan,
    MemberChange, MembershipControl, MembershipError, NemesisError, Network, Notice, NoticeKind,
    Primary, Schedule, ScheduleReport, ScheduleSpec, ScheduledFault, Supervisor, Targets,
    VoterCrash,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

mod common;
use common::{is_not_running, network_to_nowhere, sleeper, PROMPTLY};

/// A cluster of `nodes` sleepers behind a supervisor, with proxies to nowhere.
struct Nodes {
    supervisor: Mutex<Supervisor>,
    network: Network,
    _dir: tempfile::TempDir,
}

async fn nodes(count: usize) -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    for node in 0..count {
        supervisor
            .spawn(sleeper(dir.path(), &format!("n{}", node + 1)))
            .await
            .unwrap();
    }
    Nodes {
        supervisor: Mutex::new(supervisor),
        network: network_to_nowhere(count).await,
        _dir: dir,
    }
}

impl Nodes {
    async fn pids(&self) -> Vec<Option<u32>> {
        let supervisor = self.supervisor.lock().await;
        (0..supervisor.len())
            .map(|node| supervisor.pid(node).unwrap())
            .collect()
    }

    fn targets<'a, P>(&'a self, primary: &'a P) -> Targets<'a, P> {
        Targets {
            supervisor: &self.supervisor,
            network: &self.network,
            primary,
            disk: None,
            membership: None,
        }
    }
}

/// A hand-made schedule of `faults` (windows in milliseconds) over `nodes` nodes.
fn schedule_of(nodes: usize, faults: Vec<(u64, u64, FaultPlan)>) -> Schedule {
    let kinds: Vec<FaultKind> = faults.iter().map(|(_, _, plan)| plan.kind()).collect();
    Schedule {
        spec: ScheduleSpec {
            seed: 0,
            faults: kinds,
            nodes,
            interval_ms: 1000,
            quiet_ms: None,
            options: FaultOptions::default(),
        },
        faults: faults
            .into_iter()
            .map(|(start_ms, end_ms, plan)| ScheduledFault {
                start_ms,
                end_ms,
                plan,
            })
            .collect(),
    }
}

/// Plays `schedule` with no stop signal, collecting every notice.
async fn play<P: Primary>(
    schedule: &Schedule,
    targets: &Targets<'_, P>,
) -> (ScheduleReport, Vec<Notice>) {
    play_watching(schedule, targets, |_| {}).await
}

/// [`play`], with `watch` told of every notice as it happens (to look at the cluster then).
async fn play_watching<P: Primary>(
    schedule: &Schedule,
    targets: &Targets<'_, P>,
    mut watch: impl FnMut(&Notice),
) -> (ScheduleReport, Vec<Notice>) {
    let mut notices = Vec::new();
    let mut observer = |notice: &Notice| {
        watch(notice);
        notices.push(notice.clone());
    };
    let report = tokio::time::timeout(
        PROMPTLY * 3,
        run_schedule(
            schedule,
            Instant::now(),
            targets,
            &mut observer,
            std::future::pending(),
        ),
    )
    .await
    .expect("schedule overran")
    .unwrap();
    (report, notices)
}

fn history_fs(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| n.history_event().map(|e| e.f.clone()))
        .collect()
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn run_schedule_keeps_the_quiet_periods_and_tells_the_observer_everything_in_order() {
    let cluster = nodes(3).await;
    let spec = ScheduleSpec {
        seed: 8,
        faults: parse_fault_list("kill-one").unwrap(),
        nodes: 3,
        interval_ms: 300,
        quiet_ms: Some(200),
        options: FaultOptions::default(),
    };
    let schedule = Schedule::generate(spec, Duration::from_millis(1600)).unwrap();
    let windows: Vec<(u64, u64)> = schedule
        .faults
        .iter()
        .map(|f| (f.start_ms, f.end_ms))
        .collect();
    assert_eq!(windows, [(200, 500), (700, 1000), (1200, 1500)]);

    let primary = || async { None };
    let targets = cluster.targets(&primary);
    let mut notices: Vec<Notice> = Vec::new();
    let mut dead_at_start = Vec::new();
    let mut observer = |notice: &Notice| {
        if let NoticeKind::Started(_) = notice.what {
            // The driver holds no lock while it reports, and the node is already dead.
            let supervisor = cluster
                .supervisor
                .try_lock()
                .expect("lock held at a notice");
            dead_at_start.push((0..3).filter(|&n| !supervisor.is_alive(n).unwrap()).count());
        }
        notices.push(notice.clone());
    };
    let t0 = Instant::now();
    let run = run_schedule(
        &schedule,
        t0,
        &targets,
        &mut observer,
        std::future::pending(),
    );
    assert_send(&run);
    let report = run.await.unwrap();

    assert!(
        report.errors.is_empty() && !report.interrupted,
        "{report:?}"
    );
    assert_eq!(
        history_fs(&notices),
        ["start-kill", "stop-kill"].repeat(3),
        "{notices:?}"
    );
    assert_eq!(dead_at_start, [1, 1, 1]);
    assert!(notices.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(report.faults.len(), 3);
    for (interval, (start_ms, end_ms)) in report.faults.iter().zip(&windows) {
        assert_eq!(interval.kind, FaultKind::KillOne);
        assert!(
            interval.start >= Duration::from_millis(*start_ms),
            "{interval:?}"
        );
        assert!(
            interval.end >= Duration::from_millis(*end_ms),
            "{interval:?}"
        );
        assert_eq!(interval.nodes.len(), 1);
    }
    // Each killed node was started again.
    assert!(cluster.pids().await.iter().all(Option::is_some));
}

#[tokio::test]
async fn the_stop_signal_ends_the_schedule_early_and_heals_the_fault_in_effect() {
    let cluster = nodes(3).await;
    let schedule = schedule_of(
        3,
        vec![
            (100, 20_000, FaultPlan::KillOne { node: 2 }),
            (20_100, 30_000, FaultPlan::IsolateOne { node: 0 }),
        ],
    );
    let before = cluster.pids().await;
    let primary = || async { None };
    let targets = cluster.targets(&primary);
    let mut notices = Vec::new();
    let mut observer = |notice: &Notice| notices.push(notice.clone());
    let report = tokio::time::timeout(
        PROMPTLY,
        run_schedule(
            &schedule,
            Instant::now(),
            &targets,
            &mut observer,
            tokio::time::sleep(Duration::from_millis(600)),
        ),
    )
    .await
    .expect("the stop signal did not end the schedule")
    .unwrap();
    assert!(report.interrupted);
    assert_eq!(report.faults.len(), 1);
    assert!(report.faults[0].end < Duration::from_millis(20_000));
    assert_eq!(history_fs(&notices), ["start-kill", "stop-kill"]);
    let after = cluster.pids().await;
    assert!(after[2].is_some() && after[2] != before[2], "{after:?}");
    assert!(cluster.network.cut_links().is_empty());
}

#[tokio::test]
async fn crash_restart_kills_and_starts_again_after_the_planned_downtime() {
    let cluster = nodes(3).await;
    let schedule = schedule_of(
        3,
        vec![
            (
                0,
                5_000,
                FaultPlan::CrashRestartOne {
                    node: 1,
                    down_ms: 250,
                },
            ),
            (
                0,
                5_000,
                FaultPlan::CrashRestartLeader {
                    fallback: 0,
                    down_ms: 0,
                },
            ),
        ],
    );
    let before = cluster.pids().await;
    let primary = || async { Some(2) };
    let (report, notices) = play(&schedule, &cluster.targets(&primary)).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        history_fs(&notices),
        ["start-crash", "stop-crash", "start-crash", "stop-crash"]
    );

    let one = &report.faults[0];
    assert_eq!(one.description, "crash-restart n2 (down 250 ms)");
    assert_eq!(one.nodes, [1]);
    let down = one.end - one.start;
    assert!(down >= Duration::from_millis(250), "down {down:?}");
    // The fault ends when the node is back, not at the end of its 5 s window.
    assert!(
        down < Duration::from_millis(250) + PROMPTLY / 4,
        "down {down:?}"
    );

    let leader = &report.faults[1];
    assert_eq!(leader.description, "crash-restart leader n3 (down 0 ms)");
    assert_eq!(leader.nodes, [2]);

    let after = cluster.pids().await;
    for node in [1, 2] {
        let (old, new) = (before[node].unwrap(), after[node].expect("not restarted"));
        assert_ne!(old, new);
        assert!(is_not_running(old));
    }
    assert_eq!(after[0], before[0]);
}

#[tokio::test]
async fn crash_restart_election_crashes_the_leader_then_each_voter_in_turn_and_brings_all_back() {
    let cluster = nodes(3).await;
    let plan = FaultPlan::CrashRestartElection {
        fallback: 1,
        down_ms: 100,
        voters: vec![2, 0, 1],
        crashes: vec![
            VoterCrash {
                after_ms: 50,
                down_ms: 30,
            },
            VoterCrash {
                after_ms: 120,
                down_ms: 30,
            },
            VoterCrash {
                after_ms: 200,
                down_ms: 30,
            },
        ],
    };
    let schedule = schedule_of(3, vec![(0, 5_000, plan)]);
    let before = cluster.pids().await;
    let primary = || async { Some(0) };
    let (report, notices) = play(&schedule, &cluster.targets(&primary)).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(history_fs(&notices), ["start-crash", "stop-crash"]);
    let fault = &report.faults[0];
    assert!(fault.description.starts_with("crash-restart leader n1"));
    // The leader first, then the voters in plan order without the leader, wrapping around.
    assert_eq!(fault.nodes, [0, 2, 1, 2]);
    assert_eq!(fault.steps.len(), 3, "{:?}", fault.steps);
    assert!(fault.steps[0].starts_with("crash-restart voter n3 at +50 ms"));
    let steps = notices
        .iter()
        .filter(|n| matches!(n.what, NoticeKind::Step(_)))
        .count();
    assert_eq!(steps, 3);
    let after = cluster.pids().await;
    for node in 0..3 {
        assert!(after[node].is_some(), "n{} left down", node + 1);
        assert_ne!(after[node], before[node]);
    }
}

/// A stand-in for the system under test's elections: the leader stays the leader until it is
/// cut off from everyone; then the next node (in index order, wrapping) that is not cut off
/// takes over.
struct ElectsWhenCutOff<'a> {
    network: &'a Network,
    leader: StdMutex<usize>,
}

impl ElectsWhenCutOff<'_> {
    fn cut_off(&self) -> BTreeSet<usize> {
        cut_off(self.network)
    }
}

fn cut_off(network: &Network) -> BTreeSet<usize> {
    let cut: BTreeSet<(usize, usize)> = network.cut_links().into_iter().collect();
    let nodes = network.len();
    (0..nodes)
        .filter(|&a| {
            (0..nodes)
                .filter(|&b| b != a)
                .all(|b| cut.contains(&(a, b)))
        })
        .collect()
}

impl Primary for ElectsWhenCutOff<'_> {
    fn primary(&self) -> impl Future<Output = Option<usize>> + Send {
        let cut_off = self.cut_off();
        let nodes = self.network.len();
        let mut leader = self.leader.lock().unwrap();
        if cut_off.contains(&leader) {
            if let Some(next) = (1..nodes)
                .map(|d| (*leader + d) % nodes)
                .find(|n| !cut_off.contains(n))
            {
                *leader = next;
            }
        }
        std::future::ready(Some(*leader))
    }
}

async fn leader_churn_cuts_off_successive_leaders(count: usize) {
    let cluster = nodes(count).await;
    let elections = ElectsWhenCutOff {
        network: &cluster.network,
        leader: StdMutex::new(0),
    };
    let plan = FaultPlan::LeaderChurn {
        fallback: 1,
        dwell_ms: 100,
    };
    let schedule = schedule_of(count, vec![(0, 2_500, plan)]);
    let most_cut_off = (count - 1) / 2;
    let mut notices = Vec::new();
    let mut cut_off_at_steps = Vec::new();
    let mut observer = |notice: &Notice| {
        if matches!(notice.what, NoticeKind::Started(_) | NoticeKind::Step(_)) {
            let links: BTreeSet<(usize, usize)> = cluster.network.cut_links().into_iter().collect();
            let alone = cut_off(&cluster.network);
            let expected: BTreeSet<(usize, usize)> =
                Cuts::isolate_each(count, &alone.iter().copied().collect::<Vec<_>>())
                    .links()
                    .collect();
            // Each cut-off node is alone, and nothing else is cut.
            assert_eq!(links, expected);
            cut_off_at_steps.push(alone);
        }
        notices.push(notice.clone());
    };
    let report = tokio::time::timeout(
        PROMPTLY,
        run_schedule(
            &schedule,
            Instant::now(),
            &cluster.targets(&elections),
            &mut observer,
            std::future::pending(),
        ),
    )
    .await
    .expect("schedule overran")
    .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(history_fs(&notices), ["start-churn", "stop-churn"]);
    let fault = &report.faults[0];
    assert_eq!(
        fault.description,
        "leader churn from n1 (each next leader cut off 100 ms after it appears)"
    );
    assert!(fault.steps.len() >= 3, "only {:?}", fault.steps);
    // Leaders in election order: n1, n2, n3, ... each cut off in turn.
    let expected: Vec<usize> = (0..fault.nodes.len()).map(|k| k % count).collect();
    assert_eq!(fault.nodes, expected);
    assert_eq!(cut_off_at_steps[0], BTreeSet::from([0]));
    for alone in &cut_off_at_steps {
        assert!(
            !alone.is_empty() && alone.len() <= most_cut_off,
            "{alone:?}"
        );
    }
    assert!(cut_off_at_steps
        .iter()
        .any(|alone| alone.len() == most_cut_off));
    assert!(cluster.network.cut_links().is_empty(), "not healed");
}

#[tokio::test]
async fn leader_churn_cuts_off_successive_leaders_on_three_nodes_and_heals_everything() {
    leader_churn_cuts_off_successive_leaders(3).await;
}

#[tokio::test]
async fn leader_churn_cuts_off_successive_leaders_on_five_nodes_and_heals_everything() {
    leader_churn_cuts_off_successive_leaders(5).await;
}

/// One call to the disk layer: which fault, on which node, with which seed, and whether the node's
/// process was dead then.
type DiskCall = (&'static str, usize, Option<u64>, bool);

/// A filesystem layer stand-in that records each call, checks the node is dead when called, and
/// fails when told to.
struct RecordingDisk {
    /// PIDs before the run: the process that must be dead when its node's files are touched.
    pids: Vec<u32>,
    calls: StdMutex<Vec<DiskCall>>,
    fail: bool,
}

impl RecordingDisk {
    fn new(pids: &[Option<u32>], fail: bool) -> RecordingDisk {
        RecordingDisk {
            pids: pids.iter().map(|p| p.expect("node not running")).collect(),
            calls: StdMutex::new(Vec::new()),
            fail,
        }
    }

    fn record(
        &self,
        what: &'static str,
        node: usize,
        seed: Option<u64>,
    ) -> Result<DiskEffect, DiskError> {
        let dead = is_not_running(self.pids[node]);
        self.calls.lock().unwrap().push((what, node, seed, dead));
        if self.fail {
            return Err("the layer is unmounted".into());
        }
        Ok(DiskEffect {
            files: vec![format!("n{}/wal", node + 1).into()],
            bytes: 4096,
            detail: format!("{what} on n{}", node + 1),
        })
    }
}

impl DiskControl for RecordingDisk {
    fn lose_unsynced(&self, node: usize) -> Result<DiskEffect, DiskError> {
        self.record("lose", node, None)
    }
    fn tear_last_write(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError> {
        self.record("tear", node, Some(seed))
    }
    fn corrupt(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError> {
        self.record("corrupt", node, Some(seed))
    }
}

fn disk_schedule() -> Schedule {
    schedule_of(
        3,
        vec![
            (0, 3_000, FaultPlan::LoseUnsynced { node: 0 }),
            (0, 3_000, FaultPlan::TornWrite { node: 1, seed: 7 }),
            (0, 3_000, FaultPlan::Corrupt { node: 2, seed: 9 }),
            (0, 3_000, FaultPlan::CorruptAll { seed: 11 }),
        ],
    )
}

#[tokio::test]
async fn disk_faults_call_the_disk_control_while_the_nodes_are_dead_and_restart_them() {
    let cluster = nodes(3).await;
    let before = cluster.pids().await;
    let disk = RecordingDisk::new(&before, false);
    let primary = || async { None };
    let mut targets = cluster.targets(&primary);
    targets.disk = Some(&disk);
    let (report, notices) = play(&disk_schedule(), &targets).await;
    assert!(report.errors.is_empty(), "{report:?}");
    // corrupt-all: every node killed, every node's unsynced writes dropped, then each node's
    // files corrupted with its own seed.
    let mut expected: Vec<DiskCall> = vec![
        ("lose", 0, None, true),
        ("tear", 1, Some(7), true),
        ("corrupt", 2, Some(9), true),
    ];
    expected.extend((0..3).map(|n| ("lose", n, None, true)));
    expected.extend((0..3).map(|n| ("corrupt", n, Some(corrupt_all_seed(11, n)), true)));
    assert_eq!(*disk.calls.lock().unwrap(), expected);
    assert_eq!(history_fs(&notices), ["start-disk", "stop-disk"].repeat(4));
    assert_eq!(report.faults[3].nodes, [0, 1, 2]);
    assert_eq!(
        report.faults[3].steps.len(),
        6,
        "{:?}",
        report.faults[3].steps
    );
    assert_eq!(
        report.faults[1].description,
        "tear the last unsynced write of n2"
    );
    assert_eq!(report.faults[2].steps, ["corrupt on n3"]);
    let after = cluster.pids().await;
    for node in 0..3 {
        assert!(after[node].is_some() && after[node] != before[node]);
    }
}

#[tokio::test]
async fn a_failing_disk_control_is_reported_and_the_node_still_restarts() {
    let cluster = nodes(3).await;
    let before = cluster.pids().await;
    let disk = RecordingDisk::new(&before, true);
    let primary = || async { None };
    let mut targets = cluster.targets(&primary);
    targets.disk = Some(&disk);
    let schedule = schedule_of(3, vec![(0, 3_000, FaultPlan::LoseUnsynced { node: 1 })]);
    let (report, notices) = play(&schedule, &targets).await;
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].error.contains("the layer is unmounted"),
        "{:?}",
        report.errors
    );
    assert!(notices
        .iter()
        .any(|n| matches!(&n.what, NoticeKind::Failed(e) if e.contains("lose-unsynced"))));
    assert_eq!(history_fs(&notices), ["start-disk", "stop-disk"]);
    let after = cluster.pids().await;
    assert!(after[1].is_some() && after[1] != before[1]);
}

#[tokio::test]
async fn disk_faults_without_a_disk_control_are_refused_before_anything_is_done() {
    let cluster = nodes(3).await;
    let before = cluster.pids().await;
    let primary = || async { None };
    let mut notices = Vec::new();
    let mut observer = |notice: &Notice| notices.push(notice.clone());
    let err = run_schedule(
        &disk_schedule(),
        Instant::now(),
        &cluster.targets(&primary),
        &mut observer,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NemesisError::Unsupported { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("lose-unsynced, torn-write, corrupt")
            && message.contains("disk faults need"),
        "{message}"
    );
    assert!(notices.is_empty());
    assert_eq!(cluster.pids().await, before);

    // The same check, for the harness to make when it plans the run.
    let kinds = parse_fault_list("partition,disk").unwrap();
    assert!(check_supported(&kinds, false, false).is_err());
    assert!(check_supported(&kinds, true, false).is_ok());
    assert!(check_supported(&parse_fault_list("all").unwrap(), false, false).is_ok());
}

#[tokio::test]
async fn apply_refuses_the_faults_that_take_more_than_one_step() {
    let cluster = nodes(3).await;
    let before = cluster.pids().await;
    let mut supervisor = cluster.supervisor.lock().await;
    for plan in [
        FaultPlan::Corrupt { node: 0, seed: 1 },
        FaultPlan::CrashRestartElection {
            fallback: 0,
            down_ms: 0,
            voters: vec![0, 1, 2],
            crashes: Vec::new(),
        },
    ] {
        let err = apply(&plan, &mut supervisor, &cluster.network, None)
            .await
            .unwrap_err();
        assert!(matches!(err, NemesisError::NeedsScheduleDriver(_)), "{err}");
    }
    drop(supervisor);
    assert_eq!(cluster.pids().await, before);
}

/// A membership API stand-in: records every call, refuses what it is told to, keeps the spare
/// slots and the stand-ins as a harness would.
struct RecordingMembers {
    initial: usize,
    calls: StdMutex<Vec<String>>,
    spares: StdMutex<Vec<usize>>,
    stand_in: StdMutex<Vec<usize>>,
    /// Changes answered with a refusal.
    refuse: Vec<MemberChange>,
}

impl RecordingMembers {
    fn new(initial: usize, spares: usize, refuse: Vec<MemberChange>) -> RecordingMembers {
        RecordingMembers {
            initial,
            calls: StdMutex::new(Vec::new()),
            spares: StdMutex::new((initial..initial + spares).rev().collect()),
            stand_in: StdMutex::new((0..initial).collect()),
            refuse,
        }
    }

    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl MembershipControl for RecordingMembers {
    fn initial_nodes(&self) -> usize {
        self.initial
    }
    fn stand_in(&self, node: usize) -> usize {
        self.stand_in.lock().unwrap()[node]
    }
    fn take_spare(&self) -> Option<usize> {
        self.spares.lock().unwrap().pop()
    }
    fn set_stand_in(&self, node: usize, slot: usize) {
        self.stand_in.lock().unwrap()[node] = slot;
    }
    fn change(&self, change: MemberChange) -> BoxFuture<'_, ChangeOutcome> {
        self.note(format!("{change:?}"));
        let refused = self.refuse.contains(&change);
        Box::pin(async move {
            if refused {
                ChangeOutcome::Refused("would lose quorum".into())
            } else {
                ChangeOutcome::Applied
            }
        })
    }
    fn start_joining(
        &self,
        slot: usize,
        learner_only: bool,
    ) -> BoxFuture<'_, Result<(), MembershipError>> {
        self.note(format!("join {slot} learner_only={learner_only}"));
        Box::pin(async { Ok(()) })
    }
    fn retire(&self, slot: usize) -> BoxFuture<'_, Result<(), MembershipError>> {
        self.note(format!("retire {slot}"));
        Box::pin(async { Ok(()) })
    }
    fn wait_member(&self, slot: usize, voter: bool) -> BoxFuture<'_, bool> {
        self.note(format!("wait {slot} voter={voter}"));
        Box::pin(async { true })
    }
    fn wait_caught_up(&self, slot: usize) -> BoxFuture<'_, bool> {
        self.note(format!("caught up {slot}"));
        Box::pin(async { true })
    }
}

#[tokio::test]
async fn membership_faults_change_the_configuration_and_later_faults_hit_the_stand_ins() {
    // Three nodes and two spare slots, all sleepers so a kill can be seen.
    let cluster = nodes(5).await;
    let members = RecordingMembers::new(3, 2, vec![MemberChange::Remove(2)]);
    let primary = || async { Some(2) };
    let mut targets = cluster.targets(&primary);
    targets.membership = Some(&members);
    let schedule = schedule_of(
        3,
        vec![
            (0, 100, FaultPlan::RemoveVoter { node: 1 }),
            (150, 250, FaultPlan::ReplaceNode { node: 0 }),
            (300, 400, FaultPlan::KillOne { node: 0 }),
            (450, 550, FaultPlan::AddLearner),
            (600, 700, FaultPlan::AddLearner),
            (750, 850, FaultPlan::RemoveLeader { fallback: 0 }),
        ],
    );
    let (report, notices) = play(&schedule, &targets).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        history_fs(&notices),
        [
            ["start-membership", "stop-membership"].repeat(2),
            vec!["start-kill", "stop-kill"],
            ["start-membership", "stop-membership"].repeat(3),
        ]
        .concat()
    );
    assert_eq!(
        *members.calls.lock().unwrap(),
        [
            "Remove(1)",
            "AddLearner(1)",
            "Promote(1)",
            "Remove(0)",
            "retire 0",
            "join 3 learner_only=false",
            "wait 3 voter=true",
            "join 4 learner_only=true",
            "wait 4 voter=false",
            "Promote(4)",
            "Remove(2)",
        ]
    );
    let described: Vec<&str> = report
        .faults
        .iter()
        .map(|f| f.description.as_str())
        .collect();
    assert_eq!(
        described,
        [
            "remove voter n2, add it back as a learner and promote it at the end",
            "replace n1 by n4 (new id, empty data dir)",
            "kill n4",
            "add learner n5 on a spare slot, promote it at the end",
            "add a learner (no spare slot left: nothing done)",
            "remove leader n3 (refused: would lose quorum)",
        ]
    );
    // The kill planned for n1 hit n4, which stands for it now.
    assert_eq!(report.faults[2].nodes, vec![3]);
    assert_eq!(
        report.faults[0].steps,
        [
            "removed n2",
            "add n2 back as a learner: committed",
            "promote n2: committed"
        ]
    );
}

#[tokio::test]
async fn promote_split_cuts_the_leader_and_two_learners_off_and_promotes_both_at_once() {
    // Three nodes and two spare slots; n2 leads.
    let cluster = nodes(5).await;
    let members = RecordingMembers::new(3, 2, Vec::new());
    let primary = || async { Some(1) };
    let mut targets = cluster.targets(&primary);
    targets.membership = Some(&members);
    let schedule = schedule_of(
        3,
        vec![
            (0, 100, FaultPlan::PromoteSplit { fallback: 0 }),
            (150, 250, FaultPlan::PromoteSplit { fallback: 0 }),
        ],
    );
    let mut cut_when_started = Vec::new();
    let (report, notices) = play_watching(&schedule, &targets, |notice| {
        if matches!(notice.what, NoticeKind::Started(_)) {
            cut_when_started.push(cluster.network.cut_links());
        }
    })
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        history_fs(&notices),
        ["start-membership", "stop-membership"].repeat(2)
    );
    let split = |side: [usize; 3]| {
        let mut cut = Vec::new();
        for a in side {
            for b in [0, 2] {
                cut.push((a, b));
                cut.push((b, a));
            }
        }
        cut.sort_unstable();
        cut
    };
    // n2, n4 and n5 on one side, n1 and n3 on the other, both times; healed at the end.
    assert_eq!(cut_when_started, vec![split([1, 3, 4]), split([1, 3, 4])]);
    assert!(cluster.network.cut_links().is_empty());
    let calls = members.calls.lock().unwrap().clone();
    let second_time = [
        "AddLearner(3)",
        "AddLearner(4)",
        "caught up 3",
        "caught up 4",
        "Promote(3)",
        "Promote(4)",
        "Remove(3)",
        "Remove(4)",
    ];
    let first_time = [
        "join 3 learner_only=true",
        "join 4 learner_only=true",
        "wait 3 voter=false",
        "wait 4 voter=false",
    ];
    assert_eq!(
        calls,
        [&first_time[..], &second_time[2..], &second_time[..]].concat()
    );
    assert_eq!(
        report.faults[0].description,
        "promote split: [n2 n4 n5] | [n1 n3], learners n4 and n5 promoted at once"
    );
    assert_eq!(
        report.faults[1].steps,
        [
            "promote n4: committed; promote n5: committed",
            "remove n4: committed",
            "remove n5: committed"
        ]
    );
}

#[tokio::test]
async fn membership_faults_without_a_membership_control_are_refused_before_anything_is_done() {
    let cluster = nodes(3).await;
    let primary = || async { None };
    let targets = cluster.targets(&primary);
    let schedule = schedule_of(3, vec![(0, 100, FaultPlan::AddLearner)]);
    let mut observer = |_: &Notice| {};
    let refused = run_schedule(
        &schedule,
        Instant::now(),
        &targets,
        &mut observer,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("membership faults need"),
        "{refused}"
    );
    let kinds = parse_fault_list("partition,membership").unwrap();
    assert!(check_supported(&kinds, false, false).is_err());
    assert!(check_supported(&kinds, false, true).is_ok());
}
