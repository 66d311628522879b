//! The process supervisor and process faults against real child processes (`sleep`, `sh`).
//!
//! Every test bounds its waits; every child is started through a [`Supervisor`] (killed on drop) or
//! guarded by [`KillOnDrop`].

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use riptide_nemesis::{
    apply, heal, FaultPlan, NemesisError, ProcessSpec, ProcessState, Supervisor,
};
use tokio::time::Instant;

mod common;
use common::{eventually, is_not_running, network_to_nowhere, process_state, sleeper, PROMPTLY};

/// Environment variable that turns this test binary into the orphan-check helper process.
const HELPER_ENV: &str = "RIPTIDE_NEMESIS_ORPHAN_HELPER";

fn shell(dir: &Path, name: &str, script: &str) -> ProcessSpec {
    ProcessSpec::new("sh", dir.join(format!("{name}.log")))
        .args(["-c", script])
        .current_dir(dir)
}

#[tokio::test]
async fn kill_reaps_the_child_and_leaves_no_zombie() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let node = supervisor.spawn(sleeper(dir.path(), "a")).await.unwrap();
    let pid = supervisor.pid(node).unwrap().unwrap();
    assert_eq!(
        supervisor.state(node).unwrap(),
        ProcessState::Running { pid }
    );

    let exit = supervisor.kill(node).await.unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(exit.ended_by_supervisor());
    assert_eq!(exit.signals_sent, vec!["SIGKILL".to_owned()]);
    // kill returns after reaping: no /proc entry, not even a zombie.
    assert_eq!(
        process_state(pid),
        None,
        "pid {pid} still exists after kill"
    );
    assert!(matches!(
        supervisor.state(node).unwrap(),
        ProcessState::Exited(_)
    ));
    assert_eq!(supervisor.pid(node).unwrap(), None);
    assert!(matches!(
        supervisor.kill(node).await,
        Err(NemesisError::NotRunning { .. })
    ));
}

#[tokio::test]
async fn a_child_that_exits_on_its_own_is_not_blamed_on_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let node = supervisor
        .spawn(shell(dir.path(), "crash", "echo dying; exit 3"))
        .await
        .unwrap();
    let exit = supervisor
        .wait_exit(node, PROMPTLY)
        .await
        .unwrap()
        .expect("child did not exit");
    assert_eq!(exit.code, Some(3));
    assert!(!exit.ended_by_supervisor());
    assert_eq!(exit.describe(), "exit code 3");
    let log = std::fs::read_to_string(dir.path().join("crash.log")).unwrap();
    // A line of its own: the header line also repeats the command, `echo dying` included.
    assert!(
        log.lines().any(|l| l == "dying"),
        "stdout not captured: {log:?}"
    );
}

#[tokio::test]
async fn stderr_goes_to_the_same_log_and_env_and_cwd_are_passed() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let spec = shell(dir.path(), "env", "echo \"$GREETING from $(pwd)\" >&2").env("GREETING", "hi");
    let node = supervisor.spawn(spec).await.unwrap();
    supervisor.wait_exit(node, PROMPTLY).await.unwrap().unwrap();
    let log = std::fs::read_to_string(dir.path().join("env.log")).unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    assert!(
        log.contains(&format!("hi from {}", cwd.display())),
        "log: {log:?}"
    );
}

#[tokio::test]
async fn pause_stops_progress_and_resume_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let node = supervisor
        .spawn(shell(
            dir.path(),
            "ticker",
            "while true; do echo tick; sleep 0.02; done",
        ))
        .await
        .unwrap();
    let log = dir.path().join("ticker.log");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let initial = size();
    assert!(
        eventually(|| size() > initial + 20).await,
        "ticker never ticked"
    );

    supervisor.pause(node).unwrap();
    let pid = supervisor.pid(node).unwrap().unwrap();
    assert_eq!(
        supervisor.state(node).unwrap(),
        ProcessState::Paused { pid }
    );
    assert!(eventually(|| process_state(pid) == Some('T')).await);
    // Let an in-flight echo land, then the log must stay still.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let frozen = size();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(size(), frozen, "a paused process kept writing");

    supervisor.resume(node).unwrap();
    assert_eq!(
        supervisor.state(node).unwrap(),
        ProcessState::Running { pid }
    );
    assert!(
        eventually(|| size() > frozen + 20).await,
        "no progress after resume"
    );
}

#[tokio::test]
async fn stop_ends_a_polite_child_with_sigterm_and_a_stubborn_one_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let polite = supervisor
        .spawn(sleeper(dir.path(), "polite"))
        .await
        .unwrap();
    let exit = supervisor.stop(polite, PROMPTLY).await.unwrap();
    assert_eq!(exit.signal, Some(libc::SIGTERM));
    assert!(exit.ended_by_supervisor());

    // An ignored SIGTERM stays ignored across exec, so the sleeps ignore it too.
    let stubborn = supervisor
        .spawn(shell(
            dir.path(),
            "stubborn",
            "trap '' TERM; echo tr\"\"apped; while true; do sleep 0.05; done",
        ))
        .await
        .unwrap();
    // Signal only once the trap is in place, or SIGTERM would beat it (the quotes keep the
    // marker out of the log header line, which repeats the command).
    let log = dir.path().join("stubborn.log");
    assert!(
        eventually(|| std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("trapped"))
        .await
    );
    let exit = supervisor
        .stop(stubborn, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert_eq!(exit.signals_sent, vec!["SIGTERM", "SIGKILL"]);
}

#[tokio::test]
async fn stop_works_on_a_paused_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let node = supervisor.spawn(sleeper(dir.path(), "p")).await.unwrap();
    supervisor.pause(node).unwrap();
    let exit = supervisor.stop(node, PROMPTLY).await.unwrap();
    assert_eq!(exit.signal, Some(libc::SIGTERM));
}

#[tokio::test]
async fn restart_runs_the_same_command_again_and_appends_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let node = supervisor
        .spawn(shell(dir.path(), "r", "echo run $RUN_TAG; sleep 1000").env("RUN_TAG", "x7"))
        .await
        .unwrap();
    let first = supervisor.pid(node).unwrap().unwrap();
    let log = dir.path().join("r.log");
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("run x7")
            .count()
    };
    assert!(eventually(|| runs() == 1).await);
    let second = supervisor.restart(node).await.unwrap();
    assert_ne!(first, second);
    assert!(is_not_running(first));
    assert!(eventually(|| runs() == 2).await);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("start #1") && text.contains("start #2"),
        "{text}"
    );
    let exit = supervisor.kill(node).await.unwrap();
    assert_eq!(exit.incarnation, 2);
}

#[tokio::test]
async fn wait_ready_succeeds_when_the_probe_does_and_fails_on_early_exit_or_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let ready_file = dir.path().join("ready");
    let node = supervisor
        .spawn(shell(
            dir.path(),
            "slow",
            "sleep 0.3; touch ready; sleep 1000",
        ))
        .await
        .unwrap();
    let probe = || {
        let ready_file = ready_file.clone();
        async move { ready_file.exists() }
    };
    supervisor
        .wait_ready(node, probe, Instant::now() + PROMPTLY)
        .await
        .unwrap();
    assert!(ready_file.exists());

    let quitter = supervisor
        .spawn(shell(dir.path(), "quitter", "exit 1"))
        .await
        .unwrap();
    let err = supervisor
        .wait_ready(quitter, || async { false }, Instant::now() + PROMPTLY)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NemesisError::ExitedBeforeReady { .. }),
        "{err}"
    );

    let never = supervisor
        .spawn(sleeper(dir.path(), "never"))
        .await
        .unwrap();
    let err = supervisor
        .wait_ready(
            never,
            || async { false },
            Instant::now() + Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NemesisError::NotReady { .. }), "{err}");
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let err = supervisor
        .spawn(ProcessSpec::new(
            dir.path().join("no-such-binary"),
            dir.path().join("x.log"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, NemesisError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn dropping_the_supervisor_kills_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    let mut pids = Vec::new();
    for name in ["a", "b", "c"] {
        let node = supervisor.spawn(sleeper(dir.path(), name)).await.unwrap();
        pids.push(supervisor.pid(node).unwrap().unwrap());
    }
    supervisor.pause(1).unwrap();
    drop(supervisor);
    for pid in pids {
        assert!(
            eventually(|| process_state(pid).is_none()).await,
            "pid {pid} survived the supervisor (state {:?})",
            process_state(pid)
        );
    }
}

#[tokio::test]
async fn signals_reach_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    // The shell forks a grandchild `sleep` and prints its PID.
    let node = supervisor
        .spawn(shell(
            dir.path(),
            "group",
            "sleep 1000 & echo grandchild $!; wait",
        ))
        .await
        .unwrap();
    let log = dir.path().join("group.log");
    let grandchild = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("grandchild ")?.trim().parse::<u32>().ok())
    };
    assert!(eventually(|| grandchild().is_some()).await);
    let grandchild = grandchild().unwrap();
    supervisor.kill(node).await.unwrap();
    assert!(
        eventually(|| is_not_running(grandchild)).await,
        "grandchild {grandchild} survived"
    );
}

/// Kills a process we started (by PID) when dropped, so a failing test leaves nothing behind.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

#[test]
fn killing_the_harness_with_sigkill_kills_its_children() {
    let test_binary = std::env::current_exe().unwrap();
    let mut helper = Command::new(test_binary)
        .args(["--exact", "orphan_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let helper_guard = KillOnDrop(helper.id());
    let stdout = helper.stdout.take().unwrap();
    let child_pid = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("CHILD_PID=")?.trim().parse::<u32>().ok())
        .expect("helper never reported its child");
    let child_guard = KillOnDrop(child_pid);
    assert_eq!(process_state(child_pid).map(|s| s != 'Z'), Some(true));

    // SIGKILL: the helper runs no destructor; only the parent-death signal can save us.
    kill(Pid::from_raw(helper.id() as i32), Signal::SIGKILL).unwrap();
    helper.wait().unwrap();
    let deadline = std::time::Instant::now() + PROMPTLY;
    while !is_not_running(child_pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        is_not_running(child_pid),
        "child {child_pid} outlived its SIGKILLed parent (state {:?})",
        process_state(child_pid)
    );
    drop(child_guard);
    drop(helper_guard);
}

/// Entry point of the helper process of the test above: starts `sleep 1000` under a supervisor,
/// prints its PID, and waits to be killed. Does nothing unless run by that test.
#[test]
#[ignore = "helper process for killing_the_harness_with_sigkill_kills_its_children"]
fn orphan_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _supervisor = runtime.block_on(async {
        let mut supervisor = Supervisor::new();
        let node = supervisor
            .spawn(sleeper(dir.path(), "orphan"))
            .await
            .unwrap();
        println!("CHILD_PID={}", supervisor.pid(node).unwrap().unwrap());
        supervisor
    });
    // Bounded, in case the test that should kill us fails first.
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn process_faults_kill_and_restart_pause_and_resume_the_chosen_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new();
    for name in ["n1", "n2", "n3"] {
        supervisor.spawn(sleeper(dir.path(), name)).await.unwrap();
    }
    // Process faults do not touch links; a network of dead addresses is enough.
    let network = network_to_nowhere(3).await;

    let before = supervisor.pid(1).unwrap().unwrap();
    let active = apply(
        &FaultPlan::KillMinority { nodes: vec![1] },
        &mut supervisor,
        &network,
        None,
    )
    .await
    .unwrap();
    assert_eq!(active.start_event().f, "start-kill");
    assert_eq!(active.description, "kill minority [n2]");
    assert!(!supervisor.is_alive(1).unwrap());
    assert!(supervisor.is_alive(0).unwrap() && supervisor.is_alive(2).unwrap());
    assert!(is_not_running(before));
    let stop = heal(&active, &mut supervisor, &network).await.unwrap();
    assert_eq!(stop.f, "stop-kill");
    let after = supervisor
        .pid(1)
        .unwrap()
        .expect("killed node not restarted");
    assert_ne!(after, before);

    let active = apply(
        &FaultPlan::PauseLeader { fallback: 0 },
        &mut supervisor,
        &network,
        Some(2),
    )
    .await
    .unwrap();
    assert_eq!(active.description, "pause leader n3");
    assert_eq!(active.nodes, vec![2]);
    assert!(matches!(
        supervisor.state(2).unwrap(),
        ProcessState::Paused { .. }
    ));
    let stop = heal(&active, &mut supervisor, &network).await.unwrap();
    assert_eq!(stop.f, "stop-pause");
    assert!(matches!(
        supervisor.state(2).unwrap(),
        ProcessState::Running { .. }
    ));

    // With no known leader, the seeded fallback is hit and the description says so.
    let active = apply(
        &FaultPlan::KillLeader { fallback: 0 },
        &mut supervisor,
        &network,
        None,
    )
    .await
    .unwrap();
    assert_eq!(active.nodes, vec![0]);
    assert!(
        active.description.contains("fallback"),
        "{}",
        active.description
    );
    heal(&active, &mut supervisor, &network).await.unwrap();
    assert!(supervisor.is_alive(0).unwrap());
}
