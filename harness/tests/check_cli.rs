//! `riptide check` as users run it: the built binary on the committed example histories and
//! on malformed files, asserting exit codes (0 linearizable, 1 not, 2 unknown, 3 bad input)
//! and what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../histories/examples")
}

/// Runs `riptide check ARGS...`, killing it if it overruns a generous limit.
fn riptide_check(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("check")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn riptide");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("riptide check {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn t10_linearizable_history_exits_0() {
    let file = examples().join("kv-linearizable.jsonl");
    let out = riptide_check(&[path(&file), "--model", "kv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("LINEARIZABLE"), "{}", stdout(&out));
}

#[test]
fn t11_edn_history_is_read_by_extension() {
    let file = examples().join("register-cas.edn");
    let out = riptide_check(&[path(&file), "--model", "register"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn t20_non_linearizable_history_exits_1_with_a_counterexample() {
    let file = examples().join("kv-not-linearizable.jsonl");
    let out = riptide_check(&[path(&file), "--model", "kv"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("NOT LINEARIZABLE"), "{text}");
    assert!(text.contains("cannot be linearized next: #3"), "{text}");
    assert!(text.contains("state after it: \"x1-1\""), "{text}");
}

#[test]
fn t21_several_files_in_one_run_write_results_and_pages_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let (results, html) = (dir.path().join("results"), dir.path().join("html"));
    let good = examples().join("kv-linearizable.jsonl");
    let bad = examples().join("kv-not-linearizable.jsonl");
    let out = riptide_check(&[
        path(&good),
        path(&bad),
        "--model",
        "kv",
        "--results",
        path(&results),
        "--html",
        path(&html),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let jsons: Vec<_> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(jsons.len(), 2);
    let verdicts: Vec<String> = jsons
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["verdict"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        verdicts.contains(&"linearizable".to_string())
            && verdicts.contains(&"not-linearizable".to_string()),
        "{verdicts:?}"
    );
    let pages: Vec<_> = std::fs::read_dir(&html)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pages.len(), 2);
    for page in pages {
        let text = std::fs::read_to_string(page).unwrap();
        assert!(
            text.starts_with("<!DOCTYPE html>") && text.contains("<svg"),
            "not a page"
        );
        assert!(
            !text.contains(" src=") && !text.contains("href=\"http"),
            "page must be self-contained"
        );
    }
}

#[test]
fn t30_search_cut_by_the_timeout_exits_2() {
    // Twenty concurrent writes then a read of a value nobody wrote: proving it impossible
    // takes millions of configurations, far more than a zero timeout allows.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hard.jsonl");
    let mut lines = Vec::new();
    for p in 0..20 {
        lines.push(format!(
            r#"{{"index":0,"time":0,"process":{p},"type":"invoke","f":"write","value":"{p}"}}"#
        ));
    }
    for p in 0..20 {
        lines.push(format!(
            r#"{{"index":0,"time":0,"process":{p},"type":"ok","f":"write","value":"{p}"}}"#
        ));
    }
    lines.push(
        r#"{"index":0,"time":0,"process":99,"type":"invoke","f":"read","value":null}"#.to_string(),
    );
    lines.push(
        r#"{"index":0,"time":0,"process":99,"type":"ok","f":"read","value":"nobody"}"#.to_string(),
    );
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = riptide_check(&[path(&file), "--model", "register", "--timeout", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("UNKNOWN"), "{}", stdout(&out));
}

/// Each kind of malformed input gets exit code 3 and a message naming the line.
#[test]
fn t40_malformed_histories_exit_3_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let invoke = r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"read","value":null}"#;
    let cases: [(&str, String, &str); 4] = [
        (
            "bad-json",
            format!("{invoke}\n{{\"index\":1,\"time\":"),
            "line 2",
        ),
        (
            "ok-without-invoke",
            r#"{"index":0,"time":0,"process":1,"type":"ok","f":"read","value":null}"#.to_string(),
            "line 1",
        ),
        ("two-open-ops", format!("{invoke}\n{invoke}"), "line 2"),
        (
            "unknown-f",
            format!(
                "{invoke}\n{}",
                r#"{"index":1,"time":0,"process":2,"type":"invoke","f":"frobnicate","value":null}"#
            ),
            "line 2",
        ),
    ];
    for (name, text, line) in cases {
        let file = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let out = riptide_check(&[path(&file), "--model", "kv"]);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(line),
            "{name}: expected {line} in {}",
            stdout(&out)
        );
    }
}

#[test]
fn t41_bad_input_wins_over_other_verdicts_and_other_files_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "not json\n").unwrap();
    let good = examples().join("kv-linearizable.jsonl");
    let out = riptide_check(&[path(&broken), path(&good)]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("LINEARIZABLE"), "{}", stdout(&out));
}

#[test]
fn t50_a_reader_that_went_away_ends_the_output_quietly() {
    // `riptide check ... | head -1`: the reader closes the pipe early. Here it is closed before
    // riptide even starts, so its first line already meets a broken pipe; it must not panic,
    // and still exit with the verdict.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let file = examples().join("kv-not-linearizable.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(["check", path(&file), "--model", "kv"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn riptide");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("riptide check did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
