//! `riptide test --nemesis membership` against real `riptide-server` processes: voters removed
//! and added back, learners added on spare slots, nodes replaced by new ones, each through the
//! nodes' `/cluster/members` API while clients read and write; the run must stay linearizable,
//! record its membership changes in the history, apply at least one, and end with the initial
//! number of voters. `promote-split` (two learners promoted at once behind a partition) must
//! find the planted `two-changes-in-flight` and leave a correct node linearizable.

mod common;

use std::path::Path;
use std::time::Duration;

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_membership_run_changes_the_configuration_and_stays_linearizable() {
    let server = common::server_bin();
    let store = tempfile::tempdir().unwrap();
    let out = common::run_riptide(
        &[
            "test",
            "--nodes",
            "3",
            "--time-limit",
            "20s",
            "--nemesis",
            "membership",
            "--concurrency",
            "6",
            "--rate",
            "100",
            "--seed",
            "3",
            "--store",
            store.path().to_str().unwrap(),
            "--server-bin",
            server.to_str().unwrap(),
            "--name",
            "membership",
        ],
        &[],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let latest = store.path().join("latest");
    let run_dir = std::fs::canonicalize(&latest).unwrap_or(latest);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout.trim(), "linearizable", "{stderr}");
    let results = read_json(&run_dir.join("results.json"));
    assert_eq!(results["verdict"], "linearizable", "{results}");

    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    let nemesis: Vec<serde_json::Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["process"] == "nemesis")
        .collect();
    let starts: Vec<&str> = nemesis
        .iter()
        .filter(|e| e["f"] == "start-membership")
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert!(starts.len() >= 4, "{starts:?}");
    let stops = nemesis
        .iter()
        .filter(|e| e["f"] == "stop-membership")
        .count();
    assert_eq!(stops, starts.len(), "every change is closed: {nemesis:?}");
    // At least one change took effect: its description carries no refusal.
    let applied: Vec<&&str> = starts
        .iter()
        .filter(|v| {
            !v.contains("refused") && !v.contains("not applied") && !v.contains("nothing done")
        })
        .collect();
    assert!(!applied.is_empty(), "no change applied: {starts:?}");
    // The heal at the end brought the initial number of voters back.
    let heal = nemesis
        .iter()
        .find(|e| e["f"] == "heal-membership")
        .unwrap_or_else(|| panic!("no heal-membership event: {nemesis:?}"));
    assert!(
        !heal["value"]
            .as_str()
            .unwrap_or_default()
            .contains("not back to the initial voters"),
        "{heal}"
    );
    // A node on a spare slot ran and left its log and lane.
    let faults = results["faults"].as_array().cloned().unwrap_or_default();
    let spare_used = faults.iter().any(|f| {
        let d = f["description"].as_str().unwrap_or_default();
        (f["name"] == "add-learner" || f["name"] == "replace-node") && !d.contains("nothing done")
    });
    if spare_used {
        assert!(run_dir.join("nodes").join("4.log").exists());
        let samples = std::fs::read_to_string(run_dir.join("cluster.jsonl")).unwrap_or_default();
        assert!(samples.contains("\"node\":\"n4\""), "no lane for n4");
    }
}

/// The flags of a short `promote-split` run: two 3 s faults in 9 s, 500 ms elections as the
/// planted-bug matrix pins.
const PROMOTE_SPLIT_RUN: &[&str] = &[
    "--nemesis",
    "promote-split",
    "--nemesis-interval",
    "3s",
    "--time-limit",
    "9s",
    "--node-arg=--election-ms=500",
];

#[test]
fn promote_split_finds_two_membership_changes_in_flight() {
    let mut args = PROMOTE_SPLIT_RUN.to_vec();
    args.extend([
        "--node-arg=--unsafe",
        "--node-arg=--bug=two-changes-in-flight",
    ]);
    let found = common::not_linearizable_within_seeds(
        "two-changes-in-flight under promote-split",
        &args,
        &["1", "2", "3"],
        Duration::from_secs(240),
        &|_| {},
    );
    // The bug let both promotions commit while the leader's side was cut off.
    let results = read_json(&found.store.path().join("latest/results.json"));
    let steps = results["faults"][0]["steps"].to_string();
    assert!(
        steps.contains("promote n4: committed; promote n5: committed"),
        "{steps}"
    );
}

#[test]
fn promote_split_leaves_a_correct_node_linearizable_and_takes_one_change_at_a_time() {
    let store = tempfile::tempdir().unwrap();
    let out = common::run_test_quietly(
        store.path(),
        PROMOTE_SPLIT_RUN,
        "1",
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "linearizable", "{stderr}");
    let results = read_json(&store.path().join("latest/results.json"));
    let faults = results["faults"].as_array().cloned().unwrap_or_default();
    assert!(!faults.is_empty(), "{results}");
    for fault in &faults {
        let steps = fault["steps"].to_string();
        // The split took effect (the learners joined and the cut was made) and the learners
        // left again, but the promotions never both committed behind the cut.
        assert!(
            fault["description"]
                .as_str()
                .is_some_and(|d| d.contains("promoted at once")),
            "{fault}"
        );
        assert!(
            !steps.contains("promote n4: committed; promote n5: committed"),
            "{steps}"
        );
        assert!(steps.contains("remove n5: committed"), "{steps}");
    }
}
