//! Runs that cannot happen must say so: exit code 3 and a message that names the problem.

mod common;

use std::time::Duration;

#[test]
fn a_missing_server_binary_given_by_flag_is_exit_3_with_a_clear_message() {
    let store = tempfile::tempdir().unwrap();
    let out = common::run_riptide(
        &[
            "test",
            "--time-limit",
            "2s",
            "--server-bin",
            "/nonexistent/riptide-server",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("/nonexistent/riptide-server"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn no_server_binary_next_to_riptide_nor_on_path_is_exit_3_with_a_clear_message() {
    // A copy of riptide alone in a folder, with an empty PATH: nothing to find.
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("riptide");
    std::fs::copy(common::riptide_bin(), &lonely).unwrap();
    let store = dir.path().join("store");
    let out = common::run_bin(
        &lonely,
        &[
            "test",
            "--time-limit",
            "2s",
            "--store",
            store.to_str().unwrap(),
        ],
        &[("PATH", dir.path().join("empty").to_str().unwrap())],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot find the server binary riptide-server"),
        "{stderr}"
    );
    assert!(stderr.contains("--server-bin"), "{stderr}");
}

#[test]
fn a_server_that_dies_at_start_fails_the_run_with_its_log() {
    // `/bin/false` is a "server" that exits at once: the run fails (3), never green, and the
    // results say why.
    let store = tempfile::tempdir().unwrap();
    let out = common::run_riptide(
        &[
            "test",
            "--time-limit",
            "2s",
            "--server-bin",
            "/bin/false",
            "--store",
            store.path().to_str().unwrap(),
            "--quiet",
        ],
        &[],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "run failed");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.path().join("latest/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["verdict"], "run failed");
    let reasons = results["reasons"].to_string();
    assert!(reasons.contains("did not start"), "{reasons}");
    assert!(store.path().join("latest/report.html").is_file());
}

#[test]
fn an_unknown_fault_name_is_exit_3_and_lists_the_known_ones() {
    let store = tempfile::tempdir().unwrap();
    let out = common::run_riptide(
        &[
            "test",
            "--nemesis",
            "partition,meteor-strike",
            "--server-bin",
            "/bin/true",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("meteor-strike"), "{stderr}");
    assert!(stderr.contains("partition-halves"), "{stderr}");
}

#[test]
fn a_node_that_dies_without_the_nemesis_fails_the_run_and_keeps_its_data() {
    // Node 1 runs under `timeout -s KILL 3`: it is SIGKILLed 3 s in by someone other than the
    // nemesis. The cluster keeps a majority, the history may well be linearizable, but the
    // run must not be green.
    let server = common::server_bin();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("dying-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$2\" = \"1\" ]; then exec timeout -s KILL 3 '{0}' \"$@\"; fi\nexec '{0}' \"$@\"\n",
            server.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let store = dir.path().join("store");
    let out = common::run_riptide(
        &[
            "test",
            "--time-limit",
            "6s",
            "--nemesis",
            "none",
            "--store",
            store.to_str().unwrap(),
            "--server-bin",
            wrapper.to_str().unwrap(),
            "--quiet",
        ],
        &[],
        Duration::from_secs(180),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "run failed");
    let run = store.join("latest");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "run failed");
    let problem = &results["node_problems"][0];
    assert_eq!(problem["node"], 1);
    assert!(
        problem["what"]
            .as_str()
            .unwrap()
            .contains("exited on its own"),
        "{problem}"
    );
    assert!(!problem["last_log_lines"].as_array().unwrap().is_empty());
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("Node problems"));
    // A failed run keeps the nodes' data for inspection.
    assert!(run.join("nodes/1").is_dir());
    assert!(run.join("nodes/2").is_dir());
}

/// Processes whose command line mentions `needle` (the nodes of a run name its folder).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Kills the child when the test ends early (a failed assertion), so no run outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_stops_the_cluster_leaves_no_node_behind_and_still_writes_the_run() {
    let server = common::server_bin();
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().to_str().unwrap().to_string();
    let child = std::process::Command::new(common::riptide_bin())
        .args([
            "test",
            "--time-limit",
            "60s",
            "--store",
            &store_path,
            "--server-bin",
            server.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // Wait until the workload is recording, then press Ctrl-C.
    let history = store.path().join("latest/history.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&history).map_or(0, |m| m.len()) < 2000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started recording"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !processes_mentioning(&store_path).is_empty(),
        "nodes are running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "riptide did not stop within 60 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(stdout.trim(), "run failed");
    assert!(
        processes_mentioning(&store_path).is_empty(),
        "a node outlived the run"
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.path().join("latest/results.json")).unwrap(),
    )
    .unwrap();
    assert!(
        results["reasons"].to_string().contains("interrupted"),
        "{}",
        results["reasons"]
    );
    assert!(
        results["stats"]["ok"].as_u64().unwrap() > 0,
        "what the run had is kept"
    );
    assert!(store.path().join("latest/report.html").is_file());
}
