//! The nightly on many machines: the Kubernetes Indexed Job and the CI matrix workflow each
//! split `scripts/nightly.toml` into shards, and together their shards must run every matrix
//! entry exactly once (`riptide campaign --dry-run --shard I/N` lists what a shard runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The ids of the matrix entries that shard `shard` (e.g. `2/4`) runs; all ids when `None`.
fn entries(shard: Option<&str>) -> Vec<usize> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riptide"));
    cmd.current_dir(repo())
        .args(["campaign", "--config", "scripts/nightly.toml", "--dry-run"]);
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    let out = cmd.output().expect("run riptide campaign --dry-run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect()
}

fn assert_shards_cover_the_matrix_once(count: usize, origin: &str) {
    let all = entries(None);
    assert!(!all.is_empty(), "the nightly matrix is empty");
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 1..=count {
        for id in entries(Some(&format!("{i}/{count}"))) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for id in &all {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "{origin}: entry {id} runs {:?} times",
            seen.get(id)
        );
    }
    assert_eq!(
        seen.len(),
        all.len(),
        "{origin}: shards ran entries outside the matrix"
    );
}

/// The value after `key:` on the first line that has it (plain YAML scalars only).
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
}

#[test]
fn the_kubernetes_indexed_job_runs_every_entry_of_the_nightly_once() {
    let job = read("scripts/k8s/nightly-job.yaml");
    let completions: usize = yaml_value(&job, "completions:").parse().unwrap();
    let parallelism: usize = yaml_value(&job, "parallelism:").parse().unwrap();
    let env_shards = job
        .lines()
        .skip_while(|l| !l.contains("name: SHARDS"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("value:"))
        .map(|v| v.trim().trim_matches('"').parse::<usize>().unwrap())
        .expect("SHARDS env value");
    assert_eq!(completions, env_shards, "completions and SHARDS differ");
    assert_eq!(parallelism, env_shards, "parallelism and SHARDS differ");
    assert!(
        job.contains("JOB_COMPLETION_INDEX + 1"),
        "shards are 1-based"
    );
    assert_shards_cover_the_matrix_once(completions, "k8s");
}

#[test]
fn the_ci_matrix_workflow_runs_every_entry_of_the_nightly_once() {
    let wf = read(".github/workflows/nightly.yml");
    let shards: usize = yaml_value(&wf, "SHARDS:").parse().unwrap();
    let list = yaml_value(&wf, "shard: [");
    let list = format!("[{list}");
    let listed: Vec<usize> = list
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(
        listed,
        (1..=shards).collect::<Vec<_>>(),
        "shard list vs SHARDS"
    );
    assert!(
        wf.contains("campaign merge"),
        "the workflow merges the shards"
    );
    assert_shards_cover_the_matrix_once(shards, "ci");
}
