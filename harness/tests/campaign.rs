//! `riptide campaign` end to end: the matrix from flags and TOML, sharding, the time budget,
//! a real (short) campaign over two shards joined by `riptide campaign merge`, and the files
//! it leaves in the store (campaign.json, JUnit XML, index page).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{run_riptide, server_bin};

/// The matrix entries a dry run prints: (id, test name, seed).
fn dry_run(args: &[&str]) -> Vec<(usize, String, u64)> {
    let mut argv = vec!["campaign", "--dry-run"];
    argv.extend_from_slice(args);
    let out = run_riptide(&argv, &[], Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (
                cols[0].parse().unwrap(),
                cols[1].to_string(),
                cols[2].trim_start_matches("seed=").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn shards_of_a_matrix_are_disjoint_and_cover_it() {
    let matrix = [
        "--workload",
        "kv,append",
        "--nemesis",
        "partition",
        "--nemesis",
        "kill,pause",
        "--seeds",
        "2",
    ];
    let whole = dry_run(&matrix);
    assert_eq!(whole.len(), 2 * 2 * 2);
    assert!(whole.iter().any(|(_, name, _)| name == "append-kill+pause"));
    let mut seen = BTreeSet::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let mut args = matrix.to_vec();
        args.extend(["--shard", shard.as_str()]);
        for entry in dry_run(&args) {
            assert!(seen.insert(entry.clone()), "{entry:?} in two shards");
        }
    }
    assert_eq!(seen, whole.into_iter().collect());
}

#[test]
fn a_toml_campaign_expands_its_cross_product_and_explicit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightly.toml");
    std::fs::write(
        &path,
        r#"
        name = "nightly"
        seeds = 2
        first_seed = 100
        workloads = ["kv"]
        nemeses = ["partition", "kill"]

        [[test]]
        name = "register-slow"
        workload = "register"
        nemesis = "slow-links"
        seeds = 1
        args = ["--rate", "50"]
        "#,
    )
    .unwrap();
    let entries = dry_run(&["--config", path.to_str().unwrap()]);
    let names: Vec<&str> = entries.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "kv-partition",
            "kv-kill",
            "register-slow",
            "kv-partition",
            "kv-kill"
        ]
    );
    assert_eq!(entries[0].2, 100);
    assert_eq!(entries[4].2, 101);

    std::fs::write(&path, "workloads = \"kv\"\n").unwrap();
    let out = run_riptide(
        &["campaign", "--dry-run", "--config", path.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nightly.toml"), "{err}");
}

#[test]
fn bad_run_flags_are_refused_before_anything_runs() {
    let out = run_riptide(
        &["campaign", "--dry-run", "--workload", "nosuch"],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The one campaign folder under `<store>/campaigns/` whose name starts with `prefix`.
fn campaign_dir(store: &Path, prefix: &str) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(store.join("campaigns"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn a_spent_budget_skips_runs_and_records_them_as_skipped() {
    let store = tempfile::tempdir().unwrap();
    let server = server_bin();
    let out = run_riptide(
        &[
            "campaign",
            "--name",
            "tiny",
            "--workload",
            "kv",
            "--nemesis",
            "none",
            "--seeds",
            "2",
            "--budget",
            "1ms",
            "--store",
            store.path().to_str().unwrap(),
            "--server-bin",
            server.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = campaign_dir(store.path(), "tiny-");
    let record = read_json(&dir.join("campaign.json"));
    let verdicts: Vec<&str> = record["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["skipped", "skipped"]);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains(r#"tests="2" failures="0" errors="0" skipped="2""#),
        "{junit}"
    );
}

#[test]
fn two_shards_run_for_real_and_merge_into_one_campaign() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap().to_string();
    let server = server_bin();
    let server_arg = server.to_str().unwrap().to_string();
    for shard in ["1/2", "2/2"] {
        let out = run_riptide(
            &[
                "campaign",
                "--name",
                "ci",
                "--workload",
                "kv",
                "--nemesis",
                "none",
                "--nemesis",
                "partition-halves",
                "--time-limit",
                "3s",
                "--test-arg=--nemesis-interval=1s",
                "--shard",
                shard,
                "--store",
                &store_arg,
                "--server-bin",
                &server_arg,
                "--quiet",
            ],
            &[],
            Duration::from_secs(150),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {shard}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("1 linearizable"), "{stdout}");
    }
    // One campaign folder per shard (`ci-<stamp>-shard1of2`, `...-shard2of2`).
    let folders: Vec<_> = std::fs::read_dir(store.path().join("campaigns"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
    for folder in &folders {
        let record = read_json(&folder.join("campaign.json"));
        assert_eq!(record["matrix_size"], 2);
        let runs = record["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        // The index page links the run's report, which exists.
        let run_dir = runs[0]["run_dir"].as_str().unwrap();
        assert!(store.path().join(run_dir).join("report.html").is_file());
        let index = std::fs::read_to_string(folder.join("index.html")).unwrap();
        assert!(index.contains(&format!("../../{run_dir}/report.html")));
    }

    let out_dir = store.path().join("campaigns").join("ci-merged");
    let mut args = vec![
        "campaign".to_string(),
        "merge".to_string(),
        "--out".to_string(),
        out_dir.to_str().unwrap().to_string(),
    ];
    args.extend(folders.iter().map(|f| f.to_str().unwrap().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_riptide(&argv, &[], Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = read_json(&out_dir.join("campaign.json"));
    let ids: Vec<u64> = merged["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [0, 1]);
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 2);
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(r#"tests="2" failures="0""#), "{junit}");
}
