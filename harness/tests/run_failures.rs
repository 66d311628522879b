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
