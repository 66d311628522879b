//! The store of results: where every run writes its artifacts, and how `riptide serve` finds them.
//!
//! Layout: `<store>/<test-name>/<YYYYmmddTHHMMSS>-<seed>/` holding `history.jsonl`,
//! `config.json`, `results.json`, `report.html`, `schedule.json`, `nodes/<id>.log` and, when the
//! run failed, each node's data directory under `nodes/<id>/`. `<store>/latest` is a symlink to
//! the newest run. Keeping the layout in one module means the writer (`riptide test`) and the
//! reader (`riptide serve`) can never disagree on it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod schema;
pub use schema::*;

/// File names inside a run folder.
pub const HISTORY_FILE: &str = "history.jsonl";
pub const CONFIG_FILE: &str = "config.json";
pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.html";
pub const SCHEDULE_FILE: &str = "schedule.json";
pub const CLUSTER_FILE: &str = "cluster.jsonl";
/// The smallest piece of a failing history that is still not linearizable.
pub const MINIMAL_FILE: &str = "minimal.jsonl";
pub const NODES_DIR: &str = "nodes";
/// The symlink at the top of the store that names the newest run.
pub const LATEST_LINK: &str = "latest";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create run folder {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot update {path}: {source}")]
    Latest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the store at {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The folder of one run and the paths of its artifacts.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// `<store>/<test-name>/<stamp>-<seed>`.
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `<store>/<test_name>/<stamp>-<seed>/nodes/`. When a run with the same stamp and
    /// seed already exists (two runs in the same second), a `-2`, `-3`, ... suffix keeps both.
    pub fn create(
        store: &Path,
        test_name: &str,
        started: chrono::DateTime<chrono::Utc>,
        seed: u64,
    ) -> Result<RunDir, StoreError> {
        let base = format!("{}-{}", started.format("%Y%m%dT%H%M%S"), seed);
        let parent = store.join(sanitize_name(test_name));
        std::fs::create_dir_all(&parent).map_err(|source| StoreError::Create {
            path: parent.clone(),
            source,
        })?;
        let mut attempt = 1;
        loop {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}-{attempt}")
            };
            let path = parent.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let nodes = path.join(NODES_DIR);
                    std::fs::create_dir_all(&nodes).map_err(|source| StoreError::Create {
                        path: nodes.clone(),
                        source,
                    })?;
                    return Ok(RunDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(source) => return Err(StoreError::Create { path, source }),
            }
        }
    }

    pub fn history(&self) -> PathBuf {
        self.path.join(HISTORY_FILE)
    }
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }
    pub fn results(&self) -> PathBuf {
        self.path.join(RESULTS_FILE)
    }
    pub fn report(&self) -> PathBuf {
        self.path.join(REPORT_FILE)
    }
    pub fn schedule(&self) -> PathBuf {
        self.path.join(SCHEDULE_FILE)
    }
    /// `cluster.jsonl`: every node's own view (role, term, leader, commit and applied index),
    /// sampled about every 100 ms during the run.
    pub fn cluster_samples(&self) -> PathBuf {
        self.path.join(CLUSTER_FILE)
    }
    /// `minimal.jsonl`: the smallest piece of a failing history that still fails (same format
    /// as `history.jsonl`).
    pub fn minimal(&self) -> PathBuf {
        self.path.join(MINIMAL_FILE)
    }
    /// `nodes/`: the nodes' logs and data directories.
    pub fn nodes_dir(&self) -> PathBuf {
        self.path.join(NODES_DIR)
    }
    /// `nodes/<id>.log`: the node's stdout and stderr.
    pub fn node_log(&self, id: u64) -> PathBuf {
        self.path.join(NODES_DIR).join(format!("{id}.log"))
    }
    /// `nodes/<id>/`: the node's data directory (removed after a passing run).
    pub fn node_data(&self, id: u64) -> PathBuf {
        self.path.join(NODES_DIR).join(id.to_string())
    }

    /// Points `<store>/latest` at this run (relative link, so the store can be moved).
    pub fn mark_latest(&self, store: &Path) -> Result<(), StoreError> {
        let link = store.join(LATEST_LINK);
        let target = self
            .path
            .strip_prefix(store)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| self.path.clone());
        // Replace atomically: make a temporary link and rename it over the old one.
        let tmp = store.join(format!(".{LATEST_LINK}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &link))
            .map_err(|source| StoreError::Latest { path: link, source })
    }
}

/// Keeps a test name usable as one path segment.
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('.');
    if trimmed.is_empty() || trimmed == LATEST_LINK {
        "test".to_string()
    } else {
        trimmed.to_string()
    }
}

/// What `riptide serve` shows of one run, read from its `config.json` and `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// The test name (the folder above the run folder).
    pub test: String,
    /// The run folder's name.
    pub run: String,
    /// Path relative to the store, with `/` separators, for links.
    pub rel_path: String,
    pub started: Option<String>,
    pub seed: Option<u64>,
    pub nemesis: Option<String>,
    pub workload: Option<String>,
    /// The planted bug the nodes ran with (`--bug NAME` in the node arguments), if any.
    #[serde(default)]
    pub bug: Option<String>,
    /// Number of client operations (invocations) recorded.
    pub ops: Option<u64>,
    /// The run's verdict; `None` when it has no results yet (still running, or interrupted
    /// hard): shown as `incomplete`.
    pub verdict: Option<RunVerdict>,
    /// Files present in the run folder (top level), for links.
    pub files: Vec<String>,
}

/// How a run without results is shown.
pub const INCOMPLETE: &str = "incomplete";

impl RunSummary {
    /// The verdict's name, or `incomplete`.
    pub fn verdict_name(&self) -> &'static str {
        self.verdict.map_or(INCOMPLETE, RunVerdict::name)
    }

    /// Failing runs first, then unknown, then passing; newest first within each group.
    pub fn sort_key(&self) -> (u8, std::cmp::Reverse<String>) {
        let rank = match self.verdict {
            Some(RunVerdict::NotLinearizable | RunVerdict::Diverged) => 0,
            Some(RunVerdict::RunFailed) => 1,
            Some(RunVerdict::Unknown) | None => 2,
            Some(RunVerdict::Linearizable) => 3,
        };
        (rank, std::cmp::Reverse(self.run.clone()))
    }
}

/// Lists every run under `store` (two levels: test, then run folder), failing runs first.
pub fn list_runs(store: &Path) -> Result<Vec<RunSummary>, StoreError> {
    let mut runs = Vec::new();
    let read = |p: &Path| {
        std::fs::read_dir(p).map_err(|source| StoreError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    for test in read(store)?.flatten() {
        let test_path = test.path();
        let test_name = test.file_name().to_string_lossy().to_string();
        // `latest` is a symlink to a run; skip it and hidden files, and anything not a folder.
        if test_name == LATEST_LINK || test_name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&test_path) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = read(&test_path) else {
            continue;
        };
        for run in entries.flatten() {
            let run_path = run.path();
            if !run_path.join(CONFIG_FILE).is_file() {
                continue;
            }
            runs.push(summarize_run(&test_name, &run_path));
        }
    }
    runs.sort_by_key(RunSummary::sort_key);
    Ok(runs)
}

/// The planted bug named in node arguments: `--bug NAME`, or `--bug=NAME` as
/// `campaign::bugs::node_flags` writes it.
pub fn planted_bug(node_args: &[String]) -> Option<String> {
    let mut args = node_args.iter();
    while let Some(arg) = args.next() {
        if let Some(name) = arg.strip_prefix("--bug=") {
            return Some(name.to_string());
        }
        if arg == "--bug" {
            return args.next().cloned();
        }
    }
    None
}

/// The summary of one run folder, `rel` (`<test>/<run>`) under `store`; `None` when it is not
/// a run (no `config.json`) or would leave the store.
pub fn summarize(store: &Path, rel: &str) -> Option<RunSummary> {
    let rel = rel.trim_matches('/');
    let (test, run) = rel.split_once('/')?;
    if run.contains('/')
        || [test, run]
            .iter()
            .any(|c| c.is_empty() || c.starts_with('.'))
    {
        return None;
    }
    let run_path = store.join(test).join(run);
    run_path
        .join(CONFIG_FILE)
        .is_file()
        .then(|| summarize_run(test, &run_path))
}

fn summarize_run(test: &str, run_path: &Path) -> RunSummary {
    let read_json = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(run_path.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let config = read_json(CONFIG_FILE);
    let results = read_json(RESULTS_FILE);
    let run = run_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let cfg_str = |k: &str| {
        config
            .as_ref()
            .and_then(|c| c.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut files: Vec<String> = std::fs::read_dir(run_path)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    RunSummary {
        test: test.to_string(),
        rel_path: format!("{test}/{run}"),
        run,
        started: cfg_str("started"),
        seed: config
            .as_ref()
            .and_then(|c| c.get("seed"))
            .and_then(|v| v.as_u64()),
        nemesis: cfg_str("nemesis"),
        workload: cfg_str("workload"),
        bug: config
            .as_ref()
            .and_then(|c| c.get("node_args"))
            .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
            .and_then(|args| planted_bug(&args)),
        ops: results
            .as_ref()
            .and_then(|r| r.get("stats"))
            .and_then(|s| s.get("invocations"))
            .and_then(|v| v.as_u64()),
        verdict: results
            .as_ref()
            .and_then(|r| r.get("verdict"))
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    #[test]
    fn run_folder_is_named_test_then_stamp_and_seed() {
        let store = tempfile::tempdir().unwrap();
        let run = RunDir::create(store.path(), "kv-partition", stamp(), 42).unwrap();
        let rel = run.path.strip_prefix(store.path()).unwrap();
        assert_eq!(rel, Path::new("kv-partition/20260921T141320-42"));
        assert!(run.path.join("nodes").is_dir());
        assert_eq!(run.node_log(2), run.path.join("nodes/2.log"));
        assert_eq!(run.node_data(2), run.path.join("nodes/2"));
        assert_eq!(run.history(), run.path.join("history.jsonl"));
    }

    #[test]
    fn two_runs_in_the_same_second_get_distinct_folders() {
        let store = tempfile::tempdir().unwrap();
        let a = RunDir::create(store.path(), "t", stamp(), 1).unwrap();
        let b = RunDir::create(store.path(), "t", stamp(), 1).unwrap();
        assert_ne!(a.path, b.path);
        assert!(b.path.to_string_lossy().ends_with("-1-2"));
    }

    #[test]
    fn latest_points_at_the_newest_run_and_is_replaced() {
        let store = tempfile::tempdir().unwrap();
        let a = RunDir::create(store.path(), "t", stamp(), 1).unwrap();
        a.mark_latest(store.path()).unwrap();
        let b = RunDir::create(store.path(), "t", stamp(), 2).unwrap();
        b.mark_latest(store.path()).unwrap();
        let link = store.path().join("latest");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("t/20260921T141320-2")
        );
        assert_eq!(
            std::fs::canonicalize(&link).unwrap(),
            std::fs::canonicalize(&b.path).unwrap()
        );
    }

    #[test]
    fn test_names_become_single_safe_path_segments() {
        assert_eq!(sanitize_name("kv-partition+kill"), "kv-partition+kill");
        assert_eq!(sanitize_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_name("latest"), "test");
        assert_eq!(sanitize_name(""), "test");
    }

    #[test]
    fn listing_puts_failing_runs_first_and_reads_verdicts() {
        let store = tempfile::tempdir().unwrap();
        let write = |seed: u64, verdict: Option<&str>| {
            let run = RunDir::create(store.path(), "kv", stamp(), seed).unwrap();
            let cfg = serde_json::json!({"seed": seed, "nemesis": "all", "workload": "kv",
                "started": "2026-09-21T14:13:20Z"});
            std::fs::write(run.config(), cfg.to_string()).unwrap();
            if let Some(v) = verdict {
                let res = serde_json::json!({"verdict": v, "stats": {"invocations": 10}});
                std::fs::write(run.results(), res.to_string()).unwrap();
            }
        };
        write(1, Some("linearizable"));
        write(2, Some("not linearizable"));
        write(3, None);
        let runs = list_runs(store.path()).unwrap();
        let verdicts: Vec<_> = runs.iter().map(|r| r.verdict_name()).collect();
        assert_eq!(verdicts, ["not linearizable", "incomplete", "linearizable"]);
        assert_eq!(runs[0].seed, Some(2));
        assert_eq!(runs[0].ops, Some(10));
        assert!(runs[0].files.contains(&"config.json".to_string()));
    }
}
